"""Keeping the customer records clean: duplicates, merge, divide and their audit. Supervisors
only (403 for agents); 503 when the daemon has no CRM store of its own to change.

- ``GET /api/crm/duplicates?min_score=50&limit=100``: likely duplicates, each with its score
  and reasons (``crm_core.duplicates``);
- ``GET /api/crm/customers/{id}/records``: a customer's numbers, interactions and cases with
  their ids (what a divide chooses from);
- ``POST /api/crm/merge`` ``{"survivor_id", "merged_id"}``: everything of ``merged_id`` moves
  to ``survivor_id`` in one transaction (``crm_core.merge``); 409 for the same customer twice
  or one already merged away; answers the audit entry, with ``followed``: the live calls
  (and calls in their wrap-up) that named the merged customer and now name the survivor on
  every desktop showing them, and the survivor's open callback tasks shown again with its name;
- ``POST /api/crm/divide`` ``{"customer_id", "to_customer_id" | "new_customer", "phone_ids",
  "shared_phone_ids", "interaction_ids", "case_ids"}``; answers the audit entry;
- ``GET /api/crm/audit?from=&to=&customer_id=``: merges and divides, who, when, what moved.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from aiohttp import web

from crm_core.errors import CrmUnavailable
from crm_core.merge import (
    CustomerMaintenance,
    CustomerNotFound,
    InvalidDivide,
    MergeConflict,
    NewCustomer,
    RecordsLost,
)
from cti.http.auth import AGENT, is_supervisor
from cti.http.customers import int_param
from cti.http.deps import ApiDeps
from cti.http.errors import ApiError, parse_body
from cti.http.models import DivideBody, MergeBody
from cti.http.state import DEPS
from cti.http.stats import query_period

log = structlog.get_logger(__name__)


def maintenance(request: web.Request) -> CustomerMaintenance:
    """The merge/divide service, for a supervisor's request (403 for anyone else)."""
    if not is_supervisor(request[AGENT]):
        raise ApiError(403, "merging, dividing and duplicates are for supervisors")
    found = request.app[DEPS].customers_admin
    if found is None:
        raise ApiError(503, "this daemon has no CRM store of its own to merge or divide in")
    return found


def _refused(exc: Exception) -> ApiError:
    if isinstance(exc, CustomerNotFound):
        return ApiError(404, f"id: {exc}")
    if isinstance(exc, InvalidDivide):
        return ApiError(400, str(exc))
    if isinstance(exc, MergeConflict | RecordsLost):
        return ApiError(409, str(exc))
    return ApiError(503, str(exc))


async def duplicates(request: web.Request) -> web.Response:
    service = maintenance(request)
    min_score = int_param(request.query.get("min_score", "50"), "min_score", low=0, high=100)
    limit = int_param(request.query.get("limit", "100"), "limit", high=1000)
    try:
        report = await service.duplicates(min_score=min_score)
    except CrmUnavailable as exc:
        raise _refused(exc) from None
    found = report.to_dict()
    found["pairs"] = found["pairs"][:limit]
    return web.json_response(found)


async def records(request: web.Request) -> web.Response:
    service = maintenance(request)
    customer_id = int_param(request.match_info["customer_id"], "id")
    try:
        return web.json_response(await service.records(customer_id))
    except (CustomerNotFound, CrmUnavailable) as exc:
        raise _refused(exc) from None


async def merge(request: web.Request) -> web.Response:
    service = maintenance(request)
    body = await parse_body(request, MergeBody)
    try:
        entry = await service.merge(body.survivor_id, body.merged_id, actor=request[AGENT].name)
    except (CustomerNotFound, MergeConflict, RecordsLost, CrmUnavailable) as exc:
        raise _refused(exc) from None
    entry["followed"] = await _follow_merge(request.app[DEPS], body.merged_id, body.survivor_id)
    return web.json_response(entry)


async def _follow_merge(deps: ApiDeps, merged_id: int, survivor_id: int) -> dict[str, Any]:
    """What the database does not hold: the calls in progress (and in their wrap-up) that
    name the merged customer name the survivor, on every desktop that shows them (agents'
    and supervisors'); the callback tasks now the survivor's are shown with its name."""
    calls = await deps.calls.customer_merged(merged_id, survivor_id)
    for ctx in calls:
        deps.hub.publish_update(ctx, also=ctx.agents)  # an ended call: its wrap-up desk
    tasks: list[int] = []
    if deps.callbacks is not None and deps.callback_news is not None:
        try:
            for task in await deps.callbacks.open_for(survivor_id):
                deps.callback_news.changed(task)
                tasks.append(task.task_id)
        except CrmUnavailable as exc:  # the merge stands; the desktops read them on reconnect
            log.warning("merge.callbacks_not_announced", error=str(exc))
    log.info("merge followed", survivor=survivor_id, merged=merged_id, live_calls=len(calls))
    return {"live_calls": [c.call_id for c in calls], "callback_tasks": tasks}


async def divide(request: web.Request) -> web.Response:
    service = maintenance(request)
    body = await parse_body(request, DivideBody)
    new = body.new_customer
    try:
        entry = await service.divide(
            body.customer_id,
            actor=request[AGENT].name,
            to_customer_id=body.to_customer_id,
            new_customer=NewCustomer(new.name, new.email, new.address) if new else None,
            phone_ids=body.phone_ids,
            shared_phone_ids=body.shared_phone_ids,
            interaction_ids=body.interaction_ids,
            case_ids=body.case_ids,
        )
    except (CustomerNotFound, InvalidDivide, MergeConflict, RecordsLost, CrmUnavailable) as exc:
        raise _refused(exc) from None
    return web.json_response(entry)


async def audit(request: web.Request) -> web.Response:
    service = maintenance(request)
    q = request.query
    now = time.time()
    start, end = query_period(q, now - 30 * 86400.0, now + 60.0)
    customer = q.get("customer_id")
    customer_id = int_param(customer, "customer_id") if customer is not None else None
    try:
        entries = await service.audit(start, end, customer_id=customer_id)
    except CrmUnavailable as exc:
        raise _refused(exc) from None
    return web.json_response({"entries": entries})


def setup(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/crm/duplicates", duplicates)
    r.add_get("/api/crm/customers/{customer_id}/records", records)
    r.add_post("/api/crm/merge", merge)
    r.add_post("/api/crm/divide", divide)
    r.add_get("/api/crm/audit", audit)
