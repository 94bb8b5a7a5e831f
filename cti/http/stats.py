"""GET /api/stats/live and GET /api/stats?from=&to=&group_by=: supervisors only."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from cti.http.auth import AGENT, is_supervisor
from cti.http.errors import ApiError
from cti.http.state import DEPS
from cti.stats.figures import GROUPS
from cti.supervisor.api import SupervisionApi
from cti.supervisor.service import parse_when

MAX_PERIOD_S = 400 * 86400.0


def query_period(q: Mapping[str, str], start: float, end: float) -> tuple[float, float]:
    """The ``from``/``to`` of a query (``start``/``end`` where absent): 400 when they are not
    times, not in order, or more than 400 days apart."""
    try:
        start = parse_when(q["from"], "from") if "from" in q else start
        end = parse_when(q["to"], "to") if "to" in q else end
    except ValueError as exc:
        raise ApiError(400, str(exc)) from exc
    if end <= start:
        raise ApiError(400, "to: must be after from")
    if end - start > MAX_PERIOD_S:
        raise ApiError(400, "to: a period is at most 400 days")
    return start, end


def supervision(request: web.Request) -> SupervisionApi:
    """The supervision service, for a supervisor's request (403 for anyone else)."""
    if not is_supervisor(request[AGENT]):
        raise ApiError(403, "statistics and the console are for supervisors")
    found = request.app[DEPS].supervision
    if found is None:
        raise ApiError(503, "statistics are not running in this daemon")
    return found


async def live(request: web.Request) -> web.Response:
    service = supervision(request)
    everywhere = request.app[DEPS].live_stats  # several instances: the ingesters' figures
    return web.json_response(await everywhere() if everywhere is not None else service.live_stats())


async def period(request: web.Request) -> web.Response:
    service = supervision(request)
    q = request.query
    group_by = q.get("group_by", "queue")
    if group_by not in GROUPS:
        raise ApiError(400, f"group_by: one of {', '.join(GROUPS)}")
    if "from" not in q or "to" not in q:
        raise ApiError(400, "from, to: both are required (ISO dates or times, UTC by default)")
    start, end = query_period(q, 0.0, 0.0)  # both present: checked above
    return web.json_response(await service.period_stats(start, end, group_by))
