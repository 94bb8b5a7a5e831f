"""Click-to-dial end to end: the HTTP API, the daemon and the simulated Asterisk 22 over AMI.

The agent asks ``POST /api/calls/originate``; the simulator rings the agent's phone (an
Originate, as Asterisk 22 places it), then dials the number; the agent's desktop gets the
customer being called, and the interaction is written as an outbound call, never abandoned.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from crm_core.seed import DEMO_NUMBERS, seed
from crm_core.store import CrmStore
from cti.commands.demo import DEMO_CONFIG
from cti.config import load_config
from cti.daemon import Daemon, build_daemon
from cti.sim.scenarios import AgentBehaviour
from cti.sim.simulator import Simulator, settings_from_config

AGENT = {"Authorization": "Bearer demo-tier1"}  # Agent 1001, Local/1001@agents/n


@dataclass
class World:
    sim: Simulator
    daemon: Daemon
    store: CrmStore
    url: str


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    config = load_config(DEMO_CONFIG, env={})
    store = await CrmStore.open(f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}")
    await seed(store, 0, progress=False)
    settings = settings_from_config(config, time_scale=0.05, seed=3)
    settings.behaviour = AgentBehaviour(miss_rate=1.0)
    sim = Simulator(settings)
    sim.actions.originate_hold_s = 0.5
    await sim.start()
    ami = config.ami.model_copy(update={"port": sim.ami_port})
    daemon = await build_daemon(
        config.model_copy(update={"ami": ami}), store=store, http_port=0, agi_port=0
    )
    await daemon.start()
    settings.dialplan = replace(settings.dialplan, agi_port=daemon.agi_port or 0)
    try:
        await _until(lambda: daemon.resyncs >= 1)
        yield World(sim, daemon, store, f"http://127.0.0.1:{daemon.http_port}")
    finally:
        await daemon.stop()
        await sim.stop()
        await store.close()


async def _until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    async with asyncio.timeout(seconds):
        while True:
            if condition():
                return
            await asyncio.sleep(0.02)


async def _recorded(store: CrmStore, call_id: str) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            row = await store.interaction(call_id)
            if row is not None and row["ended_at"] is not None:
                return row
            await asyncio.sleep(0.05)


async def _desktop_until_ended(ws: aiohttp.ClientWebSocketResponse) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    async with asyncio.timeout(15):
        async for msg in ws:
            data = json.loads(msg.data)
            messages.append(data)
            if data.get("type") == "ended":
                return messages
    return messages


async def test_click_to_dial_pops_the_customer_being_called_and_is_recorded_outbound(
    world: World,
) -> None:
    number = DEMO_NUMBERS["arrears"]  # Paula Grant
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{world.url}/ws") as ws:
        await ws.send_str(json.dumps({"type": "auth", "token": "demo-tier1"}))
        desk = asyncio.create_task(_desktop_until_ended(ws))
        async with http.post(
            f"{world.url}/api/calls/originate", json={"number": number}, headers=AGENT
        ) as resp:
            assert resp.status == 202, await resp.text()
        messages = await desk
    calls = [m for m in messages if m.get("call_id")]
    assert [m["type"] for m in calls] == ["pop", "answered", "ended"]
    pop = calls[0]
    assert pop["agent"] == "Agent 1001"
    assert pop["direction"] == "outbound" and pop["number"] == number
    assert pop["call"]["view"]["name"] == "Paula Grant"
    row = await _recorded(world.store, pop["call_id"])
    assert row["direction"] == "outbound"
    assert row["outcome"] == "answered"
    assert row["customer_id"] == pop["call"]["customer_id"] is not None
    assert row["talk_s"] is not None and row["talk_s"] > 0
    assert row["wait_s"] is None
