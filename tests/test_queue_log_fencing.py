"""The queue_log backfill of an instance that loses its PBX's lease mid-way: what it checked
while it held the lease is written; what it still submits after another instance took the
PBX over is refused by the database's fence, counted and logged, never written. In-process,
on the real Redis of the machine, against the PBX simulator."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from sqlalchemy import select
from structlog.testing import capture_logs

from crm_core.fence import claim
from crm_core.models import Interaction
from crm_core.store import CrmStore
from crm_core.testing import empty_store
from cti.cluster.lease import PbxLease
from cti.config import Config
from cti.daemon import build_daemon
from cti.sim.scenarios import Dialplan
from cti.sim.simulator import AgentSpec, SimSettings, Simulator

REDIS_URL = "redis://127.0.0.1:6379/0"
PBX = "default"


async def until(cond: Callable[[], Any], within_s: float = 20.0) -> None:
    async with asyncio.timeout(within_s):
        while not await cond():  # noqa: ASYNC110 - the daemon's own tasks change it
            await asyncio.sleep(0.05)


async def call_ids(store: CrmStore) -> set[str]:
    async with store.engine.connect() as conn:
        return set((await conn.execute(select(Interaction.call_id))).scalars())


def queue_call(callid: str, t0: int, *, finished: bool) -> list[str]:
    """An answered queue call as app_queue logs it (``cti.queuelog.model``)."""
    lines = [
        f"{t0}|{callid}|tier1|NONE|ENTERQUEUE||+442071234567|1",
        f"{t0 + 2}|{callid}|tier1|Agent 1001|CONNECT|2|{callid}9|1",
    ]
    return lines + ([completed(callid, t0)] if finished else [])


def completed(callid: str, t0: int) -> str:
    return f"{t0 + 9}|{callid}|tier1|Agent 1001|COMPLETECALLER|2|7|1"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_backfill_that_outlives_its_lease_writes_nothing_after_the_takeover(
    db_url: str, redis_prefix: tuple[aioredis.Redis, str], tmp_path: Path
) -> None:
    redis, prefix = redis_prefix
    store = await empty_store(db_url)
    sim = Simulator(
        SimSettings(
            dialplan=Dialplan(agi_host=None),
            agents=[AgentSpec("Agent 1001", "Local/1001@agents/n", ("tier1",))],
            time_scale=0.25,
            seed=5,
        )
    )
    await sim.start()
    # Two calls nobody saw: one over, one still talking when the backfill begins.
    t0 = int(time.time()) - 60
    queue_log = tmp_path / "queue_log"
    before, after = "1790000000.10", "1790000000.20"
    lines = [*queue_call(before, t0, finished=True), *queue_call(after, t0 + 1, finished=False)]
    queue_log.write_text("\n".join(lines) + "\n")
    config = Config.model_validate(
        {
            "ami": {"port": sim.ami_port, "secret": "cti-secret", "heartbeat_s": 0.2},
            "agi": {"host": "127.0.0.1", "port": 0},
            "http": {"host": "127.0.0.1", "port": 0},
            "database": {"url": db_url},
            "cluster": {
                "redis_url": REDIS_URL,
                "instance_id": "old",
                "key_prefix": prefix,
                "lease_ttl_s": 3.0,  # renewed every 1 s: a loaded machine keeps it
            },
            "queue_log": {"file": str(queue_log)},
        }
    )
    daemon = await build_daemon(config, store=store)
    try:
        await daemon.start()
        cluster, filler = daemon.parts.cluster, daemon.parts.queue_log
        assert cluster is not None and filler is not None

        async def ingesting() -> bool:
            return cluster.ingests(PBX) and daemon.resyncs >= 1

        await until(ingesting)
        filler.settle_s, filler.poll_s = 0.5, 0.05
        backfill = asyncio.create_task(filler.run(t0 - 10, time.time()))

        async def written() -> bool:
            return before in await call_ids(store)

        await until(written)  # checked under the lease: written

        # Another instance takes the PBX over: the lease with the next token, which it
        # claims in the database before it writes anything.
        await redis.delete(f"{prefix}:lease:{PBX}")
        grant = await PbxLease(redis, prefix, PBX, "new", ttl_s=30.0).try_acquire()
        assert grant is not None
        async with store.engine.begin() as conn:
            await claim(conn, PBX, grant.token)

        async def lost() -> bool:
            return cluster.role.lost.is_set()

        await until(lost)
        with capture_logs() as logs:
            with queue_log.open("a") as f:
                f.write(completed(after, t0 + 1) + "\n")  # the second call ends now
            report = await backfill
            assert await daemon.parts.recorder.flush(10.0)
        assert report.recorded == [before, after]  # both submitted by the old instance...
        assert await call_ids(store) == {before}  # ...the one after the takeover refused
        assert daemon.parts.recorder.fenced == 1
        fenced = [e for e in logs if e["event"] == "interaction.fenced"]
        assert [(e["call_id"], e["pbx"]) for e in fenced] == [(after, PBX)]
    finally:
        await daemon.stop()
        await sim.stop()
        await store.close()
