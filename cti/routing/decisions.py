"""The decision log: why each call went where it went, for the screen-pop and the call record."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from cti.routing.router import RouteDecision


@dataclass(frozen=True)
class LoggedDecision:
    uniqueid: str
    channel: str | None
    decision: RouteDecision
    at: datetime


class DecisionLog:
    """The last ``capacity`` routing decisions, by AGI ``uniqueid`` and by channel name.

    Bounded so that a daemon running for months does not grow: the oldest entry goes first."""

    def __init__(self, capacity: int = 10_000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._capacity = capacity
        self._by_uniqueid: OrderedDict[str, LoggedDecision] = OrderedDict()
        self._by_channel: dict[str, str] = {}

    def record(
        self, uniqueid: str, channel: str | None, decision: RouteDecision, at: datetime
    ) -> None:
        old = self._by_uniqueid.pop(uniqueid, None)
        if old is not None and old.channel is not None:
            self._by_channel.pop(old.channel, None)
        self._by_uniqueid[uniqueid] = LoggedDecision(uniqueid, channel, decision, at)
        if channel:
            self._by_channel[channel] = uniqueid
        while len(self._by_uniqueid) > self._capacity:
            _, evicted = self._by_uniqueid.popitem(last=False)
            if evicted.channel and self._by_channel.get(evicted.channel) == evicted.uniqueid:
                del self._by_channel[evicted.channel]

    def get(self, uniqueid: str) -> RouteDecision | None:
        entry = self._by_uniqueid.get(uniqueid)
        return entry.decision if entry else None

    def entry(self, uniqueid: str) -> LoggedDecision | None:
        return self._by_uniqueid.get(uniqueid)

    def by_channel(self, channel: str) -> RouteDecision | None:
        uniqueid = self._by_channel.get(channel)
        return self.get(uniqueid) if uniqueid is not None else None

    def __len__(self) -> int:
        return len(self._by_uniqueid)
