"""The demo's parts in one process: the daemon drives the simulated PBX back over AMI.

A supervisor escalates a waiting caller through the HTTP API; the daemon sets CTI_PRIORITY
and Redirects the caller, and the simulator moves it into the tier3 queue with the raised
priority, exactly as ``[transfer]`` in ``docker/asterisk/extensions.conf`` would.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from crm_core.seed import seed
from crm_core.store import CrmStore
from cti.commands.demo import DEMO_CONFIG
from cti.config import Config, load_config
from cti.daemon import Daemon, build_daemon
from cti.sim.scenarios import AgentBehaviour, CallerProfile
from cti.sim.simulator import Simulator, settings_from_config

KNOWN = CallerProfile("known", ("+442071234567",), patience_s=(600.0, 600.0))
SUPERVISOR = {"Authorization": "Bearer demo-supervisor"}


@dataclass
class Demo:
    sim: Simulator
    daemon: Daemon
    config: Config
    url: str


async def _until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    async with asyncio.timeout(seconds):
        while True:
            if condition():
                return
            await asyncio.sleep(0.02)


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[Demo]:
    config = load_config(DEMO_CONFIG, env={})
    store = await CrmStore.open(f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}")
    await seed(store, 0, progress=False)
    # Nobody answers: callers stay in their queue until the test moves them.
    settings = settings_from_config(config, time_scale=0.05, seed=3)
    settings.behaviour = AgentBehaviour(miss_rate=1.0)
    sim = Simulator(settings)
    await sim.start()
    ami = config.ami.model_copy(update={"port": sim.ami_port})
    daemon = await build_daemon(
        config.model_copy(update={"ami": ami}), store=store, http_port=0, agi_port=0
    )
    await daemon.start()
    settings.dialplan = replace(settings.dialplan, agi_port=daemon.agi_port or 0)
    try:
        await _until(lambda: daemon.resyncs >= 1)
        yield Demo(sim, daemon, config, f"http://127.0.0.1:{daemon.http_port}")
    finally:
        await daemon.stop()
        await sim.stop()
        await store.close()


async def _waiting_call(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            async with http.get(f"{url}/api/calls", headers=SUPERVISOR) as resp:
                calls = (await resp.json())["calls"]
            ready = [c for c in calls if c.get("caller_channel") and c.get("queue") == "tier1"]
            if ready:
                return ready[0]
            await asyncio.sleep(0.05)


async def test_a_supervisor_escalation_moves_the_simulated_caller_to_tier3_with_priority(
    demo: Demo,
) -> None:
    call = demo.sim.place_call(KNOWN, KNOWN.numbers[0])
    async with aiohttp.ClientSession() as http:
        waiting = await _waiting_call(http, demo.url)
        assert waiting["caller"] == KNOWN.numbers[0]
        body = {"tier": "tier3", "reason": "line fault", "note": "checked the router"}
        async with http.post(
            f"{demo.url}/api/calls/{waiting['call_id']}/escalate", json=body, headers=SUPERVISOR
        ) as resp:
            answer = await resp.json()
            assert resp.status == 200, answer
        assert answer["action"] == "Redirect"
        tier3 = demo.sim.pbx.queues["tier3"]
        await _until(lambda: bool(tier3.entries))
        entry = tier3.entries[0]
        tier = demo.config.tiers["tier3"]
        assert entry.priority == tier.priority + tier.escalation_boost
        assert entry.call.trunk.variables["CTI_ESCALATION_REASON"] == "line fault"
        assert not demo.sim.pbx.queues["tier1"].entries
        async with asyncio.timeout(10):
            while True:
                async with http.get(
                    f"{demo.url}/api/calls/{waiting['call_id']}", headers=SUPERVISOR
                ) as resp:
                    now = await resp.json()
                if "tier3" in now.get("call", now).get("queues", []):
                    break
                await asyncio.sleep(0.05)
    call.cancel()
