"""Values that cross the CRM boundary: resolution results, the 360° view, interaction records.

Everything here is a frozen dataclass with ``to_dict()`` giving plain JSON-serialisable data,
used as-is by the screen-pop, the HTTP API, the router and ``cti lookup --json``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

ResolutionStatus = Literal["match", "ambiguous", "unknown", "anonymous", "internal"]


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class _Plain:
    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = _plain(self)
        return result


@dataclass(frozen=True)
class Candidate(_Plain):
    customer_id: int
    external_id: str | None
    name: str
    # Why this candidate ranks where it does ("open case #12 (tier2)", "order 3 days ago"...).
    rank_reason: str = ""
    # The address's postcode ("SW1A 1AA"), where the source gives it (search results): what
    # tells two namesakes apart when the caller is asked for it.
    postcode: str | None = None


def renamed_candidates(
    listed: Sequence[Any], merged_id: int, survivor: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """A candidate list (``{customer_id, name, external_id, rank_reason}``) after
    ``merged_id`` was merged into ``survivor`` (``id``, ``name``, ``external_id``): the merged
    one is the survivor, marked ``merged_from``; listed once where both were listed."""
    out: list[dict[str, Any]] = []
    for c in listed:
        if not isinstance(c, dict):
            continue
        was_merged = c.get("customer_id") == merged_id
        if was_merged:
            c = {**c, "customer_id": survivor["id"], "name": survivor["name"],
                 "external_id": survivor.get("external_id"), "merged_from": merged_id}  # fmt: skip
        same = next((o for o in out if o.get("customer_id") == c.get("customer_id")), None)
        if same is None:
            out.append(dict(c))
        elif was_merged:
            same["merged_from"] = merged_id  # both were candidates: now one customer
    return out


@dataclass(frozen=True)
class Resolution(_Plain):
    status: ResolutionStatus
    e164: str | None
    caller: str  # the caller ID as presented
    candidates: tuple[Candidate, ...] = ()

    @property
    def customer_id(self) -> int | None:
        """The customer when exactly one matched (or the best ranked of several)."""
        return self.candidates[0].customer_id if self.candidates else None


@dataclass(frozen=True)
class PhoneView(_Plain):
    number: str  # as entered
    e164: str | None
    kind: str  # mobile / home / work / other


@dataclass(frozen=True)
class CaseView(_Plain):
    case_id: int
    subject: str
    status: str
    tier: str | None
    product: str | None
    sla_deadline: datetime | None
    notes: str
    calls: tuple[str, ...] = ()  # the ids of the calls made about it, oldest first


@dataclass(frozen=True)
class OrderView(_Plain):
    order_id: int
    reference: str
    status: str
    delivery_state: str | None
    tracking_ref: str | None
    placed_at: datetime | None


@dataclass(frozen=True)
class InteractionView(_Plain):
    interaction_id: int
    started_at: datetime | None
    direction: str
    queue: str | None
    tier: str | None
    agent: str | None
    outcome: str
    disposition: str | None
    notes: str


@dataclass(frozen=True)
class ContactView(_Plain):
    """A person at an organisation customer (who to ask for on the switchboard)."""

    name: str
    role: str | None
    email: str | None


@dataclass(frozen=True)
class CustomerView(_Plain):
    """The 360° view: what an agent needs on screen, highlights first."""

    customer_id: int
    external_id: str | None
    name: str
    kind: str  # person / organisation
    organisation: str | None
    language: str | None
    email: str | None
    address: str | None
    phones: tuple[PhoneView, ...]
    # Flag names: vip, hearing_impaired, wheelchair_user, payment_arrears, do_not_call,
    # marketing_opt_in. ``highlights`` are those an agent must see at a glance.
    flags: tuple[str, ...]
    highlights: tuple[str, ...]
    open_cases: tuple[CaseView, ...]
    orders: tuple[OrderView, ...]
    products: tuple[str, ...]
    interactions: tuple[InteractionView, ...]
    contacts: tuple[ContactView, ...] = ()


@dataclass(frozen=True)
class InteractionRecord(_Plain):
    """One finished (or updated) call for the customer's history; keyed on ``call_id``."""

    call_id: str
    customer_id: int | None
    caller: str | None
    direction: Literal["inbound", "outbound"] = "inbound"
    started_at: datetime | None = None
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    queues: tuple[str, ...] = ()
    tiers: tuple[str, ...] = ()
    agents: tuple[str, ...] = ()
    outcome: str = "answered"  # answered / abandoned / unanswered
    wait_s: float | None = None
    talk_s: float | None = None
    transfers: tuple[dict[str, Any], ...] = ()
    routing_reason: str | None = None
    disposition: str | None = None
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OrderFact(_Plain):
    reference: str
    status: str
    delivery_state: str | None


@dataclass(frozen=True)
class RoutingFacts(_Plain):
    """What routing rules look at for one customer: a slice of its 360° view, in the view's order
    (open cases most urgent SLA first, the view's latest orders newest first)."""

    customer_id: int
    language: str | None
    flags: tuple[str, ...]
    open_case_tiers: tuple[str | None, ...]
    products: tuple[str, ...]
    orders: tuple[OrderFact, ...]

    @classmethod
    def from_view(cls, view: CustomerView) -> RoutingFacts:
        return cls(
            customer_id=view.customer_id,
            language=view.language,
            flags=view.flags,
            open_case_tiers=tuple(case.tier for case in view.open_cases),
            products=view.products,
            orders=tuple(OrderFact(o.reference, o.status, o.delivery_state) for o in view.orders),
        )


class CustomerDirectory(Protocol):
    """What the router, the pop hub and the API need from a CRM (crm_core or a connector)."""

    async def resolve(self, caller_id: str | None) -> Resolution: ...

    async def view(self, customer_id: int) -> CustomerView | None: ...


@runtime_checkable
class RoutingFactsDirectory(CustomerDirectory, Protocol):
    """A directory that can also answer just what routing needs, cheaper than ``view``
    (optional: the router derives the facts from ``view`` for directories without it)."""

    async def routing_facts(self, customer_id: int) -> RoutingFacts | None: ...


@runtime_checkable
class RoutingResolver(Protocol):
    """A directory that answers who is calling and, for a single match, what routing needs of
    them, in one hop (optional: the router calls ``resolve`` then ``routing_facts``/``view``)."""

    async def resolve_for_routing(
        self, caller_id: str | None, *, facts: bool = True
    ) -> tuple[Resolution, RoutingFacts | None]: ...
