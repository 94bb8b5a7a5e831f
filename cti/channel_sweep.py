"""Channels whose Hangup never came: asked of Asterisk now and then, and expired.

A lost event (a PBX restarted between two reads, a Hangup the AMI filter or a bug ate) would
leave a channel, and its call, in the tracker until the next reconnect: the call never ends,
is never recorded, and its context (caller ID and all) stays in memory. Every ``interval_s``
the daemon asks ``CoreShowChannels``; a channel the tracker has that Asterisk did not list in
two consecutive answers (so not one whose Hangup is merely in flight) is expired in the
tracker (``CallTracker.expire``, as a resync finding it gone would: ``hangup_by: "system"``);
the tracker stays pure, the daemon drives it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

import structlog

from cti.tracker.events import CallEvent

log = structlog.get_logger(__name__)


@runtime_checkable
class ChannelLister(Protocol):
    async def send_list_action(
        self,
        fields: Mapping[str, str],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - AmiClient's own signature
    ) -> tuple[Any, list[dict[str, str]]]: ...


class TrackedChannel(Protocol):
    name: str
    linkedid: str


@runtime_checkable
class ChannelTracker(Protocol):
    @property
    def channels(self) -> Mapping[str, TrackedChannel]: ...

    def expire(self, uniqueids: Collection[str]) -> list[CallEvent]: ...


class ChannelSweep:
    def __init__(self, interval_s: float = 180.0, *, list_timeout_s: float = 30.0) -> None:
        self.interval_s = interval_s
        self._list_timeout_s = list_timeout_s
        self._missing: set[str] = set()  # absent from the last answer
        self.expired = 0  # channels expired so far

    def vanished(self, known: Iterable[str], listed: Iterable[str]) -> set[str]:
        """Of the channels known before the question, those absent from two answers in a row."""
        missing = set(known).difference(listed)
        twice = missing & self._missing
        self._missing = missing - twice
        return twice

    async def check(
        self,
        ami: ChannelLister,
        tracker: ChannelTracker,
        handle: Callable[[CallEvent], Awaitable[None]],
    ) -> int:
        """Ask once; expire what must be; how many channels were expired."""
        known = list(tracker.channels)
        _, items = await ami.send_list_action(
            {"Action": "CoreShowChannels"}, timeout=self._list_timeout_s
        )
        listed = {i.get("Uniqueid", "") for i in items if i.get("Event") == "CoreShowChannel"}
        gone = self.vanished(known, listed)
        gone &= set(tracker.channels)  # not those whose Hangup arrived meanwhile
        count = len(gone)
        if gone:
            for event in tracker.expire(gone):
                await handle(event)
        if count:
            self.expired += count
            log.warning("ami.channels_expired", count=count, reason="Asterisk no longer lists them")
        return count

    async def run(
        self,
        ami: ChannelLister,
        tracker: ChannelTracker,
        handle: Callable[[CallEvent], Awaitable[None]],
        connected: Callable[[], bool],
    ) -> None:
        """Check every ``interval_s`` while connected, until cancelled."""
        while True:
            await asyncio.sleep(self.interval_s)
            if not connected():
                self._missing.clear()  # the resync after the reconnect reconciles instead
                continue
            try:
                await self.check(ami, tracker, handle)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # an AMI hiccup: try again next time
                log.warning("ami.channel_check_failed", error=repr(exc))
