"""The aiohttp application: middlewares, routes, the desktop page, and socket shutdown."""

from __future__ import annotations

from pathlib import Path

import structlog
from aiohttp import WSCloseCode, web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry

from cti.http import (
    agent_state,
    calls,
    cases,
    customers,
    customers_admin,
    health,
    identify,
    supervisor,
    ws,
)
from cti.http.auth import AGENT, AgentDirectory, Handler, agent_info, auth_middleware
from cti.http.deps import ApiDeps
from cti.http.errors import ApiError, error_response, parse_body
from cti.http.forward import forward_middleware
from cti.http.models import LoginBody
from cti.http.openapi import OPENAPI, build_openapi, openapi
from cti.http.state import DEPS, DIRECTORY, SOCKETS

log = structlog.get_logger(__name__)

DESKTOP_DIR = Path(__file__).resolve().parent.parent / "desktop"
MAX_BODY = 256 * 1024


def _http_error(request: web.Request, exc: web.HTTPException) -> str:
    """aiohttp's own refusals, worded like ours (``what: why``)."""
    if exc.status == 404:
        return f"path: no such endpoint {request.path}"
    if exc.status == 405:
        return f"method: {request.method} is not allowed on {request.path}"
    if exc.status == 413:
        return f"body: larger than the {MAX_BODY // 1024} KiB allowed"
    return f"request: {exc.reason}"


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.message, **exc.extra)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, _http_error(request, exc))
    except Exception:
        log.exception("request failed", path=request.path, method=request.method)
        return error_response(500, "internal error (see the daemon's log)")


def cors_middleware(origins: list[str]) -> Middleware:
    allowed = frozenset(origins)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if not allowed or origin is None or not (origin in allowed or "*" in allowed):
            return await handler(request)
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            response: web.StreamResponse = web.Response(status=204)
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
            response.headers["Access-Control-Max-Age"] = "600"
        else:
            response = await handler(request)
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
        return response

    return middleware


async def login(request: web.Request) -> web.Response:
    body = await parse_body(request, LoginBody)
    agent = request.app[DIRECTORY].authenticate(body.token)
    if agent is None:
        raise ApiError(401, "token: unknown token")
    tiers = [
        {"name": name, "label": tier.label or name, "queue": tier.queue, "exten": tier.exten}
        for name, tier in request.app[DEPS].config.tiers.items()
    ]
    return web.json_response({"agent": agent_info(agent), "ws": "/ws", "tiers": tiers})


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(DESKTOP_DIR / "index.html")


async def favicon(request: web.Request) -> web.Response:
    """No icon, and no 401 for the request every browser makes (a console error each load)."""
    return web.Response(status=204, headers={"Cache-Control": "max-age=86400"})


async def _close_sockets(app: web.Application) -> None:
    sockets = app[SOCKETS]
    for socket in tuple(sockets):
        await socket.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")


def create_app(deps: ApiDeps) -> web.Application:
    """The HTTP API, WebSocket and desktop page for ``deps`` (see ``cti.http.deps.ApiDeps``)."""
    directory = AgentDirectory(deps.config.agents)
    app = web.Application(
        middlewares=[
            health.metrics_middleware,
            cors_middleware(list(deps.config.http.cors_origins)),
            error_middleware,
            auth_middleware(directory, deps.config.agi.http_token),
            forward_middleware,
        ],
        client_max_size=MAX_BODY,
    )
    app[DEPS] = deps
    app[DIRECTORY] = directory
    sockets: set[web.WebSocketResponse] = set()
    app[SOCKETS] = sockets
    app[OPENAPI] = build_openapi()
    health.setup_metrics(
        app, deps.registry or CollectorRegistry(), deps.hub, deps.resync_status, deps.pbx_status
    )
    app.on_shutdown.append(_close_sockets)
    r = app.router
    r.add_get("/", index)
    r.add_get("/favicon.ico", favicon)
    r.add_static("/desktop/", DESKTOP_DIR, append_version=False)
    r.add_get("/healthz", health.healthz)
    r.add_get("/metrics", health.metrics)
    r.add_get("/ws", ws.websocket)
    r.add_get("/api/openapi.json", openapi)
    r.add_post("/api/login", login)
    r.add_get("/api/me", agent_state.me)
    r.add_get("/api/customers", customers.search_customers)
    r.add_get("/api/customers/{customer_id}", customers.get_customer)
    r.add_get("/api/calls", calls.list_calls)
    r.add_post("/api/calls/originate", calls.originate)
    r.add_get("/api/calls/{call_id}", calls.get_call)
    r.add_post("/api/calls/{call_id}/notes", calls.add_note)
    r.add_post("/api/calls/{call_id}/disposition", calls.set_disposition)
    r.add_post("/api/calls/{call_id}/escalate", calls.escalate)
    r.add_post("/api/agent/queues", agent_state.queues)
    r.add_post("/api/agent/pause", agent_state.pause)
    identify.setup(app)
    supervisor.setup(app)
    cases.setup(app)
    customers_admin.setup(app)
    if deps.route_handler is not None:
        r.add_post("/api/route", deps.route_handler)
    return app


__all__ = ["AGENT", "DESKTOP_DIR", "create_app"]
