"""Bursts over a real WebSocket: a resync's hundreds of agent states never cost a desktop its
socket or a call event; repeated states of one agent coalesce to the latest."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import ClientWebSocketResponse, WSMsgType
from http_world import TOKENS, World, running_api

from cti.tracker.events import CallEvent

SUP, A1 = "Supervisor", "Agent 1001"


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with running_api() as w:
        yield w


async def connect(world: World, who: str, path: str = "/ws") -> ClientWebSocketResponse:
    ws = await world.client.ws_connect(path)
    await ws.send_json({"type": "auth", "token": TOKENS[who]})
    hello = await ws.receive_json(timeout=10)
    assert hello["type"] == "hello"
    return ws


async def read_until(ws: ClientWebSocketResponse, done: Any) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while not done(got):
        msg = await ws.receive(timeout=20.0)
        assert msg.type == WSMsgType.TEXT, f"socket closed: {msg.type} {msg.data} {msg.extra}"
        got.append(json.loads(msg.data))
    return got


def agent_state(member: str, queue: str, paused: bool, t: float) -> CallEvent:
    ext = member.split()[-1]
    data = {
        "member": member,
        "interface": f"Local/{ext}@agents",
        "queue": queue,
        "status": "1",
        "paused": paused,
        "reason": "lunch" if paused else "",
    }
    return CallEvent("", "agent_state", t, data)


def pop_event(call: str, t: float) -> CallEvent:
    data = {"queue": "tier1", "member": A1, "interface": "Local/1001@agents"}
    return CallEvent(call, "ringing", t, data)


async def test_a_burst_of_600_agent_states_and_pops_loses_nothing_and_keeps_the_socket(
    world: World,
) -> None:
    sup, agent = await connect(world, SUP), await connect(world, A1)
    # One synchronous burst, as a resync delivers it: 600 distinct agent states (200 agents in
    # three queues) with 40 pops in between, before either sender gets to run.
    pops = [f"c{n}" for n in range(40)]
    t = 1000.0
    for n in range(600):
        t += 0.001
        world.hub.publish(agent_state(f"Agent {3000 + n // 3}", f"q{n % 3}", n % 2 == 0, t), None)
        if n % 15 == 0:
            world.hub.publish(pop_event(pops[n // 15], t), None)
    got = await read_until(sup, lambda g: len(g) >= 640)
    states = [m for m in got if m["type"] == "agent_state"]
    assert len(states) == 600
    assert [m["call_id"] for m in got if m["type"] == "pop"] == pops
    mine = await read_until(agent, lambda g: len(g) >= 40)
    assert [m["call_id"] for m in mine] == pops
    for ws in (sup, agent):
        await ws.send_str("ping")
        [pong] = await read_until(ws, lambda g: len(g) >= 1)
        assert pong == {"type": "pong"} and not ws.closed
        await ws.close()


async def test_repeated_states_of_one_agent_coalesce_to_the_latest_and_call_events_stay(
    world: World,
) -> None:
    sup = await connect(world, SUP)
    t = 1000.0
    for n in range(900):
        t += 0.001
        world.hub.publish(agent_state(A1, "tier1", n % 2 == 1, t), None)
        if n == 450:
            world.hub.publish(pop_event("middle", t), None)
    world.hub.publish(pop_event("last", t + 1), None)
    got = await read_until(sup, lambda g: any(m.get("call_id") == "last" for m in g))
    states = [m for m in got if m["type"] == "agent_state"]
    assert 1 <= len(states) < 900
    assert states[-1]["paused"] is True  # n = 899, the newest, is a pause
    assert [m["call_id"] for m in got if m["type"] == "pop"] == ["middle", "last"]
    await sup.close()
