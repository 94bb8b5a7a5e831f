"""What ``AmiClient.events()`` yields: raw AMI events (``dict[str, str]``) and these markers.

Order on every (re)connect: ``Connected``, then one ``Resynced`` with the list items of
CoreShowChannels, QueueStatus, BridgeList and BridgeInfo (per bridge) as Asterisk answered
them (once Asterisk has fully booted: a list refused because its module is not loaded yet
is asked again, with backoff), then the events that arrived meanwhile, in order, then live
events; when the link goes, ``Disconnected(reason, at)``. A consumer calls
``tracker.resync(items)`` on ``Resynced``.
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
    """The AMI link is gone (EOF, restart, dead link, ...); reconnecting follows.

    ``at`` is when the loss was seen, on the client's monotonic clock (``None`` if unknown):
    the calls that end unseen while the link is down last at least until then."""

    reason: str
    at: float | None = None


@dataclass(frozen=True, slots=True)
class Resynced:
    """The state of the PBX right after login, as list items (each an AMI event dict).

    Items: ``CoreShowChannel`` (one per channel), ``QueueParams``/``QueueMember``/``QueueEntry``
    (per queue), ``BridgeListItem`` (per bridge), ``BridgeInfoChannel`` (per channel in a bridge,
    with ``BridgeUniqueid`` added), ``Status`` with the routing variables (``Variable:
    CTI_QUEUE=tier2`` lines) of each channel in a queue. A list Asterisk refused is missing
    and named in ``refused`` (action -> why, e.g. ``Permission denied``); ``pbx_time`` is
    Asterisk's clock when the lists were taken (its Ping ``Timestamp``), for the ``Duration``
    and ``Wait`` the items give in seconds.
    """

    items: list[dict[str, str]] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    pbx_time: float | None = None

    @property
    def complete(self) -> bool:
        """Every list came: the absence of a channel proves it is gone."""
        return not self.refused


StreamItem = dict[str, str] | Connected | Disconnected | Resynced
