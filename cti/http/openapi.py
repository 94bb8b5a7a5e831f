"""The OpenAPI 3.1 document of the REST API, written by hand from the pydantic bodies."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel

from cti import __version__
from cti.http.models import (
    BODIES,
    AgentActionBody,
    ConfirmBody,
    DispositionBody,
    DivideBody,
    EscalateBody,
    LoginBody,
    MergeBody,
    NewCustomerBody,
    NoteBody,
    NumberBody,
    OriginateBody,
    PauseBody,
    QueueBody,
    RecordingBody,
    RouteBody,
    SpyBody,
)

_REF = "#/components/schemas/{model}"
_STR = {"type": "string"}
_ERRORS = {
    "400": "bad body or parameter (the message names the field)",
    "401": "missing or unknown token",
    "403": "not allowed for this agent's role or not their call",
    "404": "unknown call, customer or agent",
    "409": "refused in the current state (ended call, do-not-call number...)",
    "502": "Asterisk refused or did not answer the AMI action (its message is given)",
    "416": "the Range asked for is not in the file",
    "503": (
        "a service it needs is not running or could not be asked (the CRM: nothing was "
        "dialled; the PBX: no instance ingests it, or the call is on another instance's PBX)"
    ),
}


def _op(
    summary: str,
    body: type[BaseModel] | None = None,
    *,
    ok: str = "200",
    errors: tuple[str, ...] = ("401",),
    params: list[dict[str, Any]] | None = None,
    public: bool = False,
    security: list[dict[str, list[str]]] | None = None,
) -> dict[str, Any]:
    responses: dict[str, Any] = {ok: {"description": "OK", "content": {"application/json": {}}}}
    for code in errors:
        responses[code] = {
            "description": _ERRORS[code],
            "content": {"application/json": {"schema": {"$ref": _REF.format(model="Error")}}},
        }
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": _REF.format(model=body.__name__)}}},
        }
    if params:
        op["parameters"] = params
    if public:
        op["security"] = []
    if security is not None:
        op["security"] = security
    return op


def _path_param(name: str, kind: str = "string") -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": kind}}


def _query(name: str, description: str, *, required: bool = False, **schema: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": schema or {"type": "string"},
    }


CALL = [_path_param("call_id")]
_WHEN = "an ISO date or time, UTC when it has no zone"
PERIOD = [
    _query("from", f"start of the period, included ({_WHEN})", required=True),
    _query("to", f"end of the period, excluded ({_WHEN})", required=True),
    _query(
        "group_by",
        "how the figures are grouped (default queue)",
        type="string",
        enum=["queue", "tier", "agent", "hour"],
    ),
]
AUDIT_PERIOD = [
    _query("from", f"first entry's time, included ({_WHEN}); default: the beginning"),
    _query("to", f"last entry's time, excluded ({_WHEN}); default: no end"),
]


def _recording_op() -> dict[str, Any]:
    audio = {"audio/wav": {"schema": {"type": "string", "format": "binary"}}}
    op = _op(
        "Play a call's recording back (supervisors, and the agent who took the call); "
        "Range requests are served so a player can seek; every playback is audited",
        errors=("401", "403", "404", "416", "503"),
        params=[
            _path_param("call_id"),
            {
                "name": "Range",
                "in": "header",
                "required": False,
                "description": "bytes=START-[END]: a part of the file (answered 206)",
                "schema": {"type": "string"},
            },
        ],
    )
    op["responses"]["200"] = {"description": "the whole WAV file", "content": audio}
    op["responses"]["206"] = {"description": "the part of the file asked for", "content": audio}
    return op


def build_openapi() -> dict[str, Any]:
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "properties": {"error": {"type": "string"}},
            "required": ["error"],
        }
    }
    for model in BODIES:
        schema = model.model_json_schema(ref_template=_REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    act = ("400", "401", "403", "404", "409", "502")
    return {
        "openapi": "3.1.0",
        "info": {"title": "cti desktop API", "version": __version__},
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "token": {"type": "http", "scheme": "bearer"},
                # [agi] http_token, sent by the cti-agi script; no agent token opens /api/route.
                "agiToken": {"type": "http", "scheme": "bearer"},
            },
        },
        "security": [{"token": []}],
        "paths": {
            "/api/login": {
                "post": _op("Check a token; the agent's identity", LoginBody, public=True)
            },
            "/api/me": {"get": _op("The authenticated agent")},
            "/api/customers": {
                "get": _op(
                    "Search customers by name, number, account number, email, postcode or order "
                    "reference",
                    errors=("400", "401"),
                    params=[
                        {
                            "name": "q",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        {"name": "limit", "in": "query", "schema": {"type": "integer"}},
                    ],
                )
            },
            "/api/customers/{customer_id}": {
                "get": _op(
                    "A customer's 360° view",
                    errors=("400", "401", "404"),
                    params=[_path_param("customer_id", "integer")],
                )
            },
            "/api/calls": {"get": _op("Live calls (an agent's own; all for supervisors)")},
            "/api/calls/{call_id}": {
                "get": _op("One call's context", errors=("401", "403", "404"), params=CALL)
            },
            "/api/calls/{call_id}/notes": {
                "post": _op("Add a note", NoteBody, ok="201", errors=(*act[:4], "503"), params=CALL)
            },
            "/api/calls/{call_id}/disposition": {
                "post": _op(
                    "Set the wrap-up code", DispositionBody, errors=(*act[:4], "503"), params=CALL
                )
            },
            "/api/calls/{call_id}/escalate": {
                "post": _op(
                    "Move the caller to a tier's queue with the escalation priority",
                    EscalateBody,
                    errors=(*act, "503"),
                    params=CALL,
                )
            },
            "/api/calls/{call_id}/customer": {
                "post": _op(
                    "Say who is calling: a candidate of the shared number or a search result "
                    "(optionally remembering the caller's number for that customer)",
                    ConfirmBody,
                    errors=(*act, "503"),
                    params=CALL,
                )
            },
            "/api/calls/{call_id}/customer/new": {
                "post": _op(
                    "Create a customer for the caller and attach it to the call",
                    NewCustomerBody,
                    ok="201",
                    errors=(*act, "503"),
                    params=CALL,
                )
            },
            "/api/calls/{call_id}/number": {
                "post": _op(
                    "Add the caller's number to the call's customer (not a withheld number)",
                    NumberBody,
                    ok="201",
                    errors=(*act[:5], "503"),
                    params=CALL,
                )
            },
            "/api/calls/originate": {
                "post": _op(
                    "Click-to-dial from the agent's phone (refuses do-not-call customers)",
                    OriginateBody,
                    ok="202",
                    errors=(*act, "503"),
                )
            },
            "/api/agent/queues": {
                "post": _op("Log in to or out of a queue", QueueBody, errors=(*act, "503"))
            },
            "/api/agent/pause": {
                "post": _op("Pause or unpause with a reason", PauseBody, errors=(*act, "503"))
            },
            "/api/route": {
                "post": _op(
                    "The routing decision for a call (the cti-agi script; [agi] http_token)",
                    RouteBody,
                    errors=("400", "401"),
                    security=[{"agiToken": []}],
                )
            },
            **_case_paths(),
            "/api/calls/{call_id}/spy": {
                "post": _op(
                    "Listen, whisper or barge: ring the supervisor's phone into ChanSpy on the "
                    "agent's channel (supervisors; audited)",
                    SpyBody,
                    ok="201",
                    errors=(*act, "503"),
                    params=CALL,
                )
            },
            "/api/calls/{call_id}/recording": {
                "post": _op(
                    "Pause or resume the call's recording (the agent on the call or a "
                    "supervisor; audited)",
                    RecordingBody,
                    errors=(*act, "503"),
                    params=CALL,
                )
            },
            "/api/recordings/{call_id}": {"get": _recording_op()},
            "/api/stats/live": {
                "get": _op(
                    "Today's figures by queue, tier, agent and hour (supervisors)",
                    errors=("401", "403", "503"),
                )
            },
            "/api/stats": {
                "get": _op(
                    "The figures of a period, grouped by queue, tier, agent or hour "
                    "(supervisors; at most 400 days)",
                    errors=("400", "401", "403", "503"),
                    params=PERIOD,
                )
            },
            "/api/supervisor/board": {
                "get": _op(
                    "The console's board: live calls, agents, queues, alerts (supervisors)",
                    errors=("401", "403", "503"),
                )
            },
            "/api/supervisor/agent": {
                "post": _op(
                    "Log an agent in or out of a queue, pause or unpause them (supervisors)",
                    AgentActionBody,
                    errors=(*act, "503"),
                )
            },
            "/api/supervisor/audit": {
                "get": _op(
                    "The audit log: listen/whisper/barge, recordings, pauses and playbacks "
                    "(supervisors)",
                    errors=("400", "401", "403", "503"),
                    params=AUDIT_PERIOD,
                )
            },
            "/supervisor": {
                "get": _op(
                    "The supervisor console page (HTML; its socket asks for the token)",
                    errors=(),
                    public=True,
                )
            },
            "/ws/supervisor": {
                "get": _op(
                    'The console\'s WebSocket: first frame {"type":"auth","token":...} (a '
                    "supervisor's), then hello, a snapshot and call_row/call_gone/agent_row/"
                    "queue_row/hours/alert",
                    ok="101",
                    errors=("401",),
                    public=True,
                )
            },
            "/api/crm/duplicates": {
                "get": _op(
                    "Likely duplicate customers with a score and its reasons (supervisors)",
                    errors=("400", "401", "403", "503"),
                    params=[
                        {"name": "min_score", "in": "query", "schema": {"type": "integer"}},
                        {"name": "limit", "in": "query", "schema": {"type": "integer"}},
                    ],
                )
            },
            "/api/crm/customers/{customer_id}/records": {
                "get": _op(
                    "A customer's numbers, interactions and cases with their ids (supervisors)",
                    errors=("400", "401", "403", "404", "503"),
                    params=[_path_param("customer_id", "integer")],
                )
            },
            "/api/crm/merge": {
                "post": _op(
                    "Merge one customer into another in one transaction, audited (supervisors)",
                    MergeBody,
                    errors=("400", "401", "403", "404", "409", "503"),
                )
            },
            "/api/crm/divide": {
                "post": _op(
                    "Move chosen numbers, interactions and cases to another customer, picked or "
                    "created (supervisors)",
                    DivideBody,
                    errors=("400", "401", "403", "404", "409", "503"),
                )
            },
            "/api/crm/audit": {
                "get": _op(
                    "Merges and divides: who, when, what moved (supervisors)",
                    errors=("400", "401", "403", "503"),
                    params=[
                        {"name": n, "in": "query", "schema": {"type": t}}
                        for n, t in (
                            ("from", "string"),
                            ("to", "string"),
                            ("customer_id", "integer"),
                        )
                    ],
                )
            },
            "/api/openapi.json": {"get": _op("This document", errors=(), public=True)},
            "/healthz": {"get": _op("AMI and database health", errors=(), public=True)},
            "/favicon.ico": {"get": _op("No icon (204)", ok="204", errors=(), public=True)},
            "/metrics": {"get": _op("Prometheus metrics", errors=(), public=True)},
            "/ws": {
                "get": _op(
                    "WebSocket: authenticate with ?token= or a first frame "
                    '{"type":"auth","token":...}; then pop/answered/withdrawn/transferred/ended',
                    ok="101",
                    errors=("401",),
                    public=True,
                )
            },
        },
    }


def _case_paths() -> dict[str, Any]:
    """Cases from the pop and callbacks (``cti.http.cases``)."""
    from cti.http.models import CallbackDialBody, CaseCallBody, CloseCaseBody, OpenCaseBody

    act = ("400", "401", "403", "404", "409")
    case = [_path_param("case_id", "integer")]
    customer = {"name": "customer_id", "in": "query", "required": True,
                "schema": {"type": "integer"}}  # fmt: skip
    return {
        "/api/cases/reasons": {"get": _op("The reasons a case is opened for: tier and SLA")},
        "/api/cases": {
            "get": _op(
                "A customer's open cases with their SLA (sla_left_s) and calls",
                errors=("400", "401", "503"),
                params=[customer],
            )
        },
        "/api/calls/{call_id}/cases": {
            "post": _op(
                "Open a case for the call's customer (tier and SLA deadline from the reason)",
                OpenCaseBody,
                ok="201",
                errors=(*act, "503"),
                params=CALL,
            )
        },
        "/api/cases/{case_id}/calls": {
            "post": _op("Add a live call to an open case", CaseCallBody, errors=act, params=case)
        },
        "/api/cases/{case_id}/close": {
            "post": _op("Close a case", CloseCaseBody, errors=act, params=case)
        },
        "/api/callbacks": {
            "get": _op("Open callback tasks of the agent's queues (all for supervisors)")
        },
        "/api/callbacks/{task_id}/dial": {
            "post": _op(
                "Click-to-dial a callback task's number (refuses do-not-call customers)",
                CallbackDialBody,
                ok="202",
                errors=(*act, "502", "503"),
                params=[_path_param("task_id", "integer")],
            )
        },
    }


OPENAPI = web.AppKey("openapi", dict[str, Any])


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI])
