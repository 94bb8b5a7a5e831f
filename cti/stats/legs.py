"""Call events → legs and agent activity. Pure: no I/O, no clock; time comes from the events.

A **leg** is one call's stay in one queue: it is *offered* when the call joins the queue, then
*answered* by an agent, *abandoned* by the caller, or it *left* the queue unanswered (moved by
a Redirect or transfer, a timeout). A call escalated from tier 1 to tier 2 has two legs, so it
counts once as offered in each tier. An answered leg's talk lasts until its agent hangs up or
transfers the call; the way the call left the leg is its ``exit``: ``escalation`` when the
call went on to another tier's queue, ``transfer`` when the agent transferred it elsewhere.

Agent **activity** is a list of intervals per agent: ``login`` (logged in to at least one
queue) and ``pause`` (paused, with the reason).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from cti.stats.adapter import EventFields, event_fields
from cti.tracker.events import CallEvent


@dataclass(slots=True)
class Leg:
    call_id: str
    seq: int
    queue: str
    tier: str | None
    joined_at: float
    direction: str = "inbound"
    caller: str | None = None
    agent: str | None = None
    answered_at: float | None = None
    left_at: float | None = None  # left the queue unanswered
    ended_at: float | None = None  # the answered leg's talk ended
    outcome: str = "waiting"  # waiting / answered / abandoned / left
    exit: str | None = None  # escalation / transfer
    wrap_s: float | None = 0.0  # None: not known (a call recovered from queue_log)
    customer_id: int | None = None
    hold_s: float | None = 0.0  # the caller held by the agent (within talk); None: not known
    hold_since: float | None = None  # on hold now, since

    def hold_so_far(self, now: float) -> float:
        held = (self.hold_s or 0.0) + (max(0.0, now - self.hold_since) if self.hold_since else 0.0)
        return round(held, 3)

    def end_hold(self, ts: float) -> None:
        if self.hold_since is not None:
            self.hold_s = self.hold_so_far(ts)
            self.hold_since = None

    @property
    def finished(self) -> bool:
        return self.left_at is not None or self.ended_at is not None

    @property
    def wait_s(self) -> float | None:
        """Speed of answer for an answered leg, time in queue for the others (None if still
        waiting)."""
        end = self.answered_at if self.answered_at is not None else self.left_at
        return None if end is None else round(end - self.joined_at, 3)

    def wait_so_far(self, now: float) -> float:
        wait = self.wait_s
        return round(max(0.0, now - self.joined_at), 3) if wait is None else wait

    @property
    def talk_s(self) -> float | None:
        if self.answered_at is None or self.ended_at is None:
            return None
        return round(self.ended_at - self.answered_at, 3)


def legs_by_call(legs: Iterable[Leg]) -> dict[str, list[Leg]]:
    """Legs grouped by their call, in the order given."""
    by_call: dict[str, list[Leg]] = {}
    for leg in legs:
        by_call.setdefault(leg.call_id, []).append(leg)
    return by_call


@dataclass(slots=True)
class Activity:
    agent: str
    kind: str  # login / pause
    started_at: float
    ended_at: float | None = None
    reason: str = ""


@dataclass(slots=True)
class _Call:
    caller: str | None = None
    direction: str = "inbound"
    legs: list[Leg] = field(default_factory=list)


class LegBook:
    """Legs of the calls in progress; ``feed`` returns the legs a call event finished."""

    def __init__(self, tiers_by_queue: Mapping[str, str] | None = None) -> None:
        self._tiers = dict(tiers_by_queue or {})
        self._calls: dict[str, _Call] = {}

    def tier_of(self, queue: str) -> str:
        return self._tiers.get(queue, queue)

    def live_legs(self) -> list[Leg]:
        """Every leg of the calls in progress (finished or not)."""
        return [leg for c in self._calls.values() for leg in c.legs]

    def legs_of(self, call: str) -> list[Leg]:
        found = self._calls.get(call)
        return list(found.legs) if found is not None else []

    def feed(self, event: CallEvent) -> list[Leg]:
        """Apply one call event; the call's legs when it ended (a leg's ``exit`` is known only
        once the call went on, so legs are given out with their call's end), else []."""
        if event.event == "agent_state" or not event.call:
            return []
        f = event_fields(event)
        ts = f.ts
        if ts is None:  # statistics need the time: an event without one is not counted
            return []
        call = self._calls.get(f.call)
        if call is None:
            call = self._calls[f.call] = _Call(caller=f.caller, direction=f.direction)
        handler = _HANDLERS.get(f.name)
        if handler is None:
            return []
        return handler(self, call, f, ts)

    # ---- handlers ----------------------------------------------------------------------

    def _offered(self, call: _Call, f: EventFields, ts: float) -> list[Leg]:
        call.caller = f.caller or call.caller
        call.direction = f.direction
        return []

    def _open(self, call: _Call, f: EventFields, queue: str, ts: float) -> Leg:
        """The call's unfinished leg in ``queue``, or a new one (a waiting leg in another queue
        is left: the call moved on)."""
        for leg in reversed(call.legs):
            if leg.queue == queue and not leg.finished:
                return leg
        for leg in call.legs:
            if leg.answered_at is None and leg.left_at is None:
                leg.left_at, leg.outcome = ts, "left"
        for leg in call.legs:
            if leg.finished and leg.exit in (None, "transfer") and self._moved_tier(leg, queue):
                leg.exit = "escalation"
        leg = Leg(
            call_id=f.call,
            seq=len(call.legs),
            queue=queue,
            tier=self.tier_of(queue),
            joined_at=ts,
            direction=call.direction,
            caller=call.caller,
        )
        call.legs.append(leg)
        return leg

    def _moved_tier(self, leg: Leg, queue: str) -> bool:
        """A leg left (or transferred) just before the call joined another tier's queue."""
        return leg.tier != self.tier_of(queue) and (leg.outcome == "left" or leg.exit == "transfer")

    def _queued(self, call: _Call, f: EventFields, ts: float) -> list[Leg]:
        if f.queue:
            self._open(call, f, f.queue, ts)
        return []

    def _answered(self, call: _Call, f: EventFields, ts: float) -> list[Leg]:
        queue = f.queue or (call.legs[-1].queue if call.legs else None)
        if queue is None:
            return []  # put straight through to an agent: not a queue call
        leg = self._open(call, f, queue, ts)
        if leg.answered_at is None:
            leg.answered_at, leg.agent, leg.outcome = ts, f.agent, "answered"
        return []

    def _transferred(self, call: _Call, f: EventFields, ts: float) -> list[Leg]:
        source = next(
            (
                leg
                for leg in reversed(call.legs)
                if leg.answered_at is not None
                and leg.ended_at is None
                and (f.from_agent is None or leg.agent == f.from_agent)
            ),
            None,
        )
        if source is not None:
            source.ended_at = ts
            source.end_hold(ts)
            to_tier = self.tier_of(f.to_queue) if f.to_queue else None
            source.exit = "escalation" if to_tier and to_tier != source.tier else "transfer"
        return []

    def _abandoned(self, call: _Call, f: EventFields, ts: float) -> list[Leg]:
        for leg in reversed(call.legs):
            if leg.answered_at is None and (f.queue is None or leg.queue == f.queue):
                leg.left_at = leg.left_at or ts
                leg.outcome = "abandoned"
                break
        return []

    def _left_queue(self, call: _Call, f: EventFields, ts: float) -> list[Leg]:
        for leg in reversed(call.legs):
            if leg.answered_at is None and leg.left_at is None and leg.queue == f.queue:
                leg.left_at, leg.outcome = ts, "left"
                if f.reason == "abandon":
                    leg.outcome = "abandoned"
                break
        return []

    def _ended(self, call: _Call, f: EventFields, ts: float) -> list[Leg]:
        for leg in call.legs:
            if leg.answered_at is None and leg.left_at is None:
                leg.left_at = ts
                leg.outcome = "abandoned" if f.hangup_by in (None, "caller") else "left"
            elif leg.answered_at is not None and leg.ended_at is None:
                leg.ended_at = ts
            leg.end_hold(ts)
        del self._calls[f.call]
        return call.legs

    def _hold(self, call: _Call, f: EventFields, ts: float) -> list[Leg]:
        """Hold / unhold: on the leg an agent is talking on."""
        for leg in reversed(call.legs):
            if leg.answered_at is not None and leg.ended_at is None:
                if f.name == "hold" and leg.hold_since is None:
                    leg.hold_since = ts
                elif f.name == "unhold":
                    leg.end_hold(ts)
                break
        return []


_Handler = Callable[[LegBook, _Call, EventFields, float], list[Leg]]
_HANDLERS: dict[str, _Handler] = {
    "offered": LegBook._offered,
    "queued": LegBook._queued,
    "ringing": LegBook._queued,
    "answered": LegBook._answered,
    "transferred": LegBook._transferred,
    "abandoned": LegBook._abandoned,
    "left_queue": LegBook._left_queue,
    "ended": LegBook._ended,
    "hold": LegBook._hold,
    "unhold": LegBook._hold,
}


@dataclass(slots=True)
class _Agent:
    queues: dict[str, bool] = field(default_factory=dict)  # logged-in queue -> paused
    reason: str = ""
    login: Activity | None = None
    pause: Activity | None = None


class AgentBook:
    """Login and pause intervals per agent, from ``agent_state`` events."""

    def __init__(self) -> None:
        self._agents: dict[str, _Agent] = {}

    def open_activity(self) -> list[Activity]:
        out: list[Activity] = []
        for state in self._agents.values():
            out.extend(a for a in (state.login, state.pause) if a is not None)
        return out

    def open_of(self, agent: str) -> list[Activity]:
        """The agent's login and pause still open."""
        state = self._agents.get(agent)
        if state is None:
            return []
        return [a for a in (state.login, state.pause) if a is not None]

    def paused(self, agent: str) -> Activity | None:
        state = self._agents.get(agent)
        return state.pause if state is not None else None

    def logged_in(self, agent: str) -> bool:
        state = self._agents.get(agent)
        return bool(state and state.queues)

    def queues(self, agent: str) -> list[str]:
        state = self._agents.get(agent)
        return sorted(state.queues) if state is not None else []

    def agents(self) -> list[str]:
        return sorted(self._agents)

    def queue_states(self, agent: str) -> dict[str, bool]:
        """The queues the agent is logged in to, and whether paused in each."""
        state = self._agents.get(agent)
        return dict(state.queues) if state is not None else {}

    def feed(self, event: CallEvent) -> list[Activity]:
        """Apply an ``agent_state`` event; the intervals it closed."""
        if event.event != "agent_state" or event.ts is None:
            return []
        f = event_fields(event)
        if f.member is None or f.queue is None:
            return []
        ts = event.ts
        state = self._agents.setdefault(f.member, _Agent())
        if f.logged_in:
            state.queues[f.queue] = f.paused
            if f.paused:
                state.reason = f.pause_reason or state.reason
        else:
            state.queues.pop(f.queue, None)
        closed: list[Activity] = []
        paused = bool(state.queues) and any(state.queues.values())
        reason = state.reason if paused else ""
        if state.pause is not None and (not paused or state.pause.reason != reason):
            state.pause.ended_at = ts
            closed.append(state.pause)
            state.pause = None
        if paused and state.pause is None:
            state.pause = Activity(f.member, "pause", ts, reason=reason)
        if state.queues and state.login is None:
            state.login = Activity(f.member, "login", ts)
        elif not state.queues and state.login is not None:
            state.login.ended_at = ts
            closed.append(state.login)
            state.login = None
        return closed
