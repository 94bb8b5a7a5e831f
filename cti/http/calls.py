"""Live calls: list, details, notes, disposition, escalation to another tier, click-to-dial."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from aiohttp import web

from crm_core.phone import normalise
from cti.calls import CallContext, UnknownCall
from cti.config import AgentConfig
from cti.http.access import acting_agent, is_on_call, require_sees, sees_call
from cti.http.auth import AGENT, is_supervisor
from cti.http.deps import ApiDeps, CallActions
from cti.http.errors import ApiError, parse_body
from cti.http.forward import RELAYED
from cti.http.models import DispositionBody, EscalateBody, NoteBody, OriginateBody
from cti.http.state import DEPS
from cti.pbx_actions import PbxRefused

log = structlog.get_logger(__name__)

DO_NOT_CALL = "do_not_call"


@asynccontextmanager
async def ami_action(deps: ApiDeps, what: str) -> AsyncIterator[None]:
    """AMI failures become 502 with Asterisk's message; a PBX out of reach its own status."""
    try:
        yield
    except PbxRefused as exc:
        log.warning("ami action refused", action=what, error=exc.message)
        raise ApiError(exc.status, exc.message) from exc
    except deps.ami_errors as exc:
        log.warning("ami action failed", action=what, error=str(exc))
        raise ApiError(502, f"ami: {what} failed: {exc}") from exc


def call_link(deps: ApiDeps, call_id: str) -> CallActions:
    """The AMI link of the PBX the call is on (chosen before anything is sent)."""
    if deps.pbx is None:
        return deps.ami
    try:
        return deps.pbx.for_call(call_id)
    except PbxRefused as exc:
        raise ApiError(exc.status, exc.message) from None


def agent_link(deps: ApiDeps, agent: AgentConfig) -> CallActions:
    """The AMI link of the PBX the agent's phone is on (chosen before anything is sent)."""
    if deps.pbx is None:
        return deps.ami
    try:
        return deps.pbx.for_agent(agent)
    except PbxRefused as exc:
        raise ApiError(exc.status, exc.message) from None


def no_call(deps: ApiDeps, call_id: str) -> ApiError:
    """A call not in this instance's memory: 404, or 503 when another instance ingests its
    PBX (several instances: a standby does not hold that PBX's live calls)."""
    pbx = deps.pbx.standby_for(call_id) if deps.pbx is not None else None
    if pbx is not None:
        return ApiError(
            503,
            f"call_id: call {call_id} is on PBX {pbx}, which another instance ingests; "
            "this instance stands by for it: try again on the ingesting instance",
        )
    return ApiError(404, f"call_id: no live call {call_id}")


def _call(request: web.Request) -> CallContext:
    call_id = request.match_info["call_id"]
    deps = request.app[DEPS]
    ctx = deps.calls.get(call_id)
    if ctx is None:
        raise no_call(deps, call_id)
    require_sees(request[AGENT], ctx)
    return ctx


async def list_calls(request: web.Request) -> web.Response:
    """The live calls the agent sees; several instances: those of every ingester too (each
    answers for its PBXs; ``missing``: PBXs whose instance did not answer)."""
    agent = request[AGENT]
    deps = request.app[DEPS]
    calls = deps.calls.active()
    mine = [c.to_dict() for c in calls if is_supervisor(agent) or sees_call(agent, c)]
    if deps.forward is None or request.get(RELAYED):
        return web.json_response({"calls": mine})
    elsewhere, missing = await deps.forward.calls_elsewhere(request)
    here = {c["call_id"] for c in mine}
    mine.extend(c for c in elsewhere if c.get("call_id") not in here)
    return web.json_response({"calls": mine} | ({"missing": missing} if missing else {}))


async def get_call(request: web.Request) -> web.Response:
    return web.json_response(_call(request).to_dict())


async def add_note(request: web.Request) -> web.Response:
    ctx = _call(request)
    body = await parse_body(request, NoteBody)
    try:
        ctx = await request.app[DEPS].calls.add_note(ctx.call_id, request[AGENT].name, body.text)
    except UnknownCall:
        raise ApiError(404, f"call_id: no live call {ctx.call_id}") from None
    return web.json_response({"call_id": ctx.call_id, "notes": ctx.notes}, status=201)


async def set_disposition(request: web.Request) -> web.Response:
    ctx = _call(request)
    body = await parse_body(request, DispositionBody)
    calls = request.app[DEPS].calls
    try:
        ctx = await calls.set_disposition(ctx.call_id, body.code, request[AGENT].name)
    except UnknownCall:
        raise ApiError(404, f"call_id: no live call {ctx.call_id}") from None
    return web.json_response({"call_id": ctx.call_id, "disposition": ctx.disposition})


async def escalate(request: web.Request) -> web.Response:
    """Move the caller to a tier's queue with a higher priority, carrying reason and note.

    Sets CTI_PRIORITY (tier priority + escalation boost) and CTI_ESCALATION_REASON on the
    caller's channel, then Redirects it to the tier's dialplan entry, or BlindTransfers it from
    the agent's channel when the caller is bridged with an agent whose channel is known.

    The whole request is checked before the first action reaches Asterisk. The escalation is
    recorded before the first action, since Asterisk may ring the next tier's agent before it
    answers (that pop must carry the reason and note), and withdrawn if an action fails.
    """
    deps = request.app[DEPS]
    agent = request[AGENT]
    body = await parse_body(request, EscalateBody)
    tier = deps.config.tiers.get(body.tier)
    if tier is None:
        known = ", ".join(sorted(deps.config.tiers))
        raise ApiError(400, f"tier: unknown tier {body.tier!r} (known: {known})")
    ctx = _call(request)
    if not (is_supervisor(agent) or is_on_call(agent, ctx)):
        raise ApiError(
            403, f"call_id: only the agent on call {ctx.call_id} or a supervisor may escalate"
        )
    if ctx.state == "ended":
        raise ApiError(409, f"call_id: call {ctx.call_id} has ended")
    channel = ctx.caller_channel
    if not channel:
        raise ApiError(409, f"call_id: the caller's channel of call {ctx.call_id} is not known yet")
    from cti.http.cases import case_for_escalation, escalate_case  # (it imports this module)

    await case_for_escalation(deps, ctx, body.case_id)
    priority = tier.priority + tier.escalation_boost
    exten = tier.exten or tier.queue
    agent_channel = ctx.agent_channel
    bridged = ctx.state == "answered" and bool(agent_channel)
    from_agent = (ctx.agent if is_supervisor(agent) else agent.member) or agent.name
    action = "BlindTransfer" if bridged and agent_channel else "Redirect"
    ami = call_link(deps, ctx.call_id)
    ctx = deps.calls.mark_escalation(ctx.call_id, from_agent, body.tier, body.reason, body.note)
    escalation = ctx.escalations[-1]
    try:
        async with ami_action(deps, "Setvar"):
            await ami.setvar("CTI_PRIORITY", str(priority), channel=channel)
            await ami.setvar("CTI_ESCALATION_REASON", body.reason, channel=channel)
        async with ami_action(deps, action):
            if action == "BlindTransfer" and agent_channel:
                await ami.blind_transfer(agent_channel, exten=exten, context=tier.context)
            else:
                await ami.redirect(channel, context=tier.context, exten=exten, priority=1)
    except Exception:  # refused or failed: the caller was not moved
        # (A cancelled request keeps the record: Asterisk may have moved the caller already.)
        deps.calls.withdraw_escalation(ctx.call_id, escalation)
        raise
    log.info("call escalated", call_id=ctx.call_id, tier=body.tier, by=agent.name, action=action)
    case = await escalate_case(deps, ctx, body.case_id, body.tier, agent.name, body.reason)
    return web.json_response(
        {"call": ctx.to_dict(), "action": action, "tier": body.tier, "priority": priority}
        | ({"case": case} if case is not None else {})
    )


async def _refuse_do_not_call(deps: ApiDeps, number: str, customer_id: int | None) -> int | None:
    """The customer being dialled (if known: given, or the number's only owner; a number
    several customers share is nobody's); 409 when any owner of the number is do-not-call."""
    try:
        ids: list[int] = []
        owner: int | None = None
        if customer_id is not None:
            ids.append(customer_id)
        resolution = await deps.crm.resolve(number)
        if resolution.status == "match":
            owner = resolution.customer_id
        ids.extend(c.customer_id for c in resolution.candidates if c.customer_id not in ids)
        for cid in ids:
            view = await deps.crm.view(cid)
            if view is None:
                if cid == customer_id:
                    raise ApiError(404, f"customer_id: no customer {cid}")
                continue
            if DO_NOT_CALL in view.flags:
                field = "customer_id" if cid == customer_id else "number"
                why = f"customer {cid} ({view.name}) is flagged do-not-call: not dialling"
                raise ApiError(409, f"{field}: {why}")
    except ApiError:
        raise
    except Exception as exc:
        log.warning("do-not-call check failed", error=repr(exc))
        raise ApiError(
            503, "crm: cannot check the do-not-call flag (CRM unavailable): nothing dialled"
        ) from exc
    return customer_id if customer_id is not None else owner


def _dialable(deps: ApiDeps, typed: str) -> str:
    """What to dial for a number as a person typed it: its E.164 form, or an extension's digits;
    400 with a human message when it is neither."""
    phone = deps.config.phone
    found = normalise(typed, phone.default_region, phone.internal_max_digits)
    if found.kind == "e164" and found.e164:
        return found.e164
    if found.kind == "internal" and found.internal:
        return found.internal
    raise ApiError(
        400,
        f"number: {typed!r} is not a phone number that can be dialled: give a national number "
        f"of {phone.default_region}, an international one starting with + or 00, or an extension",
    )


async def ring_then_dial(
    deps: ApiDeps, ami: CallActions, interface: str, number: str, variables: dict[str, str]
) -> None:
    """Ring the agent's phone, then the number, from the originate context (raises on failure)."""
    async with ami_action(deps, "Originate"):
        await ami.originate(
            interface,
            context=deps.config.http.originate_context,
            exten=number,
            priority=1,
            variables=variables,
        )


async def originate(request: web.Request) -> web.Response:
    """Click-to-dial: ring the agent's own phone, then the number (never a do-not-call one)."""
    deps = request.app[DEPS]
    body = await parse_body(request, OriginateBody)
    who = _acting(request, body.agent)
    if not who.interface:
        raise ApiError(409, f"agent: {who.name} has no phone interface in the config")
    ami = agent_link(deps, who)
    number = _dialable(deps, body.number)
    customer_id = await _refuse_do_not_call(deps, number, body.customer_id)
    variables = {"CTI_CUSTOMER_ID": str(customer_id)} if customer_id is not None else {}
    await ring_then_dial(deps, ami, who.interface, number, variables)
    log.info("click to dial", agent=who.name, number=number, customer_id=customer_id)
    result: dict[str, Any] = {"status": "dialling", "from": who.interface, "number": number}
    result["customer_id"] = customer_id
    return web.json_response(result, status=202)


def _acting(request: web.Request, requested: str | None) -> AgentConfig:
    agents = {a.name: a for a in request.app[DEPS].config.agents}
    return acting_agent(request[AGENT], requested, agents)
