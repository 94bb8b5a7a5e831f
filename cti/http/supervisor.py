"""The supervisor console: its page, its WebSocket, the board, and acting on agents.

- ``GET /supervisor``: the page (``cti/desktop/supervisor.html``);
- ``GET /ws/supervisor``: first frame ``{"type": "auth", "token": ...}`` (a supervisor's), then
  ``hello``, a ``snapshot`` and the console messages (``cti.supervisor.service``);
- ``GET /api/supervisor/board``: the same board as JSON;
- ``POST /api/supervisor/agent``: ``{"agent", "action": login|logout|pause|unpause,
  "queue", "reason"}``, validated in full (agent, phone, queue, reason) before any AMI action;
- ``POST /api/calls/{id}/spy``: ``{"mode": listen|whisper|barge}``: the supervisor's phone
  rings into ChanSpy on the agent's channel (audited);
- ``POST /api/calls/{id}/recording``: ``{"paused": true|false}``: the agent on the call or a
  supervisor pauses the recording (audited);
- ``GET /api/recordings/{id}``: the recording (Range requests served), to supervisors and the
  agent who took the call; every playback audited;
- ``GET /api/supervisor/audit?from=&to=``: the audit log.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import structlog
from aiohttp import WSMsgType, web

from cti.http.access import is_on_call
from cti.http.auth import AGENT, agent_info, is_supervisor
from cti.http.calls import agent_link, ami_action, no_call
from cti.http.errors import ApiError, parse_body
from cti.http.models import AgentActionBody, RecordingBody, SpyBody
from cti.http.state import DEPS, DIRECTORY, SOCKETS
from cti.http.stats import supervision
from cti.http.ws import first_message_token
from cti.hub import Subscription
from cti.supervisor.listen import Supervise, SupervisionRefused
from cti.supervisor.service import parse_when

log = structlog.get_logger(__name__)

PAGE = Path(__file__).resolve().parent.parent / "desktop" / "supervisor.html"
CLOSE_UNAUTHORISED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_TOO_SLOW = 1013
AUTH_TIMEOUT_S = 10.0


def _supervise(request: web.Request) -> Supervise:
    service = request.app[DEPS].supervision
    found = service.supervise if service is not None else None
    if found is None:
        raise ApiError(503, "listening and recording are not running in this daemon")
    return found


async def spy(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    who = request[AGENT]
    if not is_supervisor(who):
        raise ApiError(403, "only a supervisor may listen to calls")
    body = await parse_body(request, SpyBody)
    supervise = _supervise(request)
    ctx = deps.calls.get(request.match_info["call_id"])
    if ctx is None and deps.pbx is not None and deps.pbx.standby_for(request.match_info["call_id"]):
        raise no_call(deps, request.match_info["call_id"])
    try:
        async with ami_action(deps, "Originate"):
            result = await supervise.spy(who, ctx, body.mode)
    except SupervisionRefused as exc:
        raise ApiError(exc.status, exc.message) from None
    return web.json_response(result, status=201)


async def pause_recording(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    who = request[AGENT]
    body = await parse_body(request, RecordingBody)
    supervise = _supervise(request)
    call_id = request.match_info["call_id"]
    ctx = deps.calls.get(call_id)
    if ctx is None:
        raise no_call(deps, call_id)
    if not (is_supervisor(who) or is_on_call(who, ctx)):
        raise ApiError(403, f"call {call_id} is not one of yours ({who.name})")
    try:
        async with ami_action(deps, "MixMonitorMute"):
            await supervise.pause_recording(who, call_id, body.paused)
    except SupervisionRefused as exc:
        raise ApiError(exc.status, exc.message) from None
    return web.json_response({"call_id": call_id, "paused": body.paused})


async def recording(request: web.Request) -> web.StreamResponse:
    who = request[AGENT]
    supervise = _supervise(request)
    call_id = request.match_info["call_id"]
    if not is_supervisor(who) and not await _took_call(request, call_id, who.member or who.name):
        raise ApiError(403, f"call {call_id} was not yours ({who.name})")
    path = supervise.recording_path(call_id)
    if not path.is_file():
        # Several instances read one shared directory: not found here is not found anywhere,
        # unless this instance's recordings_dir is not the one Asterisk writes.
        log.info("recording.not_found", call_id=call_id, directory=str(path.parent))
        raise ApiError(404, f"no recording of call {call_id}")
    await supervise.audit.add(
        at=supervise.clock(),
        supervisor=who.name,
        action="playback",
        call_id=call_id,
        target=path.name,
        detail={"range": request.headers.get("Range")},
    )
    response = web.FileResponse(path)
    response.content_type = "audio/wav"
    return response


async def _took_call(request: web.Request, call_id: str, member: str) -> bool:
    """From this instance's memory or the legs written; a call another instance ingests is in
    that instance's memory until it ended and its legs were written: asked there."""
    deps = request.app[DEPS]
    service = deps.supervision
    assert service is not None
    if await service.took_call(call_id, member):
        return True
    pbx = deps.pbx.standby_for(call_id) if deps.pbx is not None else None
    if pbx is None or deps.forward is None:
        return False
    return await deps.forward.took_call(pbx, call_id, member)


async def audit_log(request: web.Request) -> web.Response:
    if not is_supervisor(request[AGENT]):
        raise ApiError(403, "the audit log is for supervisors")
    supervise = _supervise(request)
    try:
        start = parse_when(request.query.get("from", "1970-01-01"), "from")
        end = parse_when(request.query.get("to", "2999-01-01"), "to")
    except ValueError as exc:
        raise ApiError(400, str(exc)) from exc
    return web.json_response({"entries": await supervise.audit.entries(start, end)})


async def page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(PAGE)


async def get_board(request: web.Request) -> web.Response:
    return web.json_response(supervision(request).view())


async def agent_action(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    if not is_supervisor(request[AGENT]):
        raise ApiError(403, "agent: only a supervisor may act on agents")
    body = await parse_body(request, AgentActionBody)
    target = next((a for a in deps.config.agents if a.name == body.agent), None)
    if target is None or target.role != "agent":
        raise ApiError(404, f"agent: no agent named {body.agent!r} in the config")
    if not target.interface:
        raise ApiError(409, f"agent: {target.name} has no phone interface in the config")
    queues = {t.queue for t in deps.config.tiers.values()}
    if body.action in ("login", "logout") and body.queue is None:
        raise ApiError(400, f"queue: required to {body.action}")
    if body.queue is not None and body.queue not in queues:
        raise ApiError(400, f"queue: {body.queue!r} is not a configured queue")
    ami = agent_link(deps, target)
    if body.action == "login":
        assert body.queue is not None
        async with ami_action(deps, "QueueAdd"):
            await ami.queue_add(
                body.queue, target.interface, member_name=target.member or target.name
            )
    elif body.action == "logout":
        assert body.queue is not None
        async with ami_action(deps, "QueueRemove"):
            await ami.queue_remove(body.queue, target.interface)
    else:
        async with ami_action(deps, "QueuePause"):
            await ami.queue_pause(
                target.interface,
                body.action == "pause",
                queue=body.queue,
                reason=body.reason or None,
            )
    log.info("supervisor.agent_action", by=request[AGENT].name, **body.model_dump())
    return web.json_response({"agent": target.name, "action": body.action, "queue": body.queue})


async def _send_loop(ws: web.WebSocketResponse, sub: Subscription) -> None:
    while True:
        message = await sub.next()
        if message is None:
            await ws.close(code=CLOSE_TOO_SLOW, message=b"too slow: reconnect")
            return
        try:
            await ws.send_str(message.text)
        except ConnectionError:
            return


async def console_socket(request: web.Request) -> web.StreamResponse:
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=64 * 1024, compress=False)
    await ws.prepare(request)
    agent = request.app[DIRECTORY].authenticate(await first_message_token(ws))
    if agent is None or not is_supervisor(agent):
        code = CLOSE_UNAUTHORISED if agent is None else CLOSE_FORBIDDEN
        error = "unknown or missing token" if agent is None else "supervisors only"
        await ws.send_json({"type": "error", "error": error})
        await ws.close(code=code, message=error.encode())
        return ws
    deps = request.app[DEPS]
    if deps.supervision is None:
        await ws.send_json({"type": "error", "error": "the console is not running"})
        await ws.close(code=CLOSE_FORBIDDEN)
        return ws
    await ws.send_json({"type": "hello", "agent": agent_info(agent)})
    transport = request.transport

    def cut() -> None:
        if transport is not None and transport.get_write_buffer_size() > 0:
            transport.abort()

    sub = deps.hub.subscribe(agent, cut, first=[deps.supervision.console_snapshot()], console=True)
    sockets = request.app[SOCKETS]
    sockets.add(ws)
    sender = asyncio.create_task(_send_loop(ws, sub), name=f"console-send-{agent.name}")
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT and msg.data == "ping":
                await ws.send_str('{"type":"pong"}')
            if sender.done():
                break
    finally:
        deps.hub.unsubscribe(sub)
        sockets.discard(ws)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
    return ws


def setup(app: web.Application) -> None:
    """The console's and the statistics' routes."""
    from cti.http import stats

    r = app.router
    r.add_get("/supervisor", page)
    r.add_get("/ws/supervisor", console_socket)
    r.add_get("/api/supervisor/board", get_board)
    r.add_post("/api/supervisor/agent", agent_action)
    r.add_post("/api/calls/{call_id}/spy", spy)
    r.add_post("/api/calls/{call_id}/recording", pause_recording)
    r.add_get("/api/recordings/{call_id}", recording)
    r.add_get("/api/supervisor/audit", audit_log)
    r.add_get("/api/stats/live", stats.live)
    r.add_get("/api/stats", stats.period)
