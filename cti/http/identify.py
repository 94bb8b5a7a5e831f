"""Who is calling: the agent attaches a customer to a live call from the pop.

- ``POST /api/calls/{call_id}/customer``: one of the candidates of a shared number
  (``method: candidate``) or a customer found by searching (``method: search``);
- ``POST /api/calls/{call_id}/customer/new``: a customer created for the caller;
- ``POST /api/calls/{call_id}/number``: the caller's number added to the call's customer.

Attaching updates the call everywhere: its context (which later transfers and escalations
carry), every desktop that has the call (``update`` to its agents and the supervisors), the
caller's channel (``CTI_CUSTOMER_ID``, for the dialplan's later AGI) and the interaction
record (``customer_id``, ``extra.confirmed_by`` and ``extra.method``).

The caller's number is added to the customer only when the agent asks for it
(``remember_number``): without that, the next call from the number is as unknown (or
ambiguous) as this one was. A withheld number is never added. The whole request is checked
(call, customer, number) before anything is written or sent to Asterisk. A customer merged
into another since the desktop listed it is attached as the survivor.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import structlog
from aiohttp import web

from crm_core.errors import InvalidCustomer
from cti.calls import CallContext, UnknownCall
from cti.http.access import require_sees
from cti.http.auth import AGENT
from cti.http.calls import call_link, no_call
from cti.http.deps import ApiDeps
from cti.http.errors import ApiError, parse_body
from cti.http.models import ConfirmBody, NewCustomerBody, NumberBody
from cti.http.state import DEPS
from cti.pbx_actions import PbxRefused

log = structlog.get_logger(__name__)

# Resolution statuses whose number says nothing about anyone (nothing to remember).
_NO_NUMBER = frozenset({"anonymous", "internal"})


@runtime_checkable
class CustomerWriter(Protocol):
    """A CRM that takes new customers and numbers from the desktop (``crm_core`` store)."""

    async def upsert_customer(
        self,
        *,
        name: str,
        email: str | None = None,
        address: str | None = None,
    ) -> Any: ...

    async def add_phone(
        self, customer_id: int, number: str, kind: str = "mobile"
    ) -> str | None: ...


def _call(request: web.Request) -> CallContext:
    call_id = request.match_info["call_id"]
    ctx = request.app[DEPS].calls.get(call_id)
    if ctx is None:
        raise no_call(request.app[DEPS], call_id)
    require_sees(request[AGENT], ctx)
    return ctx


def _writer(deps: ApiDeps) -> CustomerWriter:
    crm = deps.crm
    if not isinstance(crm, CustomerWriter):
        raise ApiError(409, "crm: this CRM does not take customers or numbers from the desktop")
    return crm


def _number_to_remember(ctx: CallContext, field: str) -> str:
    """The caller's number in E.164 form; 400 when there is none to add (withheld...)."""
    if ctx.status in _NO_NUMBER or not ctx.caller_e164:
        if ctx.status == "anonymous" or not ctx.caller:
            why = "withheld"
        elif ctx.status == "internal":
            why = "an extension"
        else:
            why = "not known yet (the CRM has not answered)"
        raise ApiError(
            400, f"{field}: the caller's number is {why}: there is no number to add to a customer"
        )
    if ctx.direction == "outbound":
        raise ApiError(400, f"{field}: the call was dialled by the agent: nothing to remember")
    return ctx.caller_e164


async def _survivor(deps: ApiDeps, customer_id: int) -> int:
    """The customer to attach: a customer merged away since the desktop listed it (a search
    result, a candidate) is the survivor now; 503 when the CRM cannot say."""
    admin = deps.customers_admin
    if admin is None:
        return customer_id
    try:
        survivor = await admin.survivor_of(customer_id)
    except Exception as exc:
        log.warning("crm survivor lookup failed", customer_id=customer_id, error=repr(exc))
        raise ApiError(503, "crm: cannot check the customer (CRM unavailable)") from exc
    return survivor if survivor is not None else customer_id


async def _existing(deps: ApiDeps, customer_id: int) -> str:
    """The customer's name; 404 when there is no such customer, 503 when the CRM is down."""
    try:
        view = await deps.crm.view(customer_id)
    except Exception as exc:
        log.warning("crm view failed", customer_id=customer_id, error=repr(exc))
        raise ApiError(503, "crm: cannot check the customer (CRM unavailable)") from exc
    if view is None:
        raise ApiError(404, f"customer_id: no customer {customer_id}")
    return view.name


async def _add_number(writer: CustomerWriter, customer_id: int, number: str, kind: str) -> None:
    try:
        await writer.add_phone(customer_id, number, kind)
    except Exception as exc:
        log.warning("adding a number failed", customer_id=customer_id, error=repr(exc))
        raise ApiError(503, "crm: cannot add the number (CRM unavailable)") from exc


async def _attach(
    request: web.Request, ctx: CallContext, customer_id: int, method: str
) -> dict[str, Any]:
    """Attach the customer to the call everywhere; the response body."""
    deps = request.app[DEPS]
    agent = request[AGENT]
    try:
        ctx = await deps.calls.confirm_customer(ctx.call_id, customer_id, agent.name, method)
    except UnknownCall:
        raise ApiError(404, f"call_id: no live call {ctx.call_id}") from None
    deps.hub.publish_update(ctx, also=ctx.agents)  # an ended call: its wrap-up desk
    result: dict[str, Any] = {"call": ctx.to_dict(), "pbx": "not needed (the call has ended)"}
    channel = ctx.caller_channel
    if ctx.state != "ended" and channel:
        # The attachment stands whatever Asterisk says: the agent knows who is calling.
        try:
            await call_link(deps, ctx.call_id).setvar(
                "CTI_CUSTOMER_ID", str(customer_id), channel=channel
            )
        except (ApiError, PbxRefused) as exc:
            log.warning("ami action refused", action="Setvar", error=str(exc))
            result["pbx"] = f"ami: Setvar CTI_CUSTOMER_ID not sent: {exc}"
        except deps.ami_errors as exc:
            log.warning("ami action failed", action="Setvar", error=str(exc))
            result["pbx"] = f"ami: Setvar CTI_CUSTOMER_ID failed: {exc}"
        else:
            result["pbx"] = "CTI_CUSTOMER_ID set on the caller's channel"
    log.info("caller identified", call_id=ctx.call_id, customer_id=customer_id, method=method)
    return result


async def confirm_customer(request: web.Request) -> web.Response:
    """The agent says who is calling: a candidate of the shared number or a search result."""
    deps = request.app[DEPS]
    ctx = _call(request)
    body = await parse_body(request, ConfirmBody)
    customer_id = await _survivor(deps, body.customer_id)
    if body.method == "candidate":
        known = [c.get("customer_id") for c in ctx.candidates]
        merged = [c.get("merged_from") for c in ctx.candidates]
        # A candidate merged away since the pop, once or along a chain (John into Zed, Zed
        # into Dee: the list names Dee, merged from Zed): its survivor is the one listed.
        if not {body.customer_id, customer_id} & {*known, *merged}:
            listed = ", ".join(str(k) for k in known) or "none"
            raise ApiError(
                400,
                f"customer_id: {body.customer_id} is not one of the customers this caller's "
                f"number belongs to ({listed})",
            )
    number = _number_to_remember(ctx, "remember_number") if body.remember_number else None
    writer = _writer(deps) if number else None
    await _existing(deps, customer_id)
    if writer is not None and number is not None:
        await _add_number(writer, customer_id, number, "other")
    result = await _attach(request, ctx, customer_id, body.method)
    result["number_added"] = number
    return web.json_response(result)


async def new_customer(request: web.Request) -> web.Response:
    """Create a customer for the caller on the line and attach it to the call."""
    deps = request.app[DEPS]
    ctx = _call(request)
    body = await parse_body(request, NewCustomerBody)
    number = _number_to_remember(ctx, "remember_number") if body.remember_number else None
    writer = _writer(deps)
    try:
        created = await writer.upsert_customer(
            name=body.name, email=body.email or None, address=body.address or None
        )
    except InvalidCustomer as exc:
        raise ApiError(400, f"customer: {exc}") from exc
    except Exception as exc:
        log.warning("creating a customer failed", error=repr(exc))
        raise ApiError(503, "crm: cannot create the customer (CRM unavailable)") from exc
    customer_id = int(created.customer_id)
    if number is not None:
        await _add_number(writer, customer_id, number, "other")
    result = await _attach(request, ctx, customer_id, "created")
    result["number_added"] = number
    return web.json_response(result, status=201)


async def add_number(request: web.Request) -> web.Response:
    """Add the caller's number to the customer the call is attributed to."""
    deps = request.app[DEPS]
    ctx = _call(request)
    body = await parse_body(request, NumberBody)
    number = _number_to_remember(ctx, "number")
    if ctx.customer_id is None:
        raise ApiError(409, f"call_id: no customer is attached to call {ctx.call_id} yet")
    writer = _writer(deps)
    await _add_number(writer, ctx.customer_id, number, body.kind)
    log.info("number added", call_id=ctx.call_id, customer_id=ctx.customer_id)
    return web.json_response(
        {"call_id": ctx.call_id, "customer_id": ctx.customer_id, "number_added": number},
        status=201,
    )


def setup(app: web.Application) -> None:
    r = app.router
    r.add_post("/api/calls/{call_id}/customer", confirm_customer)
    r.add_post("/api/calls/{call_id}/customer/new", new_customer)
    r.add_post("/api/calls/{call_id}/number", add_number)
