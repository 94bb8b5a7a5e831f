"""The tracker's state: channels, bridges and calls as Asterisk reports them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cti.tracker.outbound import Outbound


def device_name(channel: str) -> str:
    """A channel's device: the name without its unique suffix (``SIP/150010002-00000005`` ->
    ``SIP/150010002``; ``Local/1001@agents-0000000a;1`` -> ``Local/1001@agents``)."""
    if channel.startswith("Local/") and channel[-2:-1] == ";":
        channel = channel[:-2]
    head, dash, _ = channel.rpartition("-")
    return head if dash else channel


def interface_device(interface: str) -> str:
    """A queue member interface as a device (``Local/1001@agents/n`` -> ``Local/1001@agents``)."""
    return interface[:-2] if interface.endswith("/n") else interface


class Channel:
    """One Asterisk channel as the tracker follows it (a plain slotted class: it is hot)."""

    __slots__ = (
        "answered_dial",
        "bridge",
        "caller_name",
        "caller_num",
        "calls",
        "cause",
        "dial_answered",
        "dialed",
        "hangup_requested",
        "interface",
        "is_local",
        "linkedid",
        "member",
        "name",
        "on_hold",
        "partner_name",
        "queue",
        "queues_pending",
        "uniqueid",
    )

    def __init__(self, name: str, uniqueid: str, linkedid: str) -> None:
        self.uniqueid = uniqueid
        self.linkedid = linkedid
        self.caller_num = ""
        self.caller_name = ""
        self.bridge: str | None = None
        self.member: str | None = None  # queue member name when a queue rang this channel
        self.on_hold = False  # its phone put the bridge on hold (Hold, until Unhold)
        self.interface: str | None = None
        self.queue: str | None = None  # the queue whose member this channel is
        self.calls: list[str] = []  # call ids this channel counts towards
        self.dialed: list[str] = []  # uniqueids it dialled, in order
        self.queues_pending: list[str] = []  # queues joined, not yet credited to a call
        self.answered_dial = False  # a Dial from this channel was answered since its queue join
        # who answered this channel's current Dial (ring-all: the others are cancelled after it)
        self.dial_answered: str | None = None
        self.cause = ""
        self.hangup_requested = False
        # as renamed() does, inline: channels are created on every call
        self.name = name
        self.is_local = is_local = name.startswith("Local/")
        # the other end of a Local channel pipe (;1 <-> ;2)
        self.partner_name: str | None = (
            name[:-1] + ("2" if name[-1] == "1" else "1")
            if is_local and name[-2:-1] == ";"
            else None
        )

    def renamed(self, name: str) -> None:
        self.name = name
        self.is_local = name.startswith("Local/")
        # the other end of a Local channel pipe (;1 <-> ;2)
        self.partner_name = (
            name[:-1] + ("2" if name[-1] == "1" else "1")
            if self.is_local and name[-2:-1] == ";"
            else None
        )

    def __repr__(self) -> str:
        return f"Channel({self.name!r}, {self.uniqueid!r}, linkedid={self.linkedid!r})"


@dataclass(slots=True, eq=False)
class Bridge:
    uniqueid: str
    members: dict[str, None] = field(default_factory=dict)  # uniqueids, insertion ordered
    seen: dict[str, None] = field(default_factory=dict)  # every uniqueid that was ever in it
    calls: dict[str, None] = field(default_factory=dict)  # calls whose connection runs through


@dataclass(slots=True, eq=False)
class Call:
    call_id: str
    caller_uid: str
    caller_channel: str
    start_ts: float | None
    caller: str | None = None
    caller_name: str | None = None
    caller_frozen: bool = False
    offered: bool = False
    offered_ts: float | None = None
    answered_ts: float | None = None
    end_ts: float | None = None
    queues: list[str] = field(default_factory=list)
    agents: list[str] = field(default_factory=list)
    transfers: list[dict[str, Any]] = field(default_factory=list)
    hangup_by: str | None = None
    connected: bool = False
    live: set[str] = field(default_factory=set)  # uniqueids of live channels counting for it
    abandon_queue: str | None = None  # a QueueCallerAbandon not yet confirmed by a hang-up
    cause: str = ""
    resynced: bool = False
    via: set[str] = field(default_factory=set)  # bridges its caller's connection runs through
    hangup_forced: str | None = None  # e.g. "system" when a resync found the channels gone
    # Figures from the events' Timestamps: time bridged with agents, time waited in queues.
    talk_total: float = 0.0
    talk_since: float | None = None  # connected to some agent since
    talking: dict[str, float | None] = field(default_factory=dict)  # agent -> bridged since
    talk_legs: list[dict[str, Any]] = field(default_factory=list)  # {agent, queue, talk_s}
    queue_legs: list[dict[str, Any]] = field(default_factory=list)  # {queue, wait_s, result}
    originated: bool = False  # its first channel was rung by an Originate (no calling channel)
    outbound: Outbound | None = None  # set once that channel dials out: click-to-dial
    midway: bool = False  # first seen after it started (no Newchannel): its start is unknown
