"""The one place statistics read fields of call events and interaction records.

The tracker and the interaction record grow fields over time (outbound calls, ambiguous callers
left unattributed...): map them here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cti.tracker.events import CallEvent


@dataclass(frozen=True, slots=True)
class EventFields:
    """What statistics need from one call event."""

    call: str
    name: str
    ts: float | None
    queue: str | None
    agent: str | None
    caller: str | None
    direction: str  # inbound / outbound
    reason: str | None
    from_agent: str | None
    to_queue: str | None
    kind: str | None
    hangup_by: str | None
    abandoned: bool
    # agent_state
    member: str | None
    logged_in: bool
    paused: bool
    pause_reason: str


def _str(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def event_fields(event: CallEvent) -> EventFields:
    d = event.data
    summary = d.get("summary") or {}
    direction = d.get("direction") or summary.get("direction") or "inbound"
    return EventFields(
        call=event.call,
        name=event.event,
        ts=event.ts,
        queue=_str(d.get("queue")),
        agent=_str(d.get("agent") or d.get("member")),
        caller=_str(d.get("caller_e164") or d.get("caller")),
        direction="outbound" if direction == "outbound" else "inbound",
        reason=_str(d.get("reason")),
        from_agent=_str(d.get("from_agent") or d.get("from")),
        to_queue=_str(d.get("to_queue")),
        kind=_str(d.get("kind")),
        hangup_by=_str(d.get("hangup_by") or summary.get("hangup_by")),
        abandoned=bool(summary.get("abandoned")),
        member=_str(d.get("member") or d.get("interface")),
        logged_in=bool(d.get("logged_in", True)),
        paused=bool(d.get("paused")),
        pause_reason=str(d.get("reason") or ""),
    )


@dataclass(frozen=True, slots=True)
class CallFields:
    """What statistics need from a finished call's context or interaction record."""

    call_id: str
    customer_id: int | None
    direction: str
    answered: bool
    started_at: float | None
    talk_s: float | None


def context_fields(ctx: Any) -> CallFields:
    """From a live ``CallContext`` (or anything with its attribute names)."""
    customer = getattr(ctx, "customer_id", None)
    # An ambiguous caller is not a customer: never count their calls as someone's repeats.
    if getattr(ctx, "status", None) == "ambiguous":
        customer = None
    return CallFields(
        call_id=str(ctx.call_id),
        customer_id=customer if isinstance(customer, int) else None,
        direction="outbound" if getattr(ctx, "direction", "inbound") == "outbound" else "inbound",
        answered=bool(getattr(ctx, "agents", None)),
        started_at=getattr(ctx, "offered_at", None),
        talk_s=getattr(ctx, "talk_s", None),
    )


# Columns of the ``interactions`` table that period statistics read (see ``period.py``).
INTERACTION_COLUMNS = {
    "customer": "customer_id",
    "direction": "direction",
    "started": "started_at",
    "answered": "answered_at",
    "talk": "talk_s",
    "outcome": "outcome",
}
