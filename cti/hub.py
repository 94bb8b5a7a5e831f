"""The pop hub: turns call events into the messages each agent's desktop receives.

One place for the outgoing direction: ``PopHub.publish(event, ctx)`` decides who hears about a
call event and builds the message once; each connected desktop has a ``Subscription`` that its
WebSocket sender drains. Publishing never awaits, so a slow desktop cannot hold up the others.

Send queues: a burst (start-up, a resync: hundreds of agent states at once) never drops a
desktop. Messages that only state a latest value (``agent_state`` per agent and queue,
``update`` per call and agent, the supervisor console's rows and snapshot) carry a coalescing
``key``: a newer one supersedes the pending older one, so they take room per key, not per
message. Every other message (a call event) is always delivered, in order; only a desktop that
stopped reading (``limit`` call events or ``limit_bytes`` pending) is dropped, and its page
reconnects and gets its active call replayed (a supervisor console: a fresh snapshot).

Messages (JSON objects), each with a unique ``id`` the desktop de-duplicates on:

- ``pop``: the call rings this agent: ``call`` (the live call context with the 360° view),
  ``reason`` (routing reason, or the escalation reason), ``wait_s``, ``previous_agent``,
  ``escalation`` (the latest one, with its note) and ``notes``. For a call the agent dialled
  (click-to-dial) the pop comes when the number is dialled, with ``direction: "outbound"``,
  ``number`` and the context of the customer being called (``call.view``, resolved from the
  number; ``update`` follows when the CRM answers late), then ``answered`` when the number
  answers and ``ended``;
- ``answered``: this agent answered (with the pop's fields; the ``call`` context too when the
  agent had no pop for it, e.g. a call that was put straight through);
- ``withdrawn``: the pop no longer applies (``reason``: answered_elsewhere with
  ``answered_by``, the agent who took the call; abandoned, left_queue, ring_no_answer, cancel
  when the caller went while the phone rang...);
- ``transferred``: the call left this agent (``to``, ``to_queue``, ``kind``) with its context;
- ``ended``: the call is over;
- ``update``: the call's context changed after the pop (the CRM answered late, an agent said who
  is calling, a supervisor merged its customer into another): same fields; also to the desks
  that keep the call for its wrap-up when an agent or a merge changed it;
- ``agent_state``: this agent's queue membership/pause changed;
- ``call``: (supervisors only) any other call event (offered, queued...);
- ``callback``: a callback task of one of this agent's queues changed (a caller gave up, gave
  up again, is being called back, was called back or called again): ``task`` (the task as
  ``GET /api/callbacks`` lists it, with ``since_s``); a task whose ``status`` is ``closed``
  leaves the list. Not tied to a call (``call_id`` null); only the latest state of a task
  matters, so a desktop still behind gets the newest one (``key``). A desktop reads the list
  again (``GET /api/callbacks``) when it connects: what changed while it was away.

Supervisors receive every message; agents only their own. An agent is matched by the event's
queue member name (``member``/``agent``) or its interface (``interface``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import structlog

from cti.config import AgentConfig
from cti.tracker.events import CallEvent

log = structlog.get_logger(__name__)

# Messages that carry the call context (``answered`` only when the agent had no pop).
_CONTEXT_KINDS = frozenset({"pop", "transferred", "call", "update"})

# Call events pending for one desktop before it counts as stuck (coalesced messages aside).
DEFAULT_QUEUE_LIMIT = 10_000
DEFAULT_QUEUE_BYTES = 16 * 1024 * 1024


def _make_encode() -> Callable[[Any], str]:
    """Compact JSON (``default=str``) with one encoder for every message: ``json.dumps`` with
    options builds a new encoder per call, a cost paid for each of the many small messages."""
    encoder = json.JSONEncoder(default=str, separators=(",", ":"), check_circular=False)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return encoder.encode
    c_encode = make(
        None, str, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, True
    )

    def encode(obj: Any) -> str:
        return "".join(c_encode(obj, 0))

    return encode


_encode = _make_encode()


class Fanout(Protocol):
    """Where the hub's messages go on their way to the desktops (``cti.cluster.fanout``):
    to every instance, which delivers them to its own desktops (``PopHub.deliver_local``)
    and keeps what a desktop connecting to it is replayed. None: this process's desktops."""

    def send(self, message: HubMessage) -> None: ...

    def send_console(self, message: HubMessage) -> None: ...

    def replay(self, agent: str) -> list[HubMessage]: ...

    def active(self) -> Iterable[tuple[str, str, list[HubMessage]]]: ...


class CallContextLike(Protocol):
    """What the hub reads from the live call context (``cti.calls.CallContext``)."""

    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class HubMessage:
    """One message for one agent's desktop, serialised once (``text`` is what is sent)."""

    id: str
    type: str
    call_id: str | None
    agent: str | None
    text: str
    # Messages with the same key state the same thing: a newer one supersedes a pending one.
    key: str | None = None


class Subscription:
    """A connected desktop: the queue of messages its sender drains.

    Call events (``key`` None) are kept in order and all delivered; keyed messages are
    coalesced (a pending one is skipped once a newer one with its key is queued), so a burst of
    states costs one pending message per key. Only call events count against ``limit`` and
    ``limit_bytes``: past them the desktop is stuck and the subscription dies.
    """

    def __init__(
        self,
        agent: AgentConfig,
        limit: int,
        on_overflow: Callable[[], None] | None = None,
        *,
        limit_bytes: int = DEFAULT_QUEUE_BYTES,
        console: bool = False,
    ) -> None:
        self.agent = agent
        self.limit = limit
        self.limit_bytes = limit_bytes
        self.console = console  # a supervisor console: gets snapshots and board rows
        self._on_overflow = on_overflow
        self.overflowed = False
        self._items: deque[HubMessage] = deque()
        self._latest: dict[str, str] = {}  # key -> id of its newest pending message
        self._stale = 0  # superseded messages still in _items
        self._event_bytes = 0  # text of the pending call events
        self._ready = asyncio.Event()

    @property
    def is_supervisor(self) -> bool:
        return self.agent.role == "supervisor"

    def offer(self, message: HubMessage) -> bool:
        """Queue a message; False (and the subscription is dead) when the desktop is stuck."""
        if self.overflowed:
            return False
        key = message.key
        if key is None:
            if self.pending_events() >= self.limit or self._event_bytes >= self.limit_bytes:
                self._overflow()
                return False
            self._event_bytes += len(message.text)
        else:
            if key in self._latest:
                self._stale += 1
            self._latest[key] = message.id
            if self._stale > 64 and self._stale * 2 > len(self._items):
                self._compact()
        self._items.append(message)
        self._ready.set()
        return True

    def _overflow(self) -> None:
        self.overflowed = True
        self._items.clear()
        self._latest.clear()
        self._stale = self._event_bytes = 0
        self._ready.set()
        if self._on_overflow is not None:
            try:
                self._on_overflow()
            except Exception as exc:  # the connection's business: never the publisher's
                log.warning("overflow hook failed", agent=self.agent.name, error=repr(exc))

    def _compact(self) -> None:
        latest = self._latest
        self._items = deque(m for m in self._items if m.key is None or latest[m.key] == m.id)
        self._stale = 0

    def pending(self) -> int:
        return len(self._items) - self._stale

    def pending_events(self) -> int:
        """Pending call events (the messages that are never coalesced)."""
        return len(self._items) - self._stale - len(self._latest)

    def _take(self, message: HubMessage) -> bool:
        """Account for a message leaving the queue; False when it was superseded."""
        key = message.key
        if key is None:
            self._event_bytes -= len(message.text)
            return True
        if self._latest.get(key) == message.id:
            del self._latest[key]
            return True
        self._stale -= 1
        return False

    def take_nowait(self) -> HubMessage | None:
        """The next live message now, or None when nothing is pending."""
        while self._items:
            message = self._items.popleft()
            if self._take(message):
                return message
        return None

    async def next(self) -> HubMessage | None:
        """The next message, or None once the subscription overflowed (close the client)."""
        while True:
            while not self._items:
                if self.overflowed:
                    return None
                self._ready.clear()
                await self._ready.wait()
            if self.overflowed:
                return None
            message = self.take_nowait()
            if message is not None:
                return message


@dataclass
class HubStats:
    messages: int = 0
    delivered: int = 0
    dropped_clients: int = 0
    by_type: dict[str, int] = field(default_factory=dict)


def _epoch(value: Any) -> float | None:
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            return None
    return None


def alias_key(alias: str) -> str:
    """How an agent alias is compared: case-insensitive, a Local member's ``/n`` dropped
    (``Local/1001@agents/n`` in queues.conf is the phone ``Local/1001@agents``)."""
    key = alias.strip().lower()
    return key[:-2] if key.startswith("local/") and key.endswith("/n") else key


def _last(items: Any) -> Any:
    return items[-1] if isinstance(items, list | tuple) and items else None


def context_dict(ctx: CallContextLike) -> dict[str, Any]:
    """The call context as plain data, for serialising at once.

    A dataclass context (``cti.calls.CallContext``) is read field by field without the deep
    copy of ``dataclasses.asdict``: its fields are already JSON data, and the hub serialises
    them immediately, so a snapshot by reference is enough and far cheaper per event.
    """
    state = getattr(ctx, "__dict__", None)
    if state is not None and dataclasses.is_dataclass(ctx):
        data = dict(state)
        data.pop("uniqueids", None)  # internal to the call tracker
        return data
    return ctx.to_dict()


class _Context:
    """One publish's view of the call: the dict and its JSON, each built once when needed."""

    __slots__ = ("_ctx", "_dict", "_json", "call")

    def __init__(self, call: str, ctx: CallContextLike | None) -> None:
        self.call = call
        self._ctx = ctx
        self._dict: dict[str, Any] | None = None
        self._json: str | None = None

    @property
    def data(self) -> dict[str, Any]:
        if self._dict is None:
            ctx = self._ctx
            self._dict = context_dict(ctx) if ctx is not None else {"call_id": self.call}
        return self._dict

    @property
    def json(self) -> str:
        if self._json is None:
            self._json = _encode(self.data)
        return self._json


class PopHub:
    """Routes call events to the desktops of the agents they concern (and to supervisors)."""

    def __init__(
        self,
        agents: Sequence[AgentConfig],
        *,
        queue_limit: int = DEFAULT_QUEUE_LIMIT,
        clock: Callable[[], float] = time.time,
        fanout: Fanout | None = None,
    ) -> None:
        self._agents = {a.name: a for a in agents}
        self._fanout = fanout
        self._by_alias: dict[str, str] = {}
        for agent in agents:
            for alias in (agent.name, agent.member, agent.interface):
                if alias:
                    self._by_alias.setdefault(alias_key(alias), agent.name)
        self._queue_limit = queue_limit
        self._clock = clock
        self._prefix = secrets.token_hex(4)
        self._seq = itertools.count(1)
        self._subs: dict[str, set[Subscription]] = {}
        self._supervisors: set[Subscription] = set()
        self._ringing: dict[str, set[str]] = {}  # call -> agents whose phone rings
        self._talking: dict[str, set[str]] = {}  # call -> agents who answered it
        self._active: dict[str, dict[str, list[HubMessage]]] = {}  # agent -> call -> replay
        self._active_by_call: dict[str, set[str]] = {}  # call -> agents with replay state
        # (agent, call) -> "ringing"/"talking": taken over from another instance's messages;
        # Asterisk's state read back says it again, which is not news to the desktop.
        self._adopted: dict[tuple[str, str], str] = {}
        self.stats = HubStats()

    # -- connections ---------------------------------------------------------------------

    def subscribe(
        self,
        agent: AgentConfig,
        on_overflow: Callable[[], None] | None = None,
        *,
        first: Sequence[HubMessage] = (),
        console: bool = False,
    ) -> Subscription:
        """A desktop connected: it gets ``first`` (a console: its snapshot), then the current
        state of its active call(s).

        ``on_overflow`` is called (synchronously) when the desktop's queue overflows, e.g. to
        cut a connection whose sender is stuck writing to a client that stopped reading.
        ``console``: a supervisor console, which also gets what ``to_consoles`` sends.
        """
        sub = Subscription(agent, self._queue_limit, on_overflow, console=console)
        for message in first:
            sub.offer(message)
        if agent.role == "supervisor":
            self._supervisors.add(sub)
        self._subs.setdefault(agent.name, set()).add(sub)
        for message in self.active_messages(agent.name):
            sub.offer(message)
        return sub

    def make_message(
        self, kind: str, payload: dict[str, Any], *, key: str | None = None
    ) -> HubMessage:
        """A message of another part (the supervisor console's rows, an alert), with a hub id."""
        message_id = f"{self._prefix}-{next(self._seq)}"
        text = _encode({"id": message_id, "type": kind, **payload})
        return HubMessage(message_id, kind, payload.get("call_id"), None, text, key)

    def to_consoles(self, messages: Iterable[HubMessage]) -> int:
        """Queue messages for every supervisor console (a stuck one is dropped); with
        several instances, through the fan-out to the consoles of every instance."""
        if self._fanout is not None:
            sent = 0
            for message in messages:
                self._fanout.send_console(message)
                sent += 1
            return sent
        return self.to_local_consoles(messages)

    def deliver_console(self, message: HubMessage) -> None:
        """A console message from the fan-out, for this process's consoles."""
        self.to_local_consoles((message,))

    def to_local_consoles(self, messages: Iterable[HubMessage]) -> int:
        """Queue messages for this process's supervisor consoles (a stuck one is dropped)."""
        consoles = [s for s in self._supervisors if s.console]
        sent = 0
        for message in messages:
            for sub in consoles:
                if sub.offer(message):
                    sent += 1
                else:
                    self.stats.dropped_clients += 1
                    log.warning("console_dropped_stuck", agent=sub.agent.name, id=message.id)
                    self.unsubscribe(sub)
            consoles = [s for s in consoles if not s.overflowed]
        return sent

    def consoles(self) -> int:
        return sum(1 for s in self._supervisors if s.console)

    def unsubscribe(self, sub: Subscription) -> None:
        self._supervisors.discard(sub)
        subs = self._subs.get(sub.agent.name)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.agent.name]

    def connected(self) -> int:
        return sum(len(s) for s in self._subs.values())

    def active_messages(self, agent_name: str) -> list[HubMessage]:
        """What a desktop of this agent would be replayed now."""
        if self._fanout is not None:
            return self._fanout.replay(agent_name)
        return [m for ms in self._active.get(agent_name, {}).values() for m in ms]

    def adopt_replay(self, only: str = "") -> int:
        """Take over the calls the desktops are shown from the fan-out's replay state (an
        instance that starts ingesting after another): a call already popped to an agent is
        not popped again when Asterisk's state is read back. Returns the calls taken.
        ``only``: the prefix of the call ids of the PBX taken over (several PBXs)."""
        if self._fanout is None:
            return 0
        taken = 0
        for agent, call, messages in self._fanout.active():
            if not call.startswith(only):
                continue
            self._remember(agent, call, messages)
            answered = any(
                m.type == "answered" or '"direction":"outbound"' in m.text for m in messages
            )
            (self._talking if answered else self._ringing).setdefault(call, set()).add(agent)
            self._adopted[(agent, call)] = "talking" if answered else "ringing"
            taken += 1
        return taken

    # -- events --------------------------------------------------------------------------

    def agent_key(self, *aliases: Any) -> str | None:
        """The configured agent named by any of these (member name, interface, name)."""
        for alias in aliases:
            if isinstance(alias, str) and alias:
                name = self._by_alias.get(alias_key(alias))
                if name is not None:
                    return name
        for alias in aliases:
            if isinstance(alias, str) and alias:
                return alias  # not a desktop user: supervisors still see it
        return None

    def publish(self, event: CallEvent, ctx: CallContextLike | None) -> int:
        """Deliver what ``event`` means to each desktop concerned; returns messages built."""
        call = event.call
        data = event.data
        context = _Context(call, ctx)
        now = event.ts if event.ts is not None else self._clock()
        built: list[HubMessage] = []

        def emit(
            kind_: str, agent_: str | None, /, *, with_context: bool = False, **extra: Any
        ) -> HubMessage:
            carried = context if with_context or kind_ in _CONTEXT_KINDS else None
            message = self._message(kind_, call, agent_, now, carried, extra)
            built.append(message)
            return message

        def to_supervisors(kind_: str, **extra: Any) -> None:
            if self._supervisors:  # nobody else reads these: do not build them for nobody
                emit(kind_, None, **extra)

        name = event.event
        if name == "ringing":
            agent = self.agent_key(data.get("member"), data.get("interface"))
            ringing = self._ringing.setdefault(call, set())
            if agent is not None and (agent, call) in self._adopted:
                pass  # already popped by the instance that ingested before this one
            elif agent is not None and agent not in ringing:
                ringing.add(agent)
                pop = emit("pop", agent, **self._pop_fields(context.data, now))
                self._remember(agent, call, [pop])
        elif name == "outbound":
            agent = self.agent_key(data.get("member"), data.get("agent"), data.get("interface"))
            if agent is not None:
                fields = self._pop_fields(context.data, now)
                fields["wait_s"] = None
                pop = emit("pop", agent, direction="outbound", number=data.get("number"), **fields)
                self._talking.setdefault(call, set()).add(agent)
                self._remember(agent, call, [pop])
            to_supervisors("call", event=name, detail=data)
        elif name == "ring_stopped":
            agent = self.agent_key(data.get("member"), data.get("interface"))
            if agent is not None and agent in self._ringing.get(call, set()):
                self._ringing[call].discard(agent)
                reason = data.get("reason") or "ring_no_answer"
                if reason == "answered_elsewhere":
                    by = self.agent_key(data.get("answered_by"))
                    emit("withdrawn", agent, reason=reason, answered_by=by)
                else:
                    emit("withdrawn", agent, reason=reason)
                self._forget(agent, call)
        elif name == "answered":
            agent = self.agent_key(data.get("member"), data.get("agent"), data.get("interface"))
            others = self._ringing.pop(call, set())
            if agent is not None and self._adopted.pop((agent, call), None) == "talking":
                self._talking.setdefault(call, set()).add(agent)  # the desktop knows it
            elif agent is not None:
                others.discard(agent)
                replay = [m for m in self._active.get(agent, {}).get(call, []) if m.type == "pop"]
                # The desktop has the context from its pop; it comes again only without one.
                answered = emit(
                    "answered",
                    agent,
                    with_context=not replay,
                    **self._pop_fields(context.data, now),
                )
                self._talking.setdefault(call, set()).add(agent)
                self._remember(agent, call, [*replay, answered])
            for other in sorted(others):
                emit("withdrawn", other, reason="answered_elsewhere", answered_by=agent)
                self._forget(other, call)
        elif name in ("abandoned", "left_queue"):
            for other in sorted(self._ringing.pop(call, set())):
                emit("withdrawn", other, reason=name)
                self._forget(other, call)
            to_supervisors("call", event=name, detail=data)
        elif name == "transferred":
            frm = self.agent_key(data.get("from_agent"), data.get("from"))
            talking = self._talking.get(call, set())
            leaving = {frm} if frm in talking else set(talking)
            if frm is not None and not leaving:
                leaving = {frm}
            for agent in sorted(leaving):
                emit(
                    "transferred",
                    agent,
                    kind=data.get("kind"),
                    to=data.get("to"),
                    to_queue=data.get("to_queue"),
                    **self._pop_fields(context.data, now),
                )
                talking.discard(agent)
                self._forget(agent, call)
        elif name == "ended":
            involved = self._ringing.pop(call, set()) | self._talking.pop(call, set())
            involved |= self._active_by_call.get(call, set())
            for agent in sorted(involved):
                emit("ended", agent, hangup_by=data.get("hangup_by"), talk_s=data.get("talk_s"))
                self._forget(agent, call)
            if not involved:
                to_supervisors("ended", hangup_by=data.get("hangup_by"), talk_s=data.get("talk_s"))
        elif name == "agent_state":
            agent = self.agent_key(data.get("member"), data.get("interface"))
            state = emit("agent_state", agent, **{k: v for k, v in data.items() if k != "agent"})
            # Only the latest state of an agent in a queue matters to a desktop still behind.
            built[-1] = dataclasses.replace(state, key=f"agent_state\0{agent}\0{data.get('queue')}")
        else:
            to_supervisors("call", event=name, detail=data)

        for message in built:
            self._deliver(message)
        return len(built)

    def publish_callback(self, task: dict[str, Any], agents: Iterable[str]) -> int:
        """A callback task changed: ``callback`` to each of ``agents`` (its queue's agents);
        supervisors get these as every message (with no agent of the queue configured, one
        for them alone). All carry the task's key: a desktop keeps the task's latest state."""
        now = self._clock()
        last = _epoch(task.get("last_abandoned_at"))
        since = round(max(0.0, now - last), 1) if last is not None else None
        payload = {"task": {**task, "since_s": since}}
        key = f"callback\0{task.get('task_id')}"
        names: list[str | None] = [*sorted({self.agent_key(a) or a for a in agents if a})]
        if not names:
            names = [None]  # supervisors only
        for agent in names:
            message_id = f"{self._prefix}-{next(self._seq)}"
            head = {"id": message_id, "type": "callback", "call_id": None, "agent": agent}
            text = _encode({**head, "at": now, **payload})
            self._deliver(HubMessage(message_id, "callback", None, agent, text, key))
        return len(names)

    async def update(self, ctx: CallContextLike) -> None:
        """``LiveCalls(on_update=hub.update)``: the CRM answered after the pop went out."""
        self.publish_update(ctx)

    def publish_update(self, ctx: CallContextLike, *, also: Iterable[str] = ()) -> int:
        """Send the call's fresh context (``update``) to the agents it rings or talks to, and
        to ``also`` (e.g. the agents who had an ended call, still on their desk for its
        wrap-up; a desktop without the call ignores it)."""
        context = _Context("", ctx)
        call = str(context.data.get("call_id") or "")
        context.call = call
        now = self._clock()
        agents = self._ringing.get(call, set()) | self._talking.get(call, set())
        agents |= {name for a in also if (name := self.agent_key(a)) is not None}
        built = []
        for agent in sorted(agents):
            message = self._message(
                "update", call, agent, now, context, self._pop_fields(context.data, now)
            )
            message = dataclasses.replace(message, key=f"update\0{call}\0{agent}")
            built.append(message)
            replay = self._active.get(agent, {}).get(call)
            if replay is not None:
                replay.append(message)
        for message in built:
            self._deliver(message)
        return len(built)

    # -- internals -----------------------------------------------------------------------

    def _remember(self, agent: str, call: str, messages: list[HubMessage]) -> None:
        self._active.setdefault(agent, {})[call] = messages
        self._active_by_call.setdefault(call, set()).add(agent)

    def _forget(self, agent: str, call: str) -> None:
        if self._adopted:
            self._adopted.pop((agent, call), None)
        calls = self._active.get(agent)
        if calls is not None:
            calls.pop(call, None)
            if not calls:
                del self._active[agent]
        agents = self._active_by_call.get(call)
        if agents is not None:
            agents.discard(agent)
            if not agents:
                del self._active_by_call[call]

    def _pop_fields(self, context: dict[str, Any], now: float) -> dict[str, Any]:
        routing = context.get("routing") or {}
        escalation = _last(context.get("escalations"))
        previous = _last(context.get("previous_agents"))
        if escalation and escalation.get("from_agent"):
            previous = escalation["from_agent"]
        offered = _epoch(context.get("offered_at"))
        reason = (escalation or {}).get("reason") or routing.get("reason")
        return {
            "reason": reason,
            "routing_reason": routing.get("reason"),
            "queue": context.get("queue") or routing.get("queue"),
            "tier": context.get("tier") or routing.get("tier"),
            "wait_s": round(max(0.0, now - offered), 1) if offered is not None else None,
            "previous_agent": previous,
            "escalation": escalation,
            "notes": context.get("notes") or [],
        }

    def _message(
        self,
        kind: str,
        call: str,
        agent: str | None,
        now: float,
        context: _Context | None,
        extra: dict[str, Any],
    ) -> HubMessage:
        message_id = f"{self._prefix}-{next(self._seq)}"
        head: dict[str, Any] = {
            "id": message_id,
            "type": kind,
            "call_id": call,
            "agent": agent,
            "at": now,
            **extra,
        }
        text = _encode(head)
        if context is not None:
            text = f'{text[:-1]},"call":{context.json}}}'  # the context, serialised once
        return HubMessage(message_id, kind, call, agent, text)

    def _targets(self, agent: str | None) -> Iterable[Subscription]:
        """A snapshot (delivering may unsubscribe); a supervisor's own calls reach it once."""
        subs = self._subs.get(agent) if agent is not None else None
        if self._supervisors:
            return self._supervisors | subs if subs else set(self._supervisors)
        return tuple(subs) if subs else ()

    def _deliver(self, message: HubMessage) -> None:
        self.stats.messages += 1
        self.stats.by_type[message.type] = self.stats.by_type.get(message.type, 0) + 1
        if self._fanout is not None:
            self._fanout.send(message)  # every instance delivers it to its desktops
        else:
            self.deliver_local(message)

    def deliver_local(self, message: HubMessage) -> None:
        """Queue a message for this process's desktops it concerns."""
        for sub in self._targets(message.agent):
            if sub.offer(message):
                self.stats.delivered += 1
            else:
                self.stats.dropped_clients += 1
                log.warning(
                    "desktop_dropped_slow", agent=sub.agent.name, queued=sub.limit, id=message.id
                )
                self.unsubscribe(sub)
