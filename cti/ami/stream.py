"""What ``AmiClient.events()`` yields: raw AMI events (``dict[str, str]``) and these markers.

Order on every (re)connect: ``Connected``, then one ``Resynced`` with the list items of
CoreShowChannels, QueueStatus, BridgeList and BridgeInfo (per bridge) as Asterisk answered
them, then the events that arrived meanwhile, in order, then live events; when the link
goes, ``Disconnected(reason)``. A consumer calls ``tracker.resync(items)`` on ``Resynced``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Connected:
    """Logged in to Asterisk (``banner`` is e.g. ``Asterisk Call Manager/11.0.0``)."""

    host: str
    port: int
    banner: str


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The AMI link is gone (EOF, restart, dead link, ...); reconnecting follows."""

    reason: str


@dataclass(frozen=True, slots=True)
class Resynced:
    """The state of the PBX right after login, as list items (each an AMI event dict).

    Items: ``CoreShowChannel`` (one per channel), ``QueueParams``/``QueueMember``/``QueueEntry``
    (per queue), ``BridgeListItem`` (per bridge), ``BridgeInfoChannel`` (per channel in a bridge,
    with ``BridgeUniqueid`` added). A list the user may not read is missing (logged as an error).
    """

    items: list[dict[str, str]] = field(default_factory=list)


StreamItem = dict[str, str] | Connected | Disconnected | Resynced
