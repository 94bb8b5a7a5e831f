"""The tracker's state: channels, bridges and calls as Asterisk reports them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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


@dataclass(slots=True, eq=False)
class Channel:
    name: str
    uniqueid: str
    linkedid: str
    caller_num: str = ""
    caller_name: str = ""
    state: str = ""
    bridge: str | None = None
    member: str | None = None  # queue member name when a queue rang this channel
    interface: str | None = None
    queue: str | None = None  # the queue whose member this channel is
    calls: list[str] = field(default_factory=list)  # call ids this channel counts towards
    dialed: list[str] = field(default_factory=list)  # uniqueids it dialled, in order
    queues_pending: list[str] = field(default_factory=list)  # queues joined, not yet credited
    answered_dial: bool = False  # a Dial from this channel was answered (queue join → answer)
    cause: str = ""
    hangup_requested: bool = False

    @property
    def is_local(self) -> bool:
        return self.name.startswith("Local/")

    @property
    def partner_name(self) -> str | None:
        """The other end of a Local channel pipe (``;1`` <-> ``;2``)."""
        if self.is_local and self.name[-2:-1] == ";":
            return self.name[:-1] + ("2" if self.name[-1] == "1" else "1")
        return None


@dataclass(slots=True, eq=False)
class Bridge:
    uniqueid: str
    members: dict[str, None] = field(default_factory=dict)  # uniqueids, insertion ordered
    seen: dict[str, None] = field(default_factory=dict)  # every uniqueid that was ever in it


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
    ringing: dict[str, dict[str, Any]] = field(default_factory=dict)  # dest uid -> ringing data
    blind_pending: dict[str, dict[str, Any]] = field(default_factory=dict)  # uid -> transfer
    abandon_queue: str | None = None  # a QueueCallerAbandon not yet confirmed by a hang-up
    cause: str = ""
    resynced: bool = False
    hangup_forced: str | None = None  # e.g. "system" when a resync found the channels gone
