"""GET /ws: the desktop's WebSocket. Authenticates, then streams the agent's hub messages.

Auth: ``/ws?token=...`` or, better (keeps the token out of access logs), a first text frame
``{"type": "auth", "token": "..."}`` within ``AUTH_TIMEOUT_S``. The server answers
``{"type": "hello", "agent": {...}}`` then sends the replay of the agent's active call and
every new message. A desktop that cannot keep up is closed with code 1013 (try again later).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable

import structlog
from aiohttp import WSMsgType, web

from cti.config import AgentConfig
from cti.http.auth import agent_info
from cti.http.state import DEPS, DIRECTORY, SOCKETS
from cti.hub import Subscription

log = structlog.get_logger(__name__)

AUTH_TIMEOUT_S = 10.0
CLOSE_UNAUTHORISED = 4401
CLOSE_TOO_SLOW = 1013


async def first_message_token(ws: web.WebSocketResponse) -> str | None:
    try:
        async with asyncio.timeout(AUTH_TIMEOUT_S):
            msg = await ws.receive()
    except TimeoutError:
        return None
    if msg.type != WSMsgType.TEXT:
        return None
    try:
        data = json.loads(msg.data)
    except (ValueError, RecursionError):  # not JSON, or nested too deeply for the parser
        return None
    if isinstance(data, dict) and data.get("type") == "auth" and isinstance(data.get("token"), str):
        token: str = data["token"]
        return token
    return None


async def _send_loop(ws: web.WebSocketResponse, sub: Subscription) -> None:
    while True:
        message = await sub.next()
        if message is None:
            log.warning("desktop too slow, closing", agent=sub.agent.name)
            await ws.close(code=CLOSE_TOO_SLOW, message=b"too slow: reconnect")
            return
        try:
            await ws.send_str(message.text)
        except ConnectionError:
            return


def _cut_if_stuck(transport: asyncio.Transport | None) -> Callable[[], None]:
    """On overflow: a sender blocked on a full socket buffer is unblocked by aborting it."""

    def cut() -> None:
        if transport is not None and transport.get_write_buffer_size() > 0:
            transport.abort()

    return cut


async def websocket(request: web.Request) -> web.StreamResponse:
    directory = request.app[DIRECTORY]
    query_token = request.query.get("token")
    agent: AgentConfig | None = None
    if query_token is not None:
        agent = directory.authenticate(query_token)
        if agent is None:
            return web.json_response({"error": "unknown token"}, status=401)
    # No per-message deflate: pops are a few kB on a LAN, and deflate costs CPU on both ends.
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=64 * 1024, compress=False)
    await ws.prepare(request)
    if agent is None:
        agent = directory.authenticate(await first_message_token(ws))
        if agent is None:
            await ws.send_json({"type": "error", "error": "unknown or missing token"})
            await ws.close(code=CLOSE_UNAUTHORISED, message=b"unauthorised")
            return ws
    await ws.send_json({"type": "hello", "agent": agent_info(agent)})
    hub = request.app[DEPS].hub
    sockets = request.app[SOCKETS]
    sub = hub.subscribe(agent, on_overflow=_cut_if_stuck(request.transport))
    sockets.add(ws)
    sender = asyncio.create_task(_send_loop(ws, sub), name=f"ws-send-{agent.name}")
    log.info("desktop connected", agent=agent.name)
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT and msg.data == "ping":
                await ws.send_str('{"type":"pong"}')
            if sender.done():
                break
    finally:
        hub.unsubscribe(sub)
        sockets.discard(ws)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        log.info("desktop disconnected", agent=agent.name)
    return ws
