"""One daemon, two PBXs (``[[pbx]]``), no cluster: each PBX has its own AMI link and its
calls are keyed by PBX, so two PBXs that number their calls alike are recorded apart."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import text

from crm_core.testing import empty_store
from cti.config import parse_config
from cti.daemon import build_daemon
from cti.sim.scenarios import AgentBehaviour, Dialplan
from cti.sim.simulator import SimSettings, Simulator, generated_agents


def simulator() -> Simulator:
    return Simulator(
        SimSettings(
            dialplan=Dialplan(agi_host=None),
            behaviour=AgentBehaviour(ring_s=(0.2, 0.4), miss_rate=0.0, talk_s=(1.0, 2.0)),
            time_scale=0.25,
            seed=3,  # both PBXs: the same calls with the same ids
            agents=generated_agents(4, ["tier1", "tier2", "tier3"]),
        )
    )


async def test_two_pbxs_in_one_daemon_are_each_ingested_and_their_calls_kept_apart(
    tmp_path: Path,
) -> None:
    store = await empty_store(f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}")
    paris, lyon = simulator(), simulator()
    await paris.start()
    await lyon.start()
    config = parse_config(
        '[ami]\nsecret = "cti-secret"\nreconnect_initial_s = 0.1\n'
        f'[[pbx]]\nid = "paris"\nport = {paris.ami_port}\n'
        f'[[pbx]]\nid = "lyon"\nport = {lyon.ami_port}\n'
    )
    daemon = await build_daemon(config, store=store, http_port=0, agi_port=0)
    try:
        await daemon.start()
        async with asyncio.timeout(20):
            while paris.ami.logins < 1 or lyon.ami.logins < 1:  # noqa: ASYNC110 - other servers
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # logged in and resynced
        await asyncio.gather(paris.generate(4.0, 2.0), lyon.generate(4.0, 2.0))
        await asyncio.gather(paris.drain(30), lyon.drain(30))
        async with asyncio.timeout(20):
            while daemon.parts.recorder.written < len(paris.summaries) + len(lyon.summaries):  # noqa: ASYNC110
                await asyncio.sleep(0.1)
    finally:
        await daemon.stop()
        await paris.stop()
        await lyon.stop()
    async with store.engine.connect() as conn:
        rows = dict((await conn.execute(text("SELECT call_id, outcome FROM interactions"))).all())
        live = (await conn.execute(text("SELECT DISTINCT pbx_id FROM live_pbx"))).scalars()
        pbxs = sorted(live)
    await store.close()
    assert pbxs == ["lyon", "paris"]  # each PBX's link state under its own id
    shared = {c.call_id for c in paris.summaries} & {c.call_id for c in lyon.summaries}
    assert shared  # the two PBXs numbered calls alike
    for pbx, sim in (("paris", paris), ("lyon", lyon)):
        for call in sim.summaries:
            want = "answered" if call.agents else "abandoned"
            assert rows.get(f"{pbx}:{call.call_id}") == want, (pbx, call.call_id)
    assert len(rows) == len(paris.summaries) + len(lyon.summaries)
