"""Cases from the pop and callbacks of callers who gave up.

- ``GET /api/cases/reasons``: the configured reasons (name, label, tier, SLA hours);
- ``GET /api/cases?customer_id=N``: the customer's open cases, SLA (deadline and ``sla_left_s``)
  and the calls made about each;
- ``POST /api/calls/{call_id}/cases`` ``{"reason", "subject"?}``: open a case for the call's
  customer (tier and SLA deadline from the reason), the call its first call;
- ``POST /api/cases/{case_id}/calls`` ``{"call_id"}``: this call is about the case too;
- ``POST /api/cases/{case_id}/close`` ``{"note"?}``;
- escalation: ``POST /api/calls/{id}/escalate`` with ``case_id`` escalates the case with the
  call (checked before anything reaches Asterisk: ``case_for_escalation``);
- ``GET /api/callbacks``: the open callback tasks of the agent's queues (all for
  supervisors), with the customer and how long they waited (``enabled`` false: off);
- ``POST /api/callbacks/{task_id}/dial`` ``{"agent"?}``: click-to-dial the task's number (the
  do-not-call check of ``/api/calls/originate``); the outbound call's end closes the task.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from aiohttp import web

from crm_core.callbacks import DO_NOT_CALL as DO_NOT_CALL_REASON
from crm_core.callbacks import CallbackBook, TaskClosed, UnknownTask
from crm_core.cases import CaseBook, CaseClosed, CaseRecord, InvalidCase, UnknownCase
from crm_core.errors import CrmUnavailable
from cti.calls import CallContext
from cti.config import AgentConfig
from cti.http.access import require_sees
from cti.http.auth import AGENT, is_supervisor
from cti.http.calls import (
    _acting,
    _dialable,
    _refuse_do_not_call,
    agent_link,
    no_call,
    ring_then_dial,
)
from cti.http.customers import int_param
from cti.http.deps import ApiDeps
from cti.http.errors import ApiError, parse_body
from cti.http.models import CallbackDialBody, CaseCallBody, CloseCaseBody, OpenCaseBody
from cti.http.state import DEPS

log = structlog.get_logger(__name__)


@asynccontextmanager
async def crm_errors() -> AsyncIterator[None]:
    """The case and callback books' errors as API errors."""
    try:
        yield
    except InvalidCase as exc:
        raise ApiError(400, str(exc)) from exc
    except (UnknownCase, UnknownTask) as exc:
        raise ApiError(404, str(exc)) from exc
    except (CaseClosed, TaskClosed) as exc:
        raise ApiError(409, str(exc)) from exc
    except CrmUnavailable as exc:
        log.warning("cases.crm_unavailable", error=str(exc))
        raise ApiError(503, "crm: the CRM database is unavailable: nothing was changed") from exc


def _cases(deps: ApiDeps) -> CaseBook:
    if deps.cases is None:
        raise ApiError(503, "cases: the CRM of this daemon keeps no cases")
    return deps.cases


def _callbacks(deps: ApiDeps) -> CallbackBook:
    if deps.callbacks is None:
        raise ApiError(503, "callbacks: callback tasks are off ([callbacks] enabled = false)")
    return deps.callbacks


def _live_call(request: web.Request, call_id: str) -> CallContext:
    ctx = request.app[DEPS].calls.get(call_id)
    if ctx is None:
        raise no_call(request.app[DEPS], call_id)
    require_sees(request[AGENT], ctx)
    return ctx


def call_customer(ctx: CallContext) -> int:
    """The customer the call is about; 409 while nobody knows who is calling."""
    if ctx.customer_id is not None and (ctx.status == "match" or ctx.confirmed_by):
        return ctx.customer_id
    if ctx.status == "ambiguous":
        raise ApiError(
            409, f"call_id: confirm which customer is calling on call {ctx.call_id} first"
        )
    raise ApiError(409, f"call_id: no customer is identified on call {ctx.call_id}")


def _case_json(case: CaseRecord) -> dict[str, object]:
    return case.to_dict(time.time())


async def reasons(request: web.Request) -> web.Response:
    """The reasons; ``enabled`` false (no reasons) when this daemon's CRM keeps no cases."""
    book = request.app[DEPS].cases
    found = book.reasons.values() if book is not None else ()
    return web.json_response(
        {
            "enabled": book is not None,
            "reasons": [
                {"name": r.name, "label": r.label, "tier": r.tier, "sla_hours": r.sla_hours}
                for r in found
            ],
        }
    )


async def list_cases(request: web.Request) -> web.Response:
    book = _cases(request.app[DEPS])
    customer_id = int_param(request.query.get("customer_id", ""), "customer_id")
    async with crm_errors():
        found = await book.open_cases(customer_id)
    return web.json_response({"cases": [_case_json(c) for c in found]})


async def open_case(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    book = _cases(deps)
    body = await parse_body(request, OpenCaseBody)
    async with crm_errors():
        book.reason(body.reason)
    ctx = _live_call(request, request.match_info["call_id"])
    customer_id = call_customer(ctx)
    agent = request[AGENT].name
    async with crm_errors():
        case = await book.open_case(
            customer_id, body.reason, by=agent, call_id=ctx.call_id, subject=body.subject
        )
    log.info("case opened", case_id=case.case_id, call_id=ctx.call_id, reason=body.reason)
    return web.json_response({"case": _case_json(case)}, status=201)


async def add_call(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    book = _cases(deps)
    case_id = int_param(request.match_info["case_id"], "case_id")
    body = await parse_body(request, CaseCallBody)
    ctx = _live_call(request, body.call_id)
    async with crm_errors():
        await book.check_open(case_id, call_customer(ctx))
        case = await book.add_call(case_id, ctx.call_id, by=request[AGENT].name)
    return web.json_response({"case": _case_json(case)})


async def close_case(request: web.Request) -> web.Response:
    book = _cases(request.app[DEPS])
    case_id = int_param(request.match_info["case_id"], "case_id")
    body = await parse_body(request, CloseCaseBody)
    async with crm_errors():
        case = await book.close(case_id, by=request[AGENT].name, note=body.note)
    log.info("case closed", case_id=case_id)
    return web.json_response({"case": _case_json(case)})


async def case_for_escalation(deps: ApiDeps, ctx: CallContext, case_id: int | None) -> None:
    """Before an escalation reaches Asterisk: the case to escalate with the call is open and
    the call's customer's (400/404/409 otherwise)."""
    if case_id is None:
        return
    book = _cases(deps)
    async with crm_errors():
        await book.check_open(case_id, call_customer(ctx))


async def escalate_case(
    deps: ApiDeps, ctx: CallContext, case_id: int | None, tier: str, by: str, reason: str
) -> dict[str, object] | None:
    """After the call moved: the case follows it to ``tier`` (a CRM failure now is reported
    in the answer, the caller has already moved)."""
    if case_id is None or deps.cases is None:
        return None
    try:
        case = await deps.cases.escalate(case_id, tier, by=by, call_id=ctx.call_id, reason=reason)
    except Exception as exc:
        log.error("case escalation failed", case_id=case_id, call_id=ctx.call_id, error=repr(exc))
        return {"case_id": case_id, "error": f"the call moved, the case did not: {exc}"}
    return _case_json(case)


# ---- callbacks --------------------------------------------------------------------------


def agent_queues(deps: ApiDeps, agent: AgentConfig) -> set[str] | None:
    """The queues whose callbacks an agent sees (None: all, for supervisors)."""
    if is_supervisor(agent):
        return None
    tiers = deps.config.tiers
    return {tiers[t].queue for t in agent.tiers if t in tiers}


async def list_callbacks(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    book = deps.callbacks
    if book is None:  # off: nothing to call back, not an error for a desktop that asks
        return web.json_response({"enabled": False, "callbacks": [], "poll_s": None})
    queues = agent_queues(deps, request[AGENT])
    async with crm_errors():
        tasks = await book.for_queues(queues)
    now = time.time()
    return web.json_response(
        {
            "enabled": True,
            "callbacks": [
                {**t.to_dict(), "since_s": round(max(0.0, now - t.last_abandoned_at), 1)}
                for t in tasks
            ],
            "poll_s": deps.config.callbacks.poll_s,
        }
    )


async def dial_callback(request: web.Request) -> web.Response:
    """One click: the agent's phone rings, then the number of the caller who gave up."""
    deps = request.app[DEPS]
    book = _callbacks(deps)
    task_id = int_param(request.match_info["task_id"], "task_id")
    body = await parse_body(request, CallbackDialBody)
    who = _acting(request, body.agent)
    if not who.interface:
        raise ApiError(409, f"agent: {who.name} has no phone interface in the config")
    async with crm_errors():
        task = await book.get(task_id)
    if task is None:
        raise ApiError(404, f"task_id: no callback task {task_id}")
    queues = agent_queues(deps, request[AGENT])
    if queues is not None and task.queue not in queues:
        raise ApiError(403, f"task_id: callback task {task_id} is for queue {task.queue}")
    if task.status == "dialling":
        raise ApiError(409, f"task_id: {task.dialled_by} is already calling this number")
    if task.status != "open":
        raise ApiError(409, f"task_id: callback task {task_id} is {task.status}")
    ami = agent_link(deps, who)
    number = _dialable(deps, task.e164)
    try:
        customer_id = await _refuse_do_not_call(deps, number, task.customer_id)
    except ApiError as refused:
        if refused.status != 409:
            raise
        # The customer refused calls since the caller gave up: nobody may dial it, so the
        # task leaves every agent's list instead of standing there undiallable.
        async with crm_errors():
            closed = await book.close(task_id, reason=DO_NOT_CALL_REASON, at=time.time())
        if closed and deps.callback_news is not None:
            await deps.callback_news.changed_ids(book, [task_id])
        raise ApiError(409, f"{refused.message}; task closed") from None
    async with crm_errors():
        task = await book.start_dialling(task_id, agent=who.name, at=time.time())
    news = deps.callback_news
    if news is not None:
        news.changed(task)  # the others see who is calling it
    variables = {"CTI_CALLBACK_TASK": str(task_id)}
    if customer_id is not None:
        variables["CTI_CUSTOMER_ID"] = str(customer_id)
    try:
        await ring_then_dial(deps, ami, who.interface, number, variables)
    except BaseException:
        await book.dial_failed(task_id)
        if news is not None:
            await news.changed_ids(book, [task_id])
        raise
    log.info("callback dialled", task_id=task_id, agent=who.name, customer_id=customer_id)
    return web.json_response(
        {"status": "dialling", "from": who.interface, "task": task.to_dict()}, status=202
    )


def setup(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/cases/reasons", reasons)
    r.add_get("/api/cases", list_cases)
    r.add_post("/api/calls/{call_id}/cases", open_case)
    r.add_post("/api/cases/{case_id}/calls", add_call)
    r.add_post("/api/cases/{case_id}/close", close_case)
    r.add_get("/api/callbacks", list_callbacks)
    r.add_post("/api/callbacks/{task_id}/dial", dial_callback)
