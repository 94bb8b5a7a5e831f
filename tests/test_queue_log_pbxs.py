"""Two PBXs (``[[pbx]]``), each with its own queue_log file: the daemon is stopped, a call comes
and goes on each PBX, the daemon starts again. Each PBX's calls are recovered from its own
queue_log and recorded under that PBX (``<pbx id>:<linkedid>``), never under the other, even
when both PBXs numbered their calls alike."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from crm_core.models import Interaction
from crm_core.store import CrmStore
from crm_core.testing import empty_store
from cti.config import parse_config
from cti.daemon import Daemon, build_daemon
from cti.sim.queue_log import QueueLogFile
from cti.sim.scenarios import AgentBehaviour, CallerProfile, Dialplan
from cti.sim.simulator import AgentSpec, SimSettings, Simulator
from cti.stats.store import legs_since

KNOWN = "+442071234567"
PATIENT = CallerProfile("known", (KNOWN,), patience_s=(600.0, 600.0))
IMPATIENT = CallerProfile("known", (KNOWN,), patience_s=(4.0, 4.0))


def simulator(queue_log: Path) -> Simulator:
    return Simulator(
        SimSettings(
            dialplan=Dialplan(agi_host=None),
            # Rings 6 s: the impatient caller (4 s) gives up while the phone rings.
            behaviour=AgentBehaviour(
                ring_s=(6.0, 6.0), miss_rate=0.0, talk_s=(8.0, 10.0), endings={"caller": 1.0}
            ),
            agents=[AgentSpec("Agent 1001", "Local/1001@agents/n", ("tier1",))],
            time_scale=0.25,
            seed=11,  # both PBXs: the same ids for the same calls
            queue_log=QueueLogFile(queue_log),
        )
    )


async def until(cond: Callable[[], Any], within_s: float = 20.0) -> None:
    async with asyncio.timeout(within_s):
        while not await cond():  # noqa: ASYNC110 - the daemon writes in the background
            await asyncio.sleep(0.1)


async def rows_of(store: CrmStore) -> dict[str, dict[str, Any]]:
    async with store.engine.connect() as conn:
        result = await conn.execute(select(Interaction.__table__))
        return {r["call_id"]: dict(r) for r in result.mappings()}


async def live_offered(daemon: Daemon, calls: int) -> bool:
    assert daemon.parts.supervision is not None
    live = daemon.parts.supervision.live_stats()
    return bool(live["queue"].get("tier1", {}).get("offered") == calls)


async def test_each_pbxs_calls_nobody_saw_come_from_its_own_queue_log_under_its_own_id(
    tmp_path: Path,
) -> None:
    store = await empty_store(f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}")
    paris, lyon = simulator(tmp_path / "paris.log"), simulator(tmp_path / "lyon.log")
    await paris.start()
    await lyon.start()
    config = parse_config(
        '[ami]\nsecret = "cti-secret"\nreconnect_initial_s = 0.05\nheartbeat_s = 0.2\n'
        f'[[pbx]]\nid = "paris"\nport = {paris.ami_port}\n'
        f'queue_log = {{ file = "{tmp_path / "paris.log"}" }}\n'
        f'[[pbx]]\nid = "lyon"\nport = {lyon.ami_port}\n'
        f'[pbx.queue_log]\nfile = "{tmp_path / "lyon.log"}"\n',
        env={},
    )

    async def started() -> Daemon:
        daemon = await build_daemon(config, store=store, http_port=0, agi_port=0)
        await daemon.start()
        both = (daemon, *daemon.others)

        async def resynced() -> bool:
            return all(d.resyncs >= 1 for d in both)

        await until(resynced)
        return daemon

    daemon = await started()
    try:
        await daemon.stop()  # nobody listens to either PBX from here
        answered, abandoned = await asyncio.gather(
            paris.place_call(PATIENT, KNOWN), lyon.place_call(IMPATIENT, KNOWN)
        )
        assert answered.agents == ["Agent 1001"] and not abandoned.agents
        assert not await rows_of(store)
        daemon = await started()
        want = {f"paris:{answered.call_id}", f"lyon:{abandoned.call_id}"}

        async def recorded() -> bool:
            return want <= set(await rows_of(store))

        await until(recorded)
        await until(lambda: live_offered(daemon, 2))  # both PBXs' calls, in today's figures
        await asyncio.sleep(1.0)  # anything written under the other PBX would be by now
        legs = {(leg.call_id, leg.outcome) for leg in await legs_since(store.engine, 0.0)}
        assert legs == {
            (f"paris:{answered.call_id}", "answered"),
            (f"lyon:{abandoned.call_id}", "abandoned"),
        }
        await daemon.stop()
        daemon = await started()  # each PBX's daemon counts its own PBX's legs of today, once
        await until(lambda: live_offered(daemon, 2))
        await asyncio.sleep(0.5)
        assert await live_offered(daemon, 2)
    finally:
        await daemon.stop()
        await paris.stop()
        await lyon.stop()
    rows = await rows_of(store)
    await store.close()
    assert set(rows) == want  # each call once, under its own PBX; nothing unqualified
    a, b = rows[f"paris:{answered.call_id}"], rows[f"lyon:{abandoned.call_id}"]
    assert (a["outcome"], a["agents"]) == ("answered", ["Agent 1001"])
    assert (b["outcome"], b["agents"]) == ("abandoned", [])
    for row, pbx in ((a, "paris"), (b, "lyon")):
        assert row["extra"]["source"] == "queue_log"
        assert row["extra"]["queue_log"]["pbx"] == pbx
        assert all(c.startswith(f"{pbx}:") for c in row["extra"]["queue_log"]["callids"])
        assert all(leg["uniqueid"].startswith(f"{pbx}:") for leg in row["extra"]["queue_legs"])
