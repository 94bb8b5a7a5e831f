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
    DivideBody,
    EscalateBody,
    LoginBody,
    MergeBody,
    NoteBody,
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
                    "Search customers by name, number, email or reference",
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
                    "Say which of the customers sharing the caller's number is calling",
                    ConfirmBody,
                    errors=act[:4],
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


OPENAPI = web.AppKey("openapi", dict[str, Any])


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI])
