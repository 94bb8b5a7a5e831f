"""``POST /api/route``: the routing decision over HTTP, for the classic AGI script ``cti-agi``.

Body: ``{"caller": "+442071234567", "dnid": "08005550100", "uniqueid": "...", "channel": "..."}``
(all optional; ``caller`` as Asterisk presents it, ``unknown``/empty for none). Answer: the
decision (``queue``, ``priority``, ``tier``, ``customer_id``, ``reason``, ``rule``, ``variables``,
``fallback``, ``status``) and ``dialplan``, every variable the dialplan gets, in order.
It tells who owns a number, so it needs ``Authorization: Bearer <[agi] http_token>``
(``cti.http.auth`` checks it; the ``cti-agi`` script sends it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from aiohttp import web

from cti.http.errors import ApiError, error_response, parse_body
from cti.http.models import RouteBody
from cti.routing.decisions import DecisionLog
from cti.routing.router import Router


def _utc_now() -> datetime:
    return datetime.now(UTC)


def route_handler(
    router: Router, decisions: DecisionLog, *, clock: Callable[[], datetime] = _utc_now
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The handler; the API's middlewares check its credential (``[agi] http_token``)."""

    async def route(request: web.Request) -> web.Response:
        try:  # validated where every other body is (cti.http.models)
            asked = await parse_body(request, RouteBody)
        except ApiError as exc:
            return error_response(exc.status, exc.message)
        caller = None if asked.caller in (None, "", "unknown") else asked.caller
        dnid = None if asked.dnid in (None, "", "unknown") else asked.dnid
        decision = await router.route(caller, dnid)
        if asked.uniqueid:
            decisions.record(asked.uniqueid, asked.channel, decision, clock())
        return web.json_response({**decision.to_dict(), "dialplan": decision.dialplan_variables()})

    return route
