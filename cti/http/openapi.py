"""The OpenAPI 3.1 document of the REST API, written by hand from the pydantic bodies."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel

from cti import __version__
from cti.http.models import (
    BODIES,
    ConfirmBody,
    DispositionBody,
    EscalateBody,
    LoginBody,
    NewCustomerBody,
    NoteBody,
    NumberBody,
    OriginateBody,
    PauseBody,
    QueueBody,
    RouteBody,
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
    "503": "the CRM could not be asked (nothing was dialled)",
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


CALL = [_path_param("call_id")]


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
                "post": _op("Add a note", NoteBody, ok="201", errors=act[:4], params=CALL)
            },
            "/api/calls/{call_id}/disposition": {
                "post": _op("Set the wrap-up code", DispositionBody, errors=act[:4], params=CALL)
            },
            "/api/calls/{call_id}/escalate": {
                "post": _op(
                    "Move the caller to a tier's queue with the escalation priority",
                    EscalateBody,
                    errors=act,
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
                "post": _op("Log in to or out of a queue", QueueBody, errors=act)
            },
            "/api/agent/pause": {
                "post": _op("Pause or unpause with a reason", PauseBody, errors=act)
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
