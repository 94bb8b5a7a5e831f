"""``POST /api/route``: the routing decision over HTTP, for the classic AGI script ``cti-agi``.

Body: ``{"caller": "+442071234567", "dnid": "08005550100", "uniqueid": "...", "channel": "..."}``
(all optional; ``caller`` as Asterisk presents it, ``unknown``/empty for none). Answer: the
decision (``queue``, ``priority``, ``tier``, ``customer_id``, ``reason``, ``rule``, ``variables``,
``fallback``, ``status``) and ``dialplan``, every variable the dialplan gets, in order.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from cti.routing.decisions import DecisionLog
from cti.routing.router import Router


class RouteRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    caller: str | None = None
    dnid: str | None = None
    uniqueid: str | None = None
    channel: str | None = None


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _bad_request(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


def route_handler(
    router: Router, decisions: DecisionLog, *, clock: Callable[[], datetime] = _utc_now
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def route(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return _bad_request(f"the body must be a JSON object: {exc}")
        if not isinstance(body, dict):
            return _bad_request("the body must be a JSON object")
        try:
            asked = RouteRequest.model_validate(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            return _bad_request(f"{field}: {first['msg']}")
        caller = None if asked.caller in (None, "", "unknown") else asked.caller
        dnid = None if asked.dnid in (None, "", "unknown") else asked.dnid
        decision = await router.route(caller, dnid)
        if asked.uniqueid:
            decisions.record(asked.uniqueid, asked.channel, decision, clock())
        return web.json_response({**decision.to_dict(), "dialplan": decision.dialplan_variables()})

    return route
