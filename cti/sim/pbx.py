"""The simulated PBX: channels, queues, agent phones, and the events Asterisk 22 sends for them.

``Pbx`` holds the state and emits events to subscribers (AMI sessions); ``cti.sim.call.SimCall``
drives one call through it the way ``docker/asterisk/extensions.conf`` does. Queue behaviour
follows app_queue: callers wait in priority order, ``rrmemory`` rings one free member at a time,
``ringall`` rings every free member, a member that does not answer within the queue's timeout
gets ``AgentRingNoAnswer`` and the caller is offered again after ``retry``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from cti.queuelog.model import QueueLogRow
from cti.sim.channels import Bridge, Channel, Ids
from cti.sim.queue_log import QueueLogWriter
from cti.sim.wire import Headers

if TYPE_CHECKING:
    from cti.sim.call import SimCall

EventClass = Literal["call", "agent", "dialplan", "agi", "system"]
PhoneState = Literal["idle", "ringing", "busy"]
# Device state numbers as QueueMemberStatus reports them.
_STATUS = {"idle": 1, "busy": 2, "ringing": 6}
CAUSE_TEXT = {0: "Unknown", 16: "Normal Clearing", 17: "User busy", 26: "Answered elsewhere"}


@dataclass
class Event:
    """One AMI event: its class (for the read filter) and its headers after ``Event``."""

    name: str
    cls: EventClass
    headers: Headers

    def message(self) -> Headers:
        return [("Event", self.name), ("Privilege", f"{self.cls},all"), *self.headers]


@dataclass
class Phone:
    """An agent's phone: one extension, shared by every queue the agent is a member of."""

    exten: str
    state: PhoneState = "idle"


@dataclass(eq=False)
class Member:
    queue: str
    name: str
    interface: str  # Local/1001@agents/n
    phone: Phone
    membership: Literal["static", "dynamic"] = "static"
    penalty: int = 0
    paused: bool = False
    paused_reason: str = ""
    calls_taken: int = 0
    last_call: int = 0
    last_pause: int = 0
    login_time: int = field(default_factory=lambda: int(time.time()))

    @property
    def state_interface(self) -> str:
        return f"Custom:agent{self.phone.exten}"

    @property
    def available(self) -> bool:
        return not self.paused and self.phone.state == "idle"

    def headers(self) -> Headers:
        return [
            ("Queue", self.queue),
            ("MemberName", self.name),
            ("Interface", self.interface),
            ("StateInterface", self.state_interface),
            ("Membership", self.membership),
            ("Penalty", str(self.penalty)),
            ("CallsTaken", str(self.calls_taken)),
            ("LastCall", str(self.last_call)),
            ("LastPause", str(self.last_pause)),
            ("LoginTime", str(self.login_time)),
            ("InCall", "1" if self.phone.state == "busy" else "0"),
            ("Status", str(_STATUS[self.phone.state])),
            ("Paused", "1" if self.paused else "0"),
            ("PausedReason", self.paused_reason),
            ("Ringinuse", "0"),
            ("Wrapuptime", "0"),
        ]


@dataclass(eq=False)
class Entry:
    """A caller waiting in a queue."""

    call: SimCall
    priority: int
    seq: int
    joined: float
    original_position: int = 0
    # The channel waiting in the queue: the caller's, or a consultation leg's (attended transfer).
    channel: Channel | None = None
    ringing: bool = False  # an offer is out to one or more members
    ready: bool = True  # False during the retry pause after a ring-no-answer


@dataclass
class SimQueue:
    name: str
    strategy: Literal["rrmemory", "ringall"] = "rrmemory"
    timeout_s: float = 10.0  # how long a member's phone rings before AgentRingNoAnswer
    retry_s: float = 1.0
    weight: int = 0
    members: list[Member] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    completed: int = 0
    abandoned: int = 0
    holdtime_total: float = 0.0
    talktime_total: float = 0.0
    _rr: int = 0

    def position(self, entry: Entry) -> int:
        return self.entries.index(entry) + 1

    def member(self, interface: str) -> Member | None:
        wanted = interface.lower()
        return next((m for m in self.members if m.interface.lower() == wanted), None)

    def pick(self) -> list[Member]:
        free = [m for m in self.members if m.available]
        if not free:
            return []
        if self.strategy == "ringall":
            return free
        start = self._rr % len(self.members)
        order = self.members[start:] + self.members[:start]
        chosen = next(m for m in order if m.available)
        self._rr = self.members.index(chosen) + 1
        return [chosen]

    def params(self) -> Headers:
        avg_hold = int(self.holdtime_total / self.completed) if self.completed else 0
        avg_talk = int(self.talktime_total / self.completed) if self.completed else 0
        return [
            ("Queue", self.name),
            ("Max", "0"),
            ("Strategy", self.strategy),
            ("Calls", str(len(self.entries))),
            ("Holdtime", str(avg_hold)),
            ("TalkTime", str(avg_talk)),
            ("Completed", str(self.completed)),
            ("Abandoned", str(self.abandoned)),
            ("ServiceLevel", "20"),
            ("ServicelevelPerf", "0.0"),
            ("ServicelevelPerf2", "0.0"),
            ("Weight", str(self.weight)),
        ]


Subscriber = Callable[[Event], None]


class Pbx:
    """State of the simulated Asterisk, shared by the AMI server and the calls."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.ids = Ids(clock)
        self.channels: dict[str, Channel] = {}
        self.queues: dict[str, SimQueue] = {}
        self.phones: dict[str, Phone] = {}
        self.bridges: dict[str, Bridge] = {}
        self._members_of: dict[str, list[Member]] = {}  # phone extension -> its memberships
        self._subscribers: list[Subscriber] = []
        self._seq = itertools.count()
        self.events_sent = 0
        self.queue_log: QueueLogWriter | None = None  # app_queue's rows, when configured

    def queue_log_row(self, queue: str, callid: str, agent: str, event: str, *data: object) -> None:
        """One row of Asterisk's queue_log (``ast_queue_log``), now."""
        if self.queue_log is not None:
            row = QueueLogRow(self.clock(), callid, queue, agent, event, tuple(map(str, data)))
            self.queue_log.write(row)

    # -- events -----------------------------------------------------------------------------
    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber)

    def emit(self, name: str, cls: EventClass, headers: Headers) -> None:
        stamped: Headers = [("Timestamp", f"{self.clock():.6f}"), *headers]
        event = Event(name, cls, stamped)
        self.events_sent += 1
        for subscriber in list(self._subscribers):
            subscriber(event)

    def channel_event(self, name: str, channel: Channel, *extra: tuple[str, str]) -> None:
        self.emit(name, "call", [*channel.headers(), *extra])

    # -- channels ---------------------------------------------------------------------------
    def add_channel(self, channel: Channel, owner: object) -> None:
        channel.owner = owner
        self.channels[channel.name] = channel
        self.channel_event("Newchannel", channel)

    def new_state(self, channel: Channel, state: int) -> None:
        channel.state = state
        self.channel_event("Newstate", channel)

    def hangup(self, channel: Channel, cause: int = 16, soft: bool = True) -> None:
        if channel.name not in self.channels:
            return
        if soft:
            self.channel_event("SoftHangupRequest", channel, ("Cause", str(cause)))
        self.channel_event(
            "Hangup",
            channel,
            ("Cause", str(cause)),
            ("Cause-txt", CAUSE_TEXT.get(cause, "Unknown")),
        )
        del self.channels[channel.name]

    def set_var(self, channel: Channel, name: str, value: str) -> None:
        channel.variables[name] = value
        self.emit("VarSet", "dialplan", [*channel.headers(), ("Variable", name), ("Value", value)])

    # -- bridges ----------------------------------------------------------------------------
    def bridge(self, first: Channel, second: Channel) -> Bridge:
        bridge = self.new_bridge()
        self.enter(bridge, first)
        self.enter(bridge, second)
        return bridge

    def new_bridge(self) -> Bridge:
        bridge = Bridge(self.ids.bridge_id())
        self.bridges[bridge.uniqueid] = bridge
        self.emit("BridgeCreate", "call", bridge.headers())
        return bridge

    def enter(self, bridge: Bridge, channel: Channel) -> None:
        bridge.channels.append(channel)
        channel.bridge = bridge
        self.emit("BridgeEnter", "call", [*bridge.headers(), *channel.headers()])

    def leave_bridge(self, channel: Channel, destroy: bool = True) -> Bridge | None:
        """``BridgeLeave``; an emptied bridge is destroyed now, or later by ``destroy_bridge``."""
        bridge = channel.bridge
        if bridge is None:
            return None
        bridge.channels.remove(channel)
        channel.bridge = None
        self.emit("BridgeLeave", "call", [*bridge.headers(), *channel.headers()])
        if destroy:
            self.destroy_bridge(bridge)
        return bridge

    def destroy_bridge(self, bridge: Bridge | None) -> None:
        if bridge is not None and not bridge.channels and bridge.uniqueid in self.bridges:
            del self.bridges[bridge.uniqueid]
            self.emit("BridgeDestroy", "call", bridge.headers())

    # -- queues -----------------------------------------------------------------------------
    def add_queue(self, queue: SimQueue) -> None:
        self.queues[queue.name] = queue

    def phone(self, exten: str) -> Phone:
        return self.phones.setdefault(exten, Phone(exten))

    def add_member(
        self,
        queue: str,
        name: str,
        interface: str,
        *,
        dynamic: bool = False,
        penalty: int = 0,
        paused: bool = False,
        reason: str = "",
    ) -> Member:
        exten = interface.split("/", 1)[-1].split("@", 1)[0]
        member = Member(
            queue,
            name,
            interface,
            self.phone(exten),
            membership="dynamic" if dynamic else "static",
            penalty=penalty,
            paused=paused,
            paused_reason=reason,
        )
        self.queues[queue].members.append(member)
        self._members_of.setdefault(member.phone.exten, []).append(member)
        if dynamic:
            self.emit("QueueMemberAdded", "agent", member.headers())
            self.dispatch_all()
        return member

    def members_of(self, phone: Phone) -> list[Member]:
        return self._members_of.get(phone.exten, [])

    def set_phone(self, phone: Phone, state: PhoneState) -> None:
        phone.state = state
        for member in self.members_of(phone):
            self.emit("QueueMemberStatus", "agent", member.headers())
        if state == "idle":
            self.dispatch_all()

    def join(
        self, queue: SimQueue, call: SimCall, priority: int, channel: Channel | None = None
    ) -> Entry:
        entry = Entry(call, priority, next(self._seq), self.clock(), channel=channel)
        index = next(
            (i for i, e in enumerate(queue.entries) if e.priority < priority), len(queue.entries)
        )
        queue.entries.insert(index, entry)
        entry.original_position = index + 1
        return entry

    def leave(self, queue: SimQueue, entry: Entry) -> int:
        position = queue.position(entry)
        queue.entries.remove(entry)
        self.dispatch(queue)
        return position

    def dispatch(self, queue: SimQueue) -> None:
        """Offer waiting callers, in queue order, to free members."""
        for entry in list(queue.entries):
            if entry.ringing or not entry.ready:
                continue
            members = queue.pick()
            if not members:
                return
            entry.ringing = True
            for member in members:
                member.phone.state = "ringing"
            entry.call.offer(queue, entry, members)

    def dispatch_all(self) -> None:
        for queue in self.queues.values():
            self.dispatch(queue)

    def set_paused(self, member: Member, paused: bool, reason: str = "") -> None:
        member.paused = paused
        member.paused_reason = reason if paused else ""
        member.last_pause = int(self.clock()) if paused else member.last_pause
        self.emit("QueueMemberPause", "agent", member.headers())
        if not paused:
            self.dispatch(self.queues[member.queue])

    def remove_member(self, member: Member) -> None:
        self.queues[member.queue].members.remove(member)
        self._members_of[member.phone.exten].remove(member)
        self.emit("QueueMemberRemoved", "agent", member.headers())

    def find_call_channel(self, name: str) -> Channel | None:
        return self.channels.get(name)
