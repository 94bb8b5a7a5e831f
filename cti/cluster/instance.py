"""One instance among several: standby until it holds its PBX's lease, then the ingester.

``IngestRole.run()`` tries for the lease every quarter of its TTL. Granted, it logs
``cluster.ingest_started`` with the token, lets the daemon begin (read the message stream
up to now, take back the calls from the database, connect to AMI and resync from
Asterisk), then renews the lease every third of the TTL. A renewal refused, one that
could not be made within the TTL, or a call-state write the database refused
(``StaleFence``) means another instance may be ingesting now: the role logs
``cluster.lease_lost`` and returns, and the daemon stops at once, without writing anything
more (its memory of the calls is not to be trusted any longer); the service manager starts
it again, as a standby.

Each ingest is also appended to ``[cluster] ingest_log`` when set, one JSON line
(``{"pbx", "token", "instance", "at"}``) at most every quarter second while AMI events are
being ingested: the failover test checks from it that no two tokens ever ingested one PBX at
the same time.

With several PBXs (``[[pbx]]``) each PBX has its own role and lease, and the roles of one
instance share a ``Spread`` (``cti.cluster.spread``): they take leases up to the instance's
fair share, so the PBXs are spread over the live instances.

``build_cluster`` makes the parts from the config; the daemon (the composition root) calls it.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cti.cluster.fanout import RedisFanout
from cti.cluster.fencing import (
    Fence,
    FencedInteractions,
    FencedStore,
    FenceStamps,
    InteractionSink,
    StaleFence,
    claim,
    fence_guard,
)
from cti.cluster.lease import Grant, PbxLease
from cti.cluster.pbxs import pbx_of
from cti.cluster.relay import ActionRelay
from cti.cluster.spread import Spread
from cti.config import Config

log = structlog.get_logger(__name__)

# The exit status of an instance that lost its lease while ingesting.
EXIT_LEASE_LOST = 4


def default_instance_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class IngestRole:
    def __init__(
        self,
        lease: PbxLease,
        *,
        eligible: bool = True,
        ingest_log: Path | None = None,
        spread: Spread | None = None,
    ) -> None:
        self.lease = lease
        self._eligible = eligible
        self._spread = spread
        self._free_since: float | None = None
        self._ingest_log = ingest_log
        self.ingesting = asyncio.Event()
        self.lost = asyncio.Event()
        self.lost_reason = ""
        self._last_note = float("-inf")

    @property
    def token(self) -> int | None:
        """The fencing token while ingesting (None: standby, or the lease is gone)."""
        grant = self.lease.grant
        if grant is None or self.lost.is_set() or not self.lease.valid():
            return None
        return grant.token

    def stale(self, error: StaleFence) -> None:
        """The database refused a write of ours: a newer ingester wrote."""
        self._lose(str(error))

    def expired(self) -> None:
        """The lease ran out on our own clock before a renewal came back."""
        self._lose("the lease ran out before it was renewed")

    def _lose(self, reason: str) -> None:
        if not self.lost.is_set():
            self.lost_reason = reason
            self.lost.set()
            log.error(
                "cluster.lease_lost", pbx=self.lease.pbx_id, holder=self.lease.holder, reason=reason
            )

    async def run(self, begin: Callable[[int], Awaitable[None]]) -> None:
        """Standby, then ``begin(token)`` and ingest until the lease is lost (returns)."""
        if not self._eligible:
            log.info("cluster.standby_only", pbx=self.lease.pbx_id, holder=self.lease.holder)
            await asyncio.Event().wait()
        ttl = self.lease.ttl_s
        log.info("cluster.standby", pbx=self.lease.pbx_id, holder=self.lease.holder)
        if self._spread is not None:
            await self._spread.joined()
        while True:
            try:
                grant = await self._attempt()
            except Exception as exc:  # Redis away: a standby just tries again
                log.warning("cluster.lease_unavailable", error=repr(exc))
                grant = None
            if grant is not None:
                break
            await asyncio.sleep(max(0.05, ttl / 4))
        log.warning(
            "cluster.ingest_started",
            pbx=grant.pbx_id,
            token=grant.token,
            holder=self.lease.holder,
        )
        self._note()
        self._last_note = time.monotonic()
        renewer = asyncio.create_task(self._keep(), name="lease-renew")
        try:
            await begin(grant.token)
            self.ingesting.set()
            await self.lost.wait()
        finally:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)

    async def _attempt(self) -> Grant | None:
        """Try for the lease (with several PBXs, only as the fair share allows)."""
        spread = self._spread
        if spread is None:
            return await self.lease.try_acquire()
        if await self.lease.holder_now() is not None:
            self._free_since = None
            return None
        now = time.monotonic()
        if self._free_since is None:
            self._free_since = now
        async with spread.lock:
            if not spread.may_try(now - self._free_since):
                return None
            return await self.lease.try_acquire()

    @property
    def holding(self) -> bool:
        return self.lease.grant is not None and not self.lost.is_set()

    def note_ingest(self) -> None:
        """AMI events are being ingested now (the ingest log, at most every 0.25 s)."""
        now = time.monotonic()
        if now - self._last_note >= 0.25:
            self._last_note = now
            self._note()

    async def _keep(self) -> None:
        every = self.lease.ttl_s / 3
        while not self.lost.is_set():
            await asyncio.sleep(every)
            try:
                # A busy moment may slow a renewal: wait for it while the lease surely holds.
                async with asyncio.timeout(max(0.05, self.lease.remaining() - 0.05)):
                    ok = await self.lease.renew()
            except Exception as exc:
                log.warning("cluster.renew_failed", error=repr(exc))
                ok = self.lease.valid(margin_s=every)  # keep it while it is surely ours
                if not ok:
                    self._lose(f"could not renew the lease within its TTL: {exc!r}")
                continue
            if not ok:
                self._lose("the lease expired or was taken")

    def _note(self) -> None:
        if self._ingest_log is None or self.lease.grant is None:
            return
        line = {
            "pbx": self.lease.pbx_id,
            "token": self.lease.grant.token,
            "instance": self.lease.holder,
            "at": time.time(),
        }
        with self._ingest_log.open("a") as f:
            f.write(json.dumps(line) + "\n")


@dataclass
class ClusterParts:
    """What one instance of several is made of (``Parts.cluster``)."""

    redis: Any  # redis.asyncio.Redis
    fanout: RedisFanout
    role: IngestRole
    engine: AsyncEngine | None  # the database the fencing token is claimed in
    stamps: FenceStamps = field(default_factory=FenceStamps)  # token of each call's record
    spread: Spread | None = None  # several PBXs: the fair share of this instance
    roles: dict[str, IngestRole] = field(default_factory=dict)  # PBX -> role, shared by PBXs
    owns_redis: bool = True  # another PBX's parts close the shared client
    relay: ActionRelay | None = None  # actions for a PBX another instance ingests

    def ingests(self, pbx_id: str) -> bool:
        """Does this instance ingest the PBX now (holds its lease)?"""
        role = self.roles.get(pbx_id)
        return role is not None and role.token is not None

    def guard(self) -> Callable[[AsyncConnection, str], Awaitable[None]]:
        """``SqlCallState(guard=...)``: every call-state write carries the current token."""
        return fence_guard(lambda: self.role.token, self.role.stale)

    def stamping(self, sink: InteractionSink) -> InteractionSink:
        """``LiveCalls(recorder=...)``: each record carries the token it was made under."""
        roles, own = self.roles, self.role

        def current(call_id: str) -> Fence:
            role = roles.get(pbx_of(call_id) or "", own)  # several PBXs: the call's own
            return Fence(role.lease.pbx_id, role.token or 0)

        return self.stamps.stamping(sink, current)

    def fenced(self, store: FencedStore) -> FencedInteractions:
        """The recorder's store: a record made under a stale token is refused, not written;
        the lease lost is that of the record's PBX (the recorder is every PBX's)."""
        roles, own = self.roles, self.role

        def stale(error: StaleFence) -> None:
            roles.get(error.pbx_id, own).stale(error)

        return FencedInteractions(store, self.stamps, stale)

    async def claim(self, token: int) -> None:
        """Tell the database the new token before anything else is written."""
        if self.engine is None:
            return
        try:
            async with self.engine.begin() as conn:
                await claim(conn, self.role.lease.pbx_id, token)
        except StaleFence as error:
            self.role.stale(error)
            raise

    def ingesting(self, items: Iterable[Any]) -> bool:
        """May this batch of AMI events be ingested (the lease still ours)?"""
        if self.role.token is None:
            if self.role.lease.grant is not None:
                self.role.expired()
            return False
        self.role.note_ingest()
        return True

    async def close(self) -> None:
        try:
            async with asyncio.timeout(2.0):
                if self.role.lease.grant is not None and not self.role.lost.is_set():
                    await self.role.lease.release()
        except Exception as exc:
            log.warning("cluster.release_failed", error=repr(exc))
        if not self.owns_redis:
            return
        if self.relay is not None:
            await self.relay.stop()
        if self.spread is not None:
            try:
                async with asyncio.timeout(2.0):
                    await self.spread.leave()
            except Exception as exc:
                log.warning("cluster.leave_failed", error=repr(exc))
        await self.redis.aclose()


def build_cluster(
    config: Config, engine: AsyncEngine | None, *, shared: ClusterParts | None = None
) -> ClusterParts:
    """The cluster parts of one instance for the PBX of ``config.ami`` (``redis_url`` set);
    ``shared``: another PBX's parts of this instance (``[[pbx]]``), whose Redis client,
    fan-out, spread and fence stamps are shared."""
    cluster = config.cluster
    pbx_id = config.ami.pbx_id
    holder = cluster.instance_id or default_instance_id()
    if shared is None:
        import redis.asyncio as aioredis

        client: Any = aioredis.from_url(cluster.redis_url)
        fanout = RedisFanout(
            client, cluster.key_prefix, maxlen=cluster.stream_maxlen, holder=holder
        )
        stamps, roles = FenceStamps(), {}
        relay: ActionRelay | None = ActionRelay(client, cluster.key_prefix, holder)
        spread = None
        if config.pbx:
            spread = Spread(
                client,
                cluster.key_prefix,
                holder,
                pbxs=len(config.pbx),
                ttl_s=cluster.lease_ttl_s,
                settle_s=cluster.settle_s,
            )
    else:
        client, fanout, stamps = shared.redis, shared.fanout, shared.stamps
        spread, roles, relay = shared.spread, shared.roles, shared.relay
    lease = PbxLease(client, cluster.key_prefix, pbx_id, holder, cluster.lease_ttl_s)
    eligible = config.ami.enabled and (not cluster.pbxs or pbx_id in cluster.pbxs)
    ingest_log = Path(cluster.ingest_log).expanduser() if cluster.ingest_log else None
    role = IngestRole(lease, eligible=eligible, ingest_log=ingest_log, spread=spread)
    roles[pbx_id] = role
    if spread is not None:
        spread.count_held(lambda: sum(1 for r in roles.values() if r.holding))
    return ClusterParts(
        redis=client,
        fanout=fanout,
        role=role,
        engine=engine,
        stamps=stamps,
        spread=spread,
        roles=roles,
        owns_redis=shared is None,
        relay=relay,
    )
