"""Spreading several PBXs over the instances: a lease is taken only up to a fair share.

Each instance says it is alive in ``{prefix}:instances`` (a sorted set: member the instance,
score when its presence expires on Redis's clock, renewed every third of the lease TTL, so a
killed instance drops out within one TTL, as its leases do). Its fair share is
``ceil(PBXs / live instances)``. A PBX role of an instance tries for a free lease at once
while the instance holds fewer leases than its share; an instance at or over its share
tries only after the lease stayed free ``settle_s + held × ttl/4``. A killed instance's
presence expires with its leases, so the survivors' share grows as its PBXs come free and
they take them at once; the delayed rule is the safety net for a count that is off (an
instance present but not configured for that PBX, instances started far apart): a PBX is
never left without an ingester for long, and the least loaded instance gets it first. The
check and the acquisition are one step per instance (a lock), so its roles cannot all pass
the check together.

An instance waits ``[cluster] settle_s`` (at least one TTL) after it announced itself before
its first try, so instances started together see each other and split the PBXs rather than
the first taking them all.
There is no voluntary handover: an instance started later stays standby until a failure
(moving a PBX costs a resync and a gap in its events; a failure costs them anyway).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import structlog

log = structlog.get_logger(__name__)

_BEAT = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZADD', KEYS[1], ms + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 10)
return redis.call('ZCARD', KEYS[1])
"""


class PresenceRedis(Protocol):
    def eval(self, script: str, numkeys: int, *keys_and_args: Any) -> Awaitable[Any]: ...

    def zrem(self, name: str, *values: Any) -> Awaitable[Any]: ...


class Spread:
    """One instance's presence and its fair share of the PBX leases."""

    def __init__(
        self,
        redis: PresenceRedis,
        prefix: str,
        holder: str,
        *,
        pbxs: int,
        ttl_s: float,
        settle_s: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self._key = f"{prefix}:instances"
        self.holder = holder
        self.pbxs = pbxs
        self.ttl_s = ttl_s
        self.settle_s = settle_s
        self._monotonic = monotonic
        self.live = 1
        self.lock = asyncio.Lock()
        self._held: Callable[[], int] = lambda: 0
        self._task: asyncio.Task[None] | None = None
        self._joined: asyncio.Event | None = None

    def count_held(self, held: Callable[[], int]) -> None:
        """How many leases this instance holds now (its roles)."""
        self._held = held

    @property
    def held(self) -> int:
        return self._held()

    def share(self) -> int:
        return math.ceil(self.pbxs / max(1, self.live))

    def may_try(self, free_for_s: float) -> bool:
        """May a role of this instance try for a lease that has been free ``free_for_s``?"""
        held = self.held
        if held < self.share():
            return True
        return free_for_s >= max(self.settle_s, self.ttl_s) + held * self.ttl_s / 4

    async def joined(self) -> None:
        """Announce this instance (once; a background beat keeps it), then wait ``settle_s``
        (at least one TTL: a killed instance's presence is gone by then)."""
        if self._joined is None:
            self._joined = asyncio.Event()
            self._task = asyncio.create_task(self._beat_forever(), name="cluster-presence")
        await self._joined.wait()

    async def _beat(self) -> None:
        ttl_ms = max(1, int(self.ttl_s * 1000))
        self.live = int(await self._redis.eval(_BEAT, 1, self._key, self.holder, ttl_ms))

    async def _beat_forever(self) -> None:
        assert self._joined is not None
        started = self._monotonic()
        while True:
            try:
                await self._beat()
            except Exception as exc:  # Redis away: the leases cannot be had either
                log.warning("cluster.presence_failed", error=repr(exc))
            settle = max(self.settle_s, self.ttl_s)
            if not self._joined.is_set() and self._monotonic() - started >= settle:
                log.info("cluster.joined", holder=self.holder, live=self.live, share=self.share())
                self._joined.set()
            await asyncio.sleep(self.ttl_s / 3)

    async def leave(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
            await self._redis.zrem(self._key, self.holder)
