"""Live call context: what the daemon knows about each call while it lasts (and shortly after).

``LiveCalls.apply(event)`` takes the tracker's call events in order and keeps one
``CallContext`` per call: who is calling (resolved against the CRM, with the 360° view), how the
call was routed (the FastAGI decision), where it waits, which agents' phones ring, who talks to
the caller, and what was carried across transfers and escalations (previous agents, reason,
notes). When the call ends the interaction is handed to the recorder; the context stays for a
grace period so that late notes and the wrap-up disposition still reach the record.

The CRM never blocks the event flow: the caller is looked up in a task started when the call
is offered; an event that needs the view (the ring that pops the agent's desktop) waits for it
only within what is left of ``resolve_timeout_s`` since the offer, then goes on without it, and
``on_update`` is called when it arrives later.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, cast

import structlog

from crm_core.types import CustomerDirectory, InteractionRecord, renamed_candidates
from cti.tracker.events import CallEvent

log = structlog.get_logger(__name__)

CallState = str  # offered / queued / ringing / answered / ended; dialling (outbound)


# The extra keys of a record that queue_log's completion sets (``cti.queuelog.backfill``).
_QUEUE_LOG_EXTRA = ("queue_legs", "talk_legs", "hangup_by", "not_known", "estimated", "queue_log")
_TIMES = frozenset({"started_at", "answered_at", "ended_at"})


def _plain_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.timestamp()
    return list(value) if isinstance(value, tuple) else value


def _with_queue_log(
    record: InteractionRecord, completion: Mapping[str, Any] | None
) -> InteractionRecord:
    """The record with what queue_log said of the call laid over it (``CallContext.queue_log``)."""
    if not completion:
        return record
    values: dict[str, Any] = {}
    for name, value in (completion.get("values") or {}).items():
        if name in _TIMES:
            values[name] = _dt(value)
        else:
            values[name] = tuple(value) if isinstance(value, list) else value
    extra = {**record.extra, **(completion.get("extra") or {})}
    return dataclasses.replace(record, **values, extra=extra)


class UnknownCall(KeyError):
    """No live (or recently ended) call has this id."""


class DecisionLookup(Protocol):
    """The routing decision log: the FastAGI answer given for a channel, by its Uniqueid."""

    def get(self, uniqueid: str) -> Any | None: ...


class InteractionSink(Protocol):
    """Where finished calls go (``cti.interactions.InteractionRecorder``)."""

    def submit(self, record: InteractionRecord) -> None: ...


class CallStateSink(Protocol):
    """Where live contexts are kept across restarts (``cti.callstate.CallStateWriter``)."""

    def changed(self, ctx: CallContext) -> None: ...

    def gone(self, call_id: str) -> None: ...


# What is not kept in the saved state: the 360° view and candidates are looked up again.
_NOT_SAVED = frozenset({"view", "candidates"})


def saved_context(ctx: CallContext) -> dict[str, Any]:
    """The context as JSON-able data for ``live_calls`` (``cti.callstate``): a copy, since
    it is written after the call has moved on. A JSON round trip copies exactly what the
    column will hold, several times faster than ``dataclasses.asdict``, which also deep-copied
    the 360° view (the bulk of a known caller's context) only to drop it."""
    return cast(dict[str, Any], json.loads(json.dumps({k: getattr(ctx, k) for k in _saved()})))


@functools.cache
def _saved() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(CallContext) if f.name not in _NOT_SAVED)


def context_from_saved(call_id: str, data: Mapping[str, Any]) -> CallContext:
    known = CallContext.__dataclass_fields__
    ctx = CallContext(
        call_id=call_id, **{k: v for k, v in data.items() if k in known and k != "call_id"}
    )
    ctx.restored = True
    return ctx


@dataclass
class CallContext:
    """Everything an agent's desktop, the API and the interaction log need about one call."""

    call_id: str
    caller: str | None = None
    caller_e164: str | None = None
    status: str | None = None  # resolution status: match/ambiguous/unknown/anonymous/internal
    customer_id: int | None = None
    candidates: list[dict[str, Any]] = field(default_factory=list)
    confirmed_by: str | None = None  # the agent who said which customer is calling
    # How: candidate (one of the number's owners), search, created (from the pop), ivr.
    confirmed_method: str | None = None
    view: dict[str, Any] | None = None  # CustomerView.to_dict()
    routing: dict[str, Any] | None = None  # queue/tier/priority/reason/rule/customer_id
    queue: str | None = None
    queues: list[str] = field(default_factory=list)
    tier: str | None = None
    tiers: list[str] = field(default_factory=list)
    state: CallState = "offered"
    caller_channel: str | None = None
    caller_uniqueid: str | None = None
    agent: str | None = None  # queue member name (or device) talking to the caller now
    agent_interface: str | None = None
    agent_channel: str | None = None  # the agent's channel bridged with the caller
    agents: list[str] = field(default_factory=list)  # everyone who talked to the caller
    ringing_agents: list[dict[str, Any]] = field(default_factory=list)  # {member, interface}
    previous_agents: list[str] = field(default_factory=list)
    transfers: list[dict[str, Any]] = field(default_factory=list)
    escalations: list[dict[str, Any]] = field(default_factory=list)
    notes: list[dict[str, Any]] = field(default_factory=list)  # {author, text, at}
    disposition: str | None = None
    disposition_by: str | None = None
    outcome: str | None = None  # answered / abandoned / unanswered, once ended
    hangup_by: str | None = None
    wait_s: float | None = None  # time in queues, all legs (until answered while live)
    talk_s: float | None = None  # time bridged with agents, all legs
    queue_legs: list[dict[str, Any]] = field(default_factory=list)  # {queue, tier, wait_s, result}
    talk_legs: list[dict[str, Any]] = field(default_factory=list)  # {agent, queue, talk_s}
    # Click-to-dial: "outbound", ``number`` dialled (then also ``caller``: the customer's
    # number, looked up in the CRM), ``agent`` who dialled, ring_s until the number answered.
    direction: str = "inbound"
    number: str | None = None
    ring_s: float | None = None
    offered_at: float | None = None  # epoch seconds
    answered_at: float | None = None
    ended_at: float | None = None
    # The caller's channels seen so far (Uniqueids and names), to find the routing decision.
    uniqueids: list[str] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)
    # Restarts: picked up from the saved state; first seen mid-way (start unknown); which
    # figures are Asterisk's estimates rather than seen; the end estimated (not seen).
    restored: bool = False
    midway: bool = False
    estimated: list[str] = field(default_factory=list)
    end_estimated: bool = False
    popped: bool = False  # a pop was sent for it (ringing/answered/transferred published)
    # Nobody watched the call from ``unseen[0]`` (the daemon stopped) to ``unseen[1]`` (the
    # resync that found it again; None: it ended meanwhile).
    unseen: list[float | None] | None = None
    # Wrap-up of the agent who took the call (see ``LiveCalls``): who, how long, what ended it
    # (disposition / next_call / grace); None while it lasts.
    wrap_up_agent: str | None = None
    wrap_up_s: float | None = None
    wrap_up_end: str | None = None
    recording: str | None = None  # the recording's file name, once MixMonitor started
    # What Asterisk's queue_log put right in the record of a call seen in part (``cti.queuelog``
    # completed it after its end): {"values": record fields, "extra": extra keys}, JSON-able,
    # laid over every later write of the record (a note, a disposition, the wrap-up's end).
    queue_log: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        del data["uniqueids"], data["channels"]
        return data

    @property
    def last_escalation(self) -> dict[str, Any] | None:
        return self.escalations[-1] if self.escalations else None


def _keep_withheld(ctx: CallContext) -> None:
    """A caller the FastAGI saw withhold their number is a withheld caller, whatever number
    AMI shows (a carrier trusted for P-Asserted-Identity passes it, presentation prohibited):
    the number is never looked up, shown, remembered, recorded or called back."""
    routing = ctx.routing or {}
    withheld = routing.get("withheld") or routing.get("status") == "anonymous"
    if withheld and ctx.caller != "anonymous":
        ctx.caller = "anonymous"


def _plain(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, dict):
        return dict(value)
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        result: dict[str, Any] = to_dict()
        return result
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return {k: getattr(value, k) for k in ("queue", "tier", "priority", "reason", "rule")}


def _other_half(channel: str) -> str | None:
    """``Local/x@ctx-0000001a;1`` <-> ``;2``; None for other channels."""
    if channel.startswith("Local/") and channel[-2:] in (";1", ";2"):
        return channel[:-1] + ("2" if channel[-1] == "1" else "1")
    return None


def _candidates(ctx: CallContext) -> dict[str, Any]:
    """For a caller not identified as one customer: who it may be, as the record's extra."""
    if ctx.status != "ambiguous" or not ctx.candidates:
        return {}
    keep = ("customer_id", "external_id", "name", "rank_reason")
    # merged_from: listed as the survivor of a customer merged away while the call waited,
    # as a merge marks the candidates of calls already recorded.
    return {
        "candidates": [
            {k: c.get(k) for k in keep}
            | ({"merged_from": m} if (m := c.get("merged_from")) else {})
            for c in ctx.candidates
        ]
    }


@dataclass(frozen=True, slots=True)
class WrapUp:
    """An agent's wrap-up of a call, measured (``LiveCalls.on_wrap_up``)."""

    call_id: str
    agent: str
    seconds: float
    ended_by: str  # disposition / next_call / grace


def _dt(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts, UTC) if ts is not None else None


class LiveCalls:
    """The live call contexts, fed by the tracker's call events (one consumer, in order)."""

    def __init__(
        self,
        *,
        directory: CustomerDirectory | None = None,
        decisions: DecisionLookup | None = None,
        recorder: InteractionSink | None = None,
        tiers_by_queue: Mapping[str, str] | None = None,
        resolve_timeout_s: float = 0.3,
        lookup_deadline_s: float = 10.0,
        grace_s: float = 120.0,
        on_update: Callable[[CallContext], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.time,
        state: CallStateSink | None = None,
    ) -> None:
        self._state = state
        self._directory = directory
        self._decisions = decisions
        self._recorder = recorder
        self._tiers_by_queue = dict(tiers_by_queue or {})
        self._resolve_timeout_s = resolve_timeout_s
        self._lookup_deadline_s = lookup_deadline_s
        self._grace_s = grace_s
        self._on_update = on_update
        self._clock = clock
        self._calls: dict[str, CallContext] = {}
        self._lookups: dict[str, asyncio.Task[None]] = {}
        self._lookup_started: dict[str, float] = {}
        self._releases: dict[str, asyncio.TimerHandle] = {}
        self._published: set[str] = set()
        self._wrapping: dict[str, str] = {}  # agent -> the call they are wrapping up
        self._wrap_listeners: list[Callable[[WrapUp], None]] = []

    # ---- queries -------------------------------------------------------------------------

    def get(self, call_id: str) -> CallContext | None:
        return self._calls.get(call_id)

    def active(self) -> list[CallContext]:
        """Calls not yet ended, oldest first."""
        return [c for c in self._calls.values() if c.state != "ended"]

    def for_agent(self, who: str) -> list[CallContext]:
        """Active calls talking to, or ringing, this agent (queue member name or interface)."""
        found = []
        for ctx in self.active():
            if who in (ctx.agent, ctx.agent_interface) or any(
                who in (r.get("member"), r.get("interface")) for r in ctx.ringing_agents
            ):
                found.append(ctx)
        return found

    def tier_of(self, queue: str | None) -> str | None:
        return self._tiers_by_queue.get(queue, queue) if queue else None

    # ---- the event flow ------------------------------------------------------------------

    async def apply(self, event: CallEvent) -> CallContext | None:
        """Update the call's context with one tracker event; the context, or None if no call."""
        if event.event == "agent_state" or not event.call:
            return None
        ctx = self._calls.get(event.call)
        if ctx is None:
            # A call first seen mid-way (adopted after a restart or a resync) gets a context too.
            ctx = self._calls[event.call] = CallContext(call_id=event.call)
            ctx.offered_at = event.ts
        # What the saved state knew of a call taken back, before this event estimates it.
        knew = (ctx.offered_at, ctx.answered_at) if ctx.restored else None
        handler = _HANDLERS.get(event.event)
        if handler is not None:
            handler(self, ctx, event)
        if event.event in _CALLER_SIDE:
            self._note_uniqueid(ctx, event.data)
        if ctx.caller is None and event.data.get("caller") and event.event != "transferred":
            ctx.caller = str(event.data["caller"])
        if ctx.caller is not None or ctx.customer_id is not None:
            self._start_lookup(ctx)
        if ctx.routing is None:
            self._attach_routing(ctx)
        _keep_withheld(ctx)  # before the lookup just started runs: no await since
        self._note_restart_facts(ctx, event, knew)
        if event.event in ("ringing", "answered", "transferred", "outbound"):
            await self._await_lookup(ctx)
            self._published.add(ctx.call_id)
            ctx.popped = True
        if event.event == "ended":
            await self._await_lookup(ctx)
            self._finish(ctx, event)
        if self._state is not None:
            self._state.changed(ctx)
        return ctx

    # ---- restarts: the saved state ---------------------------------------------------------

    def _note_restart_facts(
        self, ctx: CallContext, event: CallEvent, knew: tuple[float | None, float | None] | None
    ) -> None:
        d = event.data
        if not d.get("resynced"):
            return
        # A call taken back keeps the times its saved state knew; one it did not know (the
        # answer, when the ingester died between the ring and the answer being saved) is the
        # resync's estimate and is marked so, never recorded as seen.
        saved = dict(zip(("started_at", "answered_at"), knew, strict=True)) if knew else {}
        for name in d.get("estimated") or ():
            if name in ctx.estimated or saved.get(name) is not None:
                continue
            if ctx.restored and name not in ("ended_at", *saved):
                continue
            ctx.estimated.append(name)
        if d.get("midway"):
            ctx.midway = True
        if event.event == "ended" and d.get("end_estimated"):
            ctx.end_estimated = True

    def restore(
        self,
        saved: Mapping[str, Mapping[str, Any]],
        last_known_up: float | None = None,
        set_aside: Collection[str] = (),
    ) -> list[str]:
        """Take back the contexts a previous run kept (call id -> ``saved_context``): live
        ones wait for the resync to adopt or close them; ended ones (their record maybe
        not written before the stop) are recorded again, which rewrites the same row,
        except those whose record waits in the dead-letter store (``set_aside``): that copy
        is the one to write, and the saved context would overwrite an operator's correction.
        ``last_known_up``: until when the previous run saw them."""
        live: list[str] = []
        for call_id, data in saved.items():
            if call_id in self._calls:
                continue
            ctx = context_from_saved(call_id, data)
            if ctx.state == "ended":
                ctx.restored = False  # a finished record, written again as it was
                if call_id not in set_aside:
                    self._record(ctx)
                if self._state is not None:
                    self._state.gone(call_id)
                continue
            self._calls[call_id] = ctx
            ctx.unseen = [last_known_up, None]
            if ctx.popped:
                self._published.add(call_id)
            live.append(call_id)
        return live

    def restored_hints(self) -> dict[str, dict[str, Any]]:
        """What the tracker should not estimate for the restored calls still open."""
        return {
            c.call_id: {
                "started_at": c.offered_at,
                "offered_at": c.offered_at,
                "answered_at": c.answered_at,
                "queues": list(c.queues),
                "agents": list(c.agents),
            }
            for c in self._calls.values()
            if c.restored and c.state != "ended"
        }

    def after_resync(
        self, alive: set[str], at: float | None, now: float | None = None, *, only: str = ""
    ) -> list[CallEvent]:
        """After a resync with the full channel list (``alive``: the call ids Asterisk has,
        ``now``: its clock then): ``ended`` events for restored calls it no longer has (they
        ended while the daemon was down) at ``at``, the last moment they were known up,
        estimated, never before what is known of them; the caller feeds them through
        ``apply`` like any event. Calls found again, or adopted, note the time nobody saw.
        ``only``: the prefix of the resynced PBX's call ids (``[[pbx]]``: ``id:``)."""
        out = []
        for ctx in list(self._calls.values()):
            if not ctx.call_id.startswith(only):
                continue  # another PBX's call: its own resync decides
            if not ctx.restored and ctx.unseen is None and "started_at" in ctx.estimated:
                ctx.unseen = [None, now]  # adopted by this resync: it began unseen
            if not ctx.restored or ctx.state == "ended":
                continue
            if ctx.call_id in alive:
                if ctx.unseen is not None and ctx.unseen[1] is None:
                    ctx.unseen[1] = now
                continue
            out.append(
                CallEvent(
                    ctx.call_id,
                    "ended",
                    self.end_at(ctx.call_id, at),
                    {"resynced": True, "end_estimated": True, "restored": True, "summary": {}},
                )
            )
        return out

    def end_at(self, call_id: str, at: float | None) -> float | None:
        """``at``, but not before anything known of the call."""
        ctx = self._calls.get(call_id)
        times = [t for t in (at, *((ctx and (ctx.offered_at, ctx.answered_at)) or ())) if t]
        return max(times) if times else None

    def adopt_routing(self, call_id: str, variables: Mapping[str, str]) -> None:
        """The routing decision read back from the caller's channel (CTI_* variables) when
        this daemon did not make it (the call started before it)."""
        ctx = self._calls.get(call_id)
        if ctx is None or ctx.routing is not None or not variables.get("CTI_QUEUE"):
            return
        cid = variables.get("CTI_CUSTOMER_ID") or ""
        ctx.routing = {
            "queue": variables.get("CTI_QUEUE"),
            "tier": variables.get("CTI_TIER") or self.tier_of(variables.get("CTI_QUEUE")),
            "priority": int(p) if (p := variables.get("CTI_PRIORITY", "")).isdigit() else None,
            "reason": variables.get("CTI_REASON") or None,
            "rule": variables.get("CTI_RULE") or None,
            "customer_id": int(cid) if cid.isdigit() else None,
            "source": "pbx",
        }
        if ctx.customer_id is None and ctx.routing["customer_id"] is not None:
            ctx.customer_id = ctx.routing["customer_id"]
        if self._state is not None:
            self._state.changed(ctx)

    def _on_offered(self, ctx: CallContext, ev: CallEvent) -> None:
        d = ev.data
        ctx.caller = d.get("caller", ctx.caller)
        ctx.caller_channel = d.get("channel", ctx.caller_channel)
        ctx.caller_uniqueid = d.get("uniqueid", ctx.caller_uniqueid)
        ctx.offered_at = ev.ts if ev.ts is not None else ctx.offered_at or self._clock()

    def _on_queued(self, ctx: CallContext, ev: CallEvent) -> None:
        # The caller's channel in its first queue is the one to Redirect (the ``;2`` of a Local
        # pair; the offer names the ``;1`` handset side). Later queues are entered by transfer or
        # consultation legs, not by the caller's own channel.
        if ev.data.get("channel") and not ctx.queues:
            ctx.caller_channel = ev.data["channel"]
        queue = ev.data.get("queue")
        if queue:
            ctx.queue = queue
            if not ctx.queues or ctx.queues[-1] != queue:
                ctx.queues.append(queue)
            tier = self.tier_of(queue)
            ctx.tier = tier
            if tier and (not ctx.tiers or ctx.tiers[-1] != tier):
                ctx.tiers.append(tier)
        if ctx.state != "answered":
            ctx.state = "queued"
        ctx.ringing_agents = []

    def _on_ringing(self, ctx: CallContext, ev: CallEvent) -> None:
        d = ev.data
        entry = {
            "member": d.get("member"),
            "interface": d.get("interface"),
            "channel": d.get("agent_channel"),
        }
        if entry not in ctx.ringing_agents:
            ctx.ringing_agents.append(entry)
        if d.get("queue") and d["queue"] != ctx.queue:
            self._on_queued(ctx, CallEvent(ctx.call_id, "queued", ev.ts, {"queue": d["queue"]}))
            ctx.ringing_agents.append(entry)
        if ctx.state != "answered":
            ctx.state = "ringing"

    def _on_ring_stopped(self, ctx: CallContext, ev: CallEvent) -> None:
        d = ev.data
        ctx.ringing_agents = [
            r
            for r in ctx.ringing_agents
            if not (r.get("member") == d.get("member") and r.get("interface") == d.get("interface"))
        ]
        if ctx.state == "ringing" and not ctx.ringing_agents:
            ctx.state = "queued" if ctx.queue else "offered"

    def _on_answered(self, ctx: CallContext, ev: CallEvent) -> None:
        d = ev.data
        agent = d.get("agent")
        wrapping = self._calls.get(self._wrapping.get(agent or "", ""))
        if wrapping is not None and wrapping is not ctx:
            self._end_wrap_up(wrapping, ev.ts if ev.ts is not None else self._clock(), "next_call")
        if ctx.agent and agent and ctx.agent != agent and ctx.agent not in ctx.previous_agents:
            ctx.previous_agents.append(ctx.agent)
        rang = next((r for r in ctx.ringing_agents if r.get("member") == agent), {})
        ctx.agent = agent
        ctx.agent_interface = d.get("interface") or rang.get("interface")
        ctx.agent_channel = d.get("agent_channel") or rang.get("channel")
        if agent and agent not in ctx.agents:
            ctx.agents.append(agent)
        if d.get("queue") and d["queue"] != ctx.queue:
            self._on_queued(ctx, CallEvent(ctx.call_id, "queued", ev.ts, {"queue": d["queue"]}))
        if ctx.answered_at is None:
            ctx.answered_at = ev.ts if ev.ts is not None else self._clock()
            wait = d.get("wait_s")
            if d.get("direction") == "outbound":
                ctx.ring_s = d.get("ring_s")
            elif wait is None and ctx.offered_at is not None:
                wait = round(ctx.answered_at - ctx.offered_at, 3)
            ctx.wait_s = wait
        ctx.ringing_agents = []
        ctx.state = "answered"

    def _on_outbound(self, ctx: CallContext, ev: CallEvent) -> None:
        d = ev.data
        ctx.direction = "outbound"
        ctx.number = d.get("number")
        ctx.caller = ctx.number  # the customer is whoever has the number dialled
        ctx.agent = d.get("agent")
        ctx.agent_interface = d.get("interface")
        ctx.agent_channel = d.get("agent_channel")
        if ctx.agent and ctx.agent not in ctx.agents:
            ctx.agents.append(ctx.agent)
        ctx.offered_at = ev.ts if ev.ts is not None else ctx.offered_at or self._clock()
        ctx.state = "dialling"

    def _finish_outbound(self, ctx: CallContext, d: Mapping[str, Any]) -> None:
        """An outbound call's outcome is the number's answer; it is never abandoned."""
        result = d.get("outbound") or {}
        if ctx.direction != "outbound":  # the agent's phone never answered: no number dialled
            ctx.direction = "outbound"
            ctx.agent = ctx.agent or result.get("agent")
            ctx.agent_interface = ctx.agent_interface or result.get("interface")
            if ctx.agent and ctx.agent not in ctx.agents:
                ctx.agents.append(ctx.agent)
        ctx.outcome = result.get("outcome") or ("answered" if ctx.answered_at else "failed")
        ctx.ring_s = result.get("ring_s")
        ctx.wait_s = None
        if ctx.hangup_by is None:
            ctx.hangup_by = (d.get("summary") or {}).get("hangup_by")

    def _on_transferred(self, ctx: CallContext, ev: CallEvent) -> None:
        d = ev.data
        from_agent = d.get("from_agent") or ctx.agent
        if from_agent and from_agent not in ctx.previous_agents:
            ctx.previous_agents.append(from_agent)
        ctx.transfers.append(
            {
                "kind": d.get("kind"),
                "from": from_agent,
                "to": d.get("to"),
                "to_queue": d.get("to_queue"),
                "at": ev.ts if ev.ts is not None else self._clock(),
            }
        )
        to_agent = d.get("to_agent") or d.get("to")
        if d.get("kind") == "attended" and to_agent:
            # The consulted agent already talked with the transferer: they now have the caller.
            if ctx.agent != to_agent:
                ctx.agent = to_agent
                ctx.agent_interface = d.get("to_interface")
                ctx.agent_channel = d.get("to_channel")
            if to_agent not in ctx.agents:
                ctx.agents.append(to_agent)
            ctx.state = "answered"
        else:
            ctx.agent = ctx.agent_interface = ctx.agent_channel = None
            ctx.state = "queued" if d.get("to_queue") else "ringing"
        if d.get("to_queue"):
            self._on_queued(ctx, CallEvent(ctx.call_id, "queued", ev.ts, {"queue": d["to_queue"]}))
            if ctx.agent:
                ctx.state = "answered"

    def _on_abandoned(self, ctx: CallContext, ev: CallEvent) -> None:
        ctx.outcome = "abandoned"
        ctx.ringing_agents = []

    def _on_left_queue(self, ctx: CallContext, ev: CallEvent) -> None:
        ctx.ringing_agents = []

    # ---- ending and recording ------------------------------------------------------------

    def _finish(self, ctx: CallContext, ev: CallEvent) -> None:
        d = ev.data
        summary: Mapping[str, Any] = d.get("summary") or {}
        ctx.state = "ended"
        ctx.ended_at = ev.ts if ev.ts is not None else self._clock()
        ctx.ringing_agents = []
        ctx.hangup_by = d.get("hangup_by") or summary.get("hangup_by")
        if d.get("talk_s") is not None:
            ctx.talk_s = d["talk_s"]
        elif ctx.answered_at is not None:
            ctx.talk_s = round(ctx.ended_at - ctx.answered_at, 3)
        self._take_legs(ctx, d)
        for name in summary.get("agents") or ():
            if name not in ctx.agents:
                ctx.agents.append(name)
        for queue in summary.get("queues") or ():
            if queue not in ctx.queues:
                ctx.queues.append(queue)
                tier = self.tier_of(queue)
                if tier and tier not in ctx.tiers:
                    ctx.tiers.append(tier)
        if ctx.wait_s is None:
            ctx.wait_s = summary.get("wait_s", d.get("wait_s"))
        if ctx.caller is None and summary.get("caller"):
            ctx.caller = summary["caller"]
        if ctx.agents:
            ctx.outcome = "answered"
        elif summary.get("abandoned") or ctx.outcome == "abandoned":
            ctx.outcome = "abandoned"
        else:
            ctx.outcome = "unanswered"
        if ctx.direction == "outbound" or d.get("direction") == "outbound":
            self._finish_outbound(ctx, d)
        self._start_wrap_up(ctx)
        self._record(ctx)
        loop = asyncio.get_running_loop()
        self._releases[ctx.call_id] = loop.call_later(self._grace_s, self._release, ctx.call_id)

    def _take_legs(self, ctx: CallContext, d: Mapping[str, Any]) -> None:
        """Per-leg figures from the tracker's ``ended``: wait is the time spent in queues."""
        ctx.talk_legs = [dict(leg) for leg in d.get("talk_legs") or ()]
        ctx.queue_legs = [
            {**leg, "tier": self.tier_of(leg.get("queue"))} for leg in d.get("queue_legs") or ()
        ]
        if d.get("wait_s") is not None:
            ctx.wait_s = d["wait_s"]

    def record_of(self, ctx: CallContext) -> InteractionRecord:
        """The interaction record for a call as it stands now."""
        routing = ctx.routing or {}
        notes = "\n".join(f"{n['author']}: {n['text']}" for n in ctx.notes)
        return InteractionRecord(
            call_id=ctx.call_id,
            customer_id=ctx.customer_id,
            caller=ctx.caller,
            direction="outbound" if ctx.direction == "outbound" else "inbound",
            started_at=_dt(ctx.offered_at),
            answered_at=_dt(ctx.answered_at),
            ended_at=_dt(ctx.ended_at),
            queues=tuple(ctx.queues),
            tiers=tuple(ctx.tiers),
            agents=tuple(ctx.agents),
            outcome=ctx.outcome or "unanswered",
            wait_s=ctx.wait_s,
            talk_s=ctx.talk_s,
            transfers=tuple(ctx.transfers),
            routing_reason=routing.get("reason"),
            disposition=ctx.disposition,
            notes=notes,
            extra={
                **_candidates(ctx),
                "hangup_by": ctx.hangup_by,
                "escalations": list(ctx.escalations),
                "notes": list(ctx.notes),
                "routing": ctx.routing,
                # "ivr": the caller said who they are to the IVR (the number did not)
                **({"identified_by": by} if (by := routing.get("identified_by")) else {}),
                "disposition_by": ctx.disposition_by,
                "resolution": ctx.status,
                **(
                    {"confirmed_by": ctx.confirmed_by, "method": ctx.confirmed_method}
                    if ctx.confirmed_by
                    else {}
                ),
                "queue_legs": list(ctx.queue_legs),
                "talk_legs": list(ctx.talk_legs),
                **({"number": ctx.number, "ring_s": ctx.ring_s} if ctx.number else {}),
                **(
                    {
                        "wrap_up_agent": ctx.wrap_up_agent,
                        "wrap_up_s": ctx.wrap_up_s,
                        "wrap_up_end": ctx.wrap_up_end,
                    }
                    if ctx.wrap_up_agent
                    else {}
                ),
                **({"recording": ctx.recording} if ctx.recording else {}),
            },
        )

    def _record(self, ctx: CallContext) -> None:
        if self._recorder is not None:
            record = self._with_restart_facts(ctx, self.record_of(ctx))
            self._recorder.submit(_with_queue_log(record, ctx.queue_log))

    def queue_log_completed(self, record: InteractionRecord) -> bool:
        """queue_log's completion of an ended call still held here (``cti.queuelog``): its
        figures are kept on the context and the record written from it, so what was said
        since (a note, a disposition, the wrap-up) stays and what is written later does not
        put back the estimates it replaced. False: not held; the caller writes the record."""
        ctx = self._calls.get(record.call_id)
        if ctx is None or ctx.state != "ended":
            return False
        filled = (record.extra.get("queue_log") or {}).get("filled") or ()
        values = {k: _plain_value(getattr(record, k)) for k in filled}
        extra = {k: record.extra[k] for k in _QUEUE_LOG_EXTRA if k in record.extra}
        ctx.queue_log = json.loads(json.dumps({"values": values, "extra": extra}))
        self._record(ctx)
        if self._state is not None:
            self._state.changed(ctx)
        return True

    @staticmethod
    def _with_restart_facts(ctx: CallContext, record: InteractionRecord) -> InteractionRecord:
        """A record says which of its figures are estimates and what is not known."""
        if not (ctx.restored or ctx.midway or ctx.estimated or ctx.end_estimated):
            return record
        extra = dict(record.extra)
        estimated = list(ctx.estimated)
        if ctx.end_estimated:
            estimated.append("ended_at")
            if ctx.answered_at is not None:
                estimated.append("talk_s")
        extra.update(estimated=estimated, restored=ctx.restored, midway=ctx.midway)
        changes: dict[str, Any] = {"extra": extra}
        if ctx.unseen is not None:
            extra["unseen"] = list(ctx.unseen)
            if ctx.end_estimated and not ctx.agents:
                # Last seen waiting, gone when the daemon came back: answered or abandoned
                # meanwhile, nobody knows.
                extra["not_known"] = ["outcome", "agents"]
                changes["outcome"] = "unknown"
        if ctx.midway and not ctx.restored:
            extra["not_known"] = ["started_at", "wait_s", *([] if ctx.agents else ["outcome"])]
            changes["wait_s"] = None
            if not ctx.agents:
                changes["outcome"] = "unknown"
        if record.started_at and record.ended_at and record.ended_at < record.started_at:
            changes["ended_at"] = record.started_at
        return dataclasses.replace(record, **changes)

    # ---- wrap-up ---------------------------------------------------------------------------
    # The wrap-up of the agent who took the call (the one talking to the caller when it ended)
    # runs from the call's end until the first of: a disposition is saved on the call (one
    # saved before the end: no wrap-up), the agent answers another call, the grace period
    # ends (then it lasts the grace period). Each is measured once, then given to listeners.

    def on_wrap_up(self, listener: Callable[[WrapUp], None]) -> None:
        """Be told of every wrap-up measured (the statistics)."""
        self._wrap_listeners.append(listener)

    def _start_wrap_up(self, ctx: CallContext) -> None:
        if not ctx.agent or ctx.answered_at is None or ctx.wrap_up_agent is not None:
            return
        ctx.wrap_up_agent = ctx.agent
        if ctx.disposition is not None:
            self._end_wrap_up(ctx, ctx.ended_at or 0.0, "disposition", record=False)
        else:
            self._wrapping[ctx.agent] = ctx.call_id

    def _end_wrap_up(self, ctx: CallContext, at: float, why: str, *, record: bool = True) -> None:
        agent = ctx.wrap_up_agent
        if agent is None or ctx.wrap_up_s is not None or ctx.ended_at is None:
            return
        if self._wrapping.get(agent) == ctx.call_id:
            del self._wrapping[agent]
        end = min(at, ctx.ended_at + self._grace_s)
        ctx.wrap_up_s = round(max(0.0, end - ctx.ended_at), 3)
        ctx.wrap_up_end = why
        if record:
            self._record(ctx)
        done = WrapUp(ctx.call_id, agent, ctx.wrap_up_s, why)
        for listener in self._wrap_listeners:
            try:
                listener(done)
            except Exception as exc:  # the statistics must not break the call flow
                log.warning("wrap_up listener failed", call_id=ctx.call_id, error=repr(exc))

    def note_recording(self, call_id: str, file_name: str) -> None:
        """The call is being recorded into ``file_name`` (kept on its interaction)."""
        ctx = self._calls.get(call_id)
        if ctx is None:
            log.warning("recording of an unknown call", call_id=call_id)
            return
        ctx.recording = file_name
        if ctx.state == "ended":
            self._record(ctx)
        if self._state is not None:
            self._state.changed(ctx)

    def _release(self, call_id: str) -> None:
        ctx = self._calls.get(call_id)
        if ctx is not None and ctx.ended_at is not None:
            self._end_wrap_up(ctx, ctx.ended_at + self._grace_s, "grace")
        if self._state is not None:
            self._state.gone(call_id)
        self._releases.pop(call_id, None)
        self._calls.pop(call_id, None)
        self._published.discard(call_id)
        self._lookup_started.pop(call_id, None)
        task = self._lookups.pop(call_id, None)
        if task is not None:
            task.cancel()

    # ---- what agents and the API do ------------------------------------------------------

    def _known(self, call_id: str) -> CallContext:
        ctx = self._calls.get(call_id)
        if ctx is None:
            raise UnknownCall(call_id)
        return ctx

    async def add_note(self, call_id: str, author: str, text: str) -> CallContext:
        """A note on the call; after the call ended it updates the interaction record."""
        ctx = self._known(call_id)
        ctx.notes.append({"author": author, "text": text, "at": self._clock()})
        if ctx.state == "ended":
            self._record(ctx)
        if self._state is not None:
            self._state.changed(ctx)
        return ctx

    async def set_disposition(self, call_id: str, code: str, author: str) -> CallContext:
        """The wrap-up code; after the call ended it updates the interaction record."""
        ctx = self._known(call_id)
        ctx.disposition = code
        ctx.disposition_by = author
        if ctx.state == "ended":
            if self._wrapping.get(ctx.wrap_up_agent or "") == call_id:
                self._end_wrap_up(ctx, self._clock(), "disposition", record=False)
            self._record(ctx)
        if self._state is not None:
            self._state.changed(ctx)
        return ctx

    def mark_escalation(
        self, call_id: str, from_agent: str | None, tier: str, reason: str, note: str = ""
    ) -> CallContext:
        """Record an escalation (before the AMI action moves the caller) so it is carried on:
        Asterisk may ring the next agent before it answers the action, and that pop must carry
        the reason and note. ``withdraw_escalation`` undoes it when the action fails."""
        ctx = self._known(call_id)
        at = self._clock()
        ctx.escalations.append(
            {"from_agent": from_agent, "tier": tier, "reason": reason, "note": note, "at": at}
        )
        if note:
            ctx.notes.append({"author": from_agent or "system", "text": note, "at": at})
        if self._state is not None:
            self._state.changed(ctx)
        return ctx

    async def confirm_customer(
        self, call_id: str, customer_id: int, author: str, method: str = "candidate"
    ) -> CallContext:
        """An agent says who is calling (one of the candidates, a customer found by search or
        created from the pop; the IVR too): the call is now that customer's (its view loaded,
        its record attributed with who said so and how, even after the call ended; later
        transfers and escalations carry it). The API tells the desktops (``hub.publish_update``)."""
        ctx = self._known(call_id)
        ctx.customer_id = customer_id
        ctx.confirmed_by = author
        ctx.confirmed_method = method
        if self._directory is not None:
            try:
                view = await self._directory.view(customer_id)
            except Exception as exc:  # the confirmation stands; the view comes without it
                log.warning("crm view failed", call_id=call_id, error=repr(exc))
            else:
                ctx.view = view.to_dict() if view is not None else None
        if ctx.state == "ended":
            self._record(ctx)
        if self._state is not None:
            self._state.changed(ctx)
        return ctx

    async def customer_merged(self, merged_id: int, survivor_id: int) -> list[CallContext]:
        """A supervisor merged customer ``merged_id`` into ``survivor_id``: every call kept
        here (live, or in its wrap-up) that names the merged one names the survivor (its
        customer, its routing facts, its candidates; a shared number whose candidates were
        just these two now has one holder: a match), with the survivor's view, its record
        rewritten if it ended. Returns the calls changed (the API tells their desktops)."""
        changed = []
        for ctx in list(self._calls.values()):
            routing = ctx.routing or {}
            listed = any(c.get("customer_id") == merged_id for c in ctx.candidates)
            if merged_id not in (ctx.customer_id, routing.get("customer_id")) and not listed:
                continue
            if ctx.customer_id == merged_id:
                ctx.customer_id = survivor_id
            if routing.get("customer_id") == merged_id:
                ctx.routing = {**routing, "customer_id": survivor_id}
            view = None
            if self._directory is not None:
                try:
                    view = await self._directory.view(survivor_id)
                except Exception as exc:  # the ids are right; the view comes without it
                    log.warning("crm view failed", call_id=ctx.call_id, error=repr(exc))
            if listed:
                names = {c.get("customer_id"): c.get("name") for c in ctx.candidates}
                survivor = {
                    "id": survivor_id,
                    "name": view.name if view else names.get(survivor_id, names[merged_id]),
                    "external_id": view.external_id if view else None,
                }
                ctx.candidates = renamed_candidates(ctx.candidates, merged_id, survivor)
                if ctx.status == "ambiguous" and len(ctx.candidates) == 1 and not ctx.confirmed_by:
                    ctx.status, ctx.customer_id = "match", survivor_id
            if ctx.customer_id == survivor_id and view is not None:
                ctx.view = view.to_dict()
            if ctx.state == "ended":
                self._record(ctx)
            if self._state is not None:
                self._state.changed(ctx)
            changed.append(ctx)
        return changed

    def withdraw_escalation(self, call_id: str, escalation: Mapping[str, Any]) -> None:
        """Forget an escalation ``mark_escalation`` recorded (and its note): it did not happen."""
        ctx = self._calls.get(call_id)
        if ctx is None:
            return
        ctx.escalations = [e for e in ctx.escalations if e is not escalation]
        note = escalation.get("note")
        if note:
            author = escalation.get("from_agent") or "system"
            for i in range(len(ctx.notes) - 1, -1, -1):
                n = ctx.notes[i]
                if (n["author"], n["text"], n["at"]) == (author, note, escalation["at"]):
                    del ctx.notes[i]
                    break
        if ctx.state == "ended":
            self._record(ctx)

    # ---- CRM and routing -----------------------------------------------------------------

    def _note_uniqueid(self, ctx: CallContext, data: Mapping[str, Any]) -> None:
        for key in ("uniqueid", "caller_uniqueid"):
            uid = data.get(key)
            if uid and uid not in ctx.uniqueids:
                ctx.uniqueids.append(str(uid))
        for key in ("channel", "caller_channel"):
            channel = data.get(key)
            if channel and channel not in ctx.channels:
                ctx.channels.append(str(channel))

    def _attach_routing(self, ctx: CallContext) -> None:
        """The FastAGI decision for this call.

        The AGI runs on the caller's channel; with Local channels that is the ``;2`` half
        (``Local/08005550100@from-pstn-0000001a;2``) whose Linkedid is the call id, while the
        call was offered on the ``;1`` half: look the decision up by every Uniqueid seen for
        the caller, by the call id, and by channel name including the other half of a pair."""
        if self._decisions is None:
            return
        found = None
        for uid in [*ctx.uniqueids, ctx.call_id]:
            found = self._decisions.get(uid)
            if found is not None:
                break
        by_channel = getattr(self._decisions, "by_channel", None)
        if found is None and callable(by_channel):
            for channel in ctx.channels:
                for name in (channel, _other_half(channel)):
                    found = by_channel(name) if name else None
                    if found is not None:
                        break
                if found is not None:
                    break
        if found is None:
            return
        ctx.routing = _plain(found)
        cid = (ctx.routing or {}).get("customer_id")
        if ctx.customer_id is None and isinstance(cid, int):
            ctx.customer_id = cid
            self._start_lookup(ctx)

    def _start_lookup(self, ctx: CallContext) -> None:
        if self._directory is None or ctx.call_id in self._lookup_started:
            return
        self._lookup_started[ctx.call_id] = time.monotonic()
        self._lookups[ctx.call_id] = asyncio.create_task(
            self._lookup(ctx), name=f"crm-lookup-{ctx.call_id}"
        )

    async def _lookup(self, ctx: CallContext) -> None:
        assert self._directory is not None
        try:
            async with asyncio.timeout(self._lookup_deadline_s):
                if ctx.caller is not None or ctx.customer_id is None:
                    resolution = await self._directory.resolve(ctx.caller)
                    ctx.status = resolution.status
                    ctx.caller_e164 = resolution.e164
                    ctx.candidates = [c.to_dict() for c in resolution.candidates]
                    # Only a single match says who is calling. Of several customers sharing the
                    # number none is the caller until an agent confirms one: the call stays
                    # unattributed, its candidates kept (ranked, with why).
                    if resolution.status == "match" and resolution.customer_id is not None:
                        ctx.customer_id = resolution.customer_id
                if ctx.customer_id is not None:
                    view = await self._directory.view(ctx.customer_id)
                    ctx.view = view.to_dict() if view is not None else None
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a CRM down or slow must not stop the call flow
            log.warning("crm lookup failed", call_id=ctx.call_id, error=repr(exc))
            return
        finally:
            self._lookups.pop(ctx.call_id, None)
        if ctx.state == "ended":
            self._record(ctx)  # the call ended before the CRM answered: complete its record
        elif ctx.call_id in self._published and self._on_update is not None:
            try:
                await self._on_update(ctx)
            except Exception as exc:
                log.warning("context update not delivered", call_id=ctx.call_id, error=repr(exc))

    async def _await_lookup(self, ctx: CallContext) -> None:
        task = self._lookups.get(ctx.call_id)
        started = self._lookup_started.get(ctx.call_id)
        if task is None or started is None or task.done():
            return
        remaining = self._resolve_timeout_s - (time.monotonic() - started)
        if remaining <= 0:
            return
        await asyncio.wait([task], timeout=remaining)

    async def lookup_settled(self, call_id: str) -> None:
        """Wait for the call's CRM lookup, if one is running (tests and tools)."""
        task = self._lookups.get(call_id)
        if task is not None:
            await asyncio.wait([task])

    async def close(self) -> None:
        """Cancel pending lookups and release timers (the daemon calls this on shutdown)."""
        for handle in self._releases.values():
            handle.cancel()
        self._releases.clear()
        tasks = list(self._lookups.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._lookups.clear()


# Events whose ``uniqueid``/``channel`` are the caller's (not an agent's) channel.
_CALLER_SIDE = frozenset({"offered", "queued", "abandoned", "left_queue"})

_HANDLERS: dict[str, Callable[[LiveCalls, CallContext, CallEvent], None]] = {
    "offered": LiveCalls._on_offered,
    "queued": LiveCalls._on_queued,
    "ringing": LiveCalls._on_ringing,
    "ring_stopped": LiveCalls._on_ring_stopped,
    "answered": LiveCalls._on_answered,
    "transferred": LiveCalls._on_transferred,
    "outbound": LiveCalls._on_outbound,
    "abandoned": LiveCalls._on_abandoned,
    "left_queue": LiveCalls._on_left_queue,
}
