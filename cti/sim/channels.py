"""Channels and bridges as Asterisk 22 names and describes them in AMI events.

The header blocks and their order are copied from recorded Asterisk 22.10.1 traffic
(``../shared/ami-traces/asterisk22``): a channel block is ``Channel, ChannelState,
ChannelStateDesc, CallerIDNum, CallerIDName, ConnectedLineNum, ConnectedLineName, Language,
AccountCode, Context, Exten, Priority, Uniqueid, Linkedid``, with a prefix (``Dest``,
``Transferer``, ``LocalOne``...) where an event names several channels.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from cti.sim.wire import Headers

UNKNOWN = "<unknown>"
STATE_DESC = {0: "Down", 4: "Ring", 5: "Ringing", 6: "Up"}
DOWN, RING, RINGING, UP = 0, 4, 5, 6


@dataclass(eq=False)  # a channel is itself: compared by identity
class Channel:
    name: str
    uniqueid: str
    linkedid: str
    context: str
    exten: str
    priority: int = 1
    state: int = DOWN
    caller_num: str = UNKNOWN
    caller_name: str = UNKNOWN
    connected_num: str = UNKNOWN
    connected_name: str = UNKNOWN
    variables: dict[str, str] = field(default_factory=dict)
    # The dialplan application it runs, as CoreShowChannels lists it (``Queue`` on the
    # caller's channel, ``AppQueue`` on a queue's member leg, ``Wait`` on simulated phones).
    application: str = ""
    app_data: str = ""
    bridge: Bridge | None = None
    created: float = field(default_factory=time.time)
    # The call (or other owner) that reacts to AMI actions on this channel.
    owner: object | None = None

    def headers(self, prefix: str = "") -> Headers:
        p = prefix
        return [
            (f"{p}Channel", self.name),
            (f"{p}ChannelState", str(self.state)),
            (f"{p}ChannelStateDesc", STATE_DESC[self.state]),
            (f"{p}CallerIDNum", self.caller_num),
            (f"{p}CallerIDName", self.caller_name),
            (f"{p}ConnectedLineNum", self.connected_num),
            (f"{p}ConnectedLineName", self.connected_name),
            (f"{p}Language", "en"),
            (f"{p}AccountCode", ""),
            (f"{p}Context", self.context),
            (f"{p}Exten", self.exten),
            (f"{p}Priority", str(self.priority)),
            (f"{p}Uniqueid", self.uniqueid),
            (f"{p}Linkedid", self.linkedid),
        ]


@dataclass(eq=False)
class Bridge:
    uniqueid: str
    channels: list[Channel] = field(default_factory=list)

    def headers(self, prefix: str = "") -> Headers:
        p = prefix
        return [
            (f"{p}BridgeUniqueid", self.uniqueid),
            (f"{p}BridgeType", "basic"),
            (f"{p}BridgeTechnology", "simple_bridge"),
            (f"{p}BridgeCreator", UNKNOWN),
            (f"{p}BridgeName", UNKNOWN),
            (f"{p}BridgeNumChannels", str(len(self.channels))),
            (f"{p}BridgeVideoSourceMode", "none"),
        ]


class Ids:
    """Asterisk's identifiers: ``<epoch>.<n>`` uniqueids, 8-hex Local channel suffixes."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._unique = itertools.count()
        self._local = itertools.count()

    def uniqueid(self) -> str:
        return f"{int(self._clock())}.{next(self._unique)}"

    def local_suffix(self) -> str:
        return f"{next(self._local):08x}"

    @staticmethod
    def bridge_id() -> str:
        return str(uuid.uuid4())


def local_pair(
    ids: Ids, exten: str, context: str, linkedid: str | None = None
) -> tuple[Channel, Channel]:
    """A Local channel pair ``Local/<exten>@<context>-XXXXXXXX;1`` / ``;2``.

    ``;1`` starts the call when ``linkedid`` is None (its Uniqueid is the Linkedid).
    """
    base = f"Local/{exten}@{context}-{ids.local_suffix()}"
    one_id = ids.uniqueid()
    linked = linkedid or one_id
    one = Channel(f"{base};1", one_id, linked, context, exten, state=DOWN)
    two = Channel(f"{base};2", ids.uniqueid(), linked, context, exten, state=RING)
    return one, two


def device_of(channel_name: str) -> str:
    """``Local/1001@agents-00000001;1`` -> ``Local/1001@agents`` (the DeviceStateChange name)."""
    return channel_name.rsplit("-", 1)[0]
