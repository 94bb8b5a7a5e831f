"""The /ws WebSocket over real sockets: auth, isolation, replay, ringall, escalation context."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import ClientWebSocketResponse, WSMsgType
from http_world import CALLER, TOKENS, World, headers, running_api

A1, A2, T2, SUP = "Agent 1001", "Agent 1002", "Agent 2001", "Supervisor"


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with running_api() as w:
        yield w


async def connect(world: World, who: str, *, first_frame: bool = False) -> ClientWebSocketResponse:
    if first_frame:
        ws = await world.client.ws_connect("/ws")
        await ws.send_json({"type": "auth", "token": TOKENS[who]})
    else:
        ws = await world.client.ws_connect(f"/ws?token={TOKENS[who]}")
    hello = await ws.receive_json(timeout=5)
    assert hello == {"type": "hello", "agent": hello["agent"]}
    assert hello["agent"]["name"] == who
    return ws


async def receive(ws: ClientWebSocketResponse, count: int) -> list[dict[str, Any]]:
    return [await ws.receive_json(timeout=5) for _ in range(count)]


async def nothing_more(ws: ClientWebSocketResponse) -> bool:
    """True when no message arrives within a short while."""
    try:
        msg = await ws.receive(timeout=0.2)
    except TimeoutError:
        return True
    raise AssertionError(f"unexpected message: {msg.data}")


async def test_a_pop_carries_the_customer_and_reaches_only_that_agent(world: World) -> None:
    ws1, ws2, sup = await connect(world, A1), await connect(world, A2), await connect(world, SUP)
    await world.queued_call("c1")
    await world.ring("c1", "1001")
    [pop] = await receive(ws1, 1)
    assert pop["type"] == "pop" and pop["call_id"] == "c1"
    assert pop["call"]["caller"] == CALLER
    assert pop["call"]["view"]["name"] == "Ada Lovelace"
    assert pop["call"]["view"]["highlights"] == ["vip", "hearing_impaired"]
    assert pop["queue"] == "tier1"
    assert await nothing_more(ws2)
    seen = [m["type"] for m in await receive(sup, 3)]
    assert seen == ["call", "call", "pop"]  # offered, queued, then the pop for Agent 1001
    for ws in (ws1, ws2, sup):
        await ws.close()


async def test_agent_a_never_receives_agent_bs_pops_over_many_calls(world: World) -> None:
    ws1, ws2 = await connect(world, A1), await connect(world, A2, first_frame=True)
    for n in range(10):
        call = f"c{n}"
        await world.queued_call(call)
        await world.ring(call, "1001" if n % 2 else "1002")
    got1 = await receive(ws1, 5)
    got2 = await receive(ws2, 5)
    assert {m["call_id"] for m in got1} == {"c1", "c3", "c5", "c7", "c9"}
    assert {m["call_id"] for m in got2} == {"c0", "c2", "c4", "c6", "c8"}
    assert await nothing_more(ws1) and await nothing_more(ws2)
    await ws1.close()
    await ws2.close()


async def test_a_websocket_without_a_valid_token_is_refused(world: World) -> None:
    resp = await world.client.get("/ws?token=wrong")
    assert resp.status == 401
    ws = await world.client.ws_connect("/ws")
    await ws.send_json({"type": "auth", "token": "wrong"})
    error = await ws.receive_json(timeout=5)
    assert error["type"] == "error"
    closing = await ws.receive(timeout=5)
    assert closing.type in (WSMsgType.CLOSE, WSMsgType.CLOSED)
    assert ws.close_code == 4401
    assert world.hub.connected() == 0


async def test_a_reconnecting_desktop_gets_its_active_call_again(world: World) -> None:
    ws = await connect(world, A1)
    await world.queued_call("c1")
    await world.ring("c1", "1001")
    await world.answer("c1", "1001")
    before = await receive(ws, 2)
    await ws.close()
    for _ in range(50):
        if world.hub.connected() == 0:
            break
        await asyncio.sleep(0.01)

    again = await connect(world, A1)
    replay = await receive(again, 2)
    assert [m["id"] for m in replay] == [m["id"] for m in before]
    assert [m["type"] for m in replay] == ["pop", "answered"]
    await again.close()


async def test_ringall_pop_is_withdrawn_from_the_others_when_one_answers(world: World) -> None:
    ws1, ws2 = await connect(world, A1), await connect(world, A2)
    await world.queued_call("c1")
    await world.ring("c1", "1001")
    await world.ring("c1", "1002")
    await world.answer("c1", "1002")
    first = await receive(ws1, 2)
    assert [m["type"] for m in first] == ["pop", "withdrawn"]
    assert first[1]["reason"] == "answered_elsewhere"
    assert [m["type"] for m in await receive(ws2, 2)] == ["pop", "answered"]
    await world.event("ended", "c1", hangup_by="caller", talk_s=12)
    assert (await receive(ws2, 1))[0]["type"] == "ended"
    assert await nothing_more(ws1)
    await ws1.close()
    await ws2.close()


async def test_escalation_via_api_shows_reason_and_note_on_the_next_agents_pop(
    world: World,
) -> None:
    ws1, ws2 = await connect(world, A1), await connect(world, T2)
    await world.queued_call("c1")
    await world.ring("c1", "1001")
    await world.answer("c1", "1001")
    await receive(ws1, 2)
    resp = await world.client.post(
        "/api/calls/c1/escalate",
        json={"tier": "tier2", "reason": "line fault", "note": "router resets every hour"},
        headers=headers(A1),
    )
    assert resp.status == 200
    # What Asterisk then reports: the blind transfer, the caller queued in tier2, 2001 rings.
    await world.event("transferred", "c1", kind="blind", from_agent=A1, to="8002", to_queue="tier2")
    await world.ring("c1", "2001", queue="tier2")
    [moved] = await receive(ws1, 1)
    assert moved["type"] == "transferred" and moved["to_queue"] == "tier2"
    [pop] = await receive(ws2, 1)
    assert pop["type"] == "pop"
    assert pop["reason"] == "line fault"
    assert pop["previous_agent"] == A1
    assert pop["escalation"]["note"] == "router resets every hour"
    assert pop["call"]["view"]["name"] == "Ada Lovelace"
    await ws1.close()
    await ws2.close()


async def test_server_shutdown_closes_desktops(world: World) -> None:
    ws = await connect(world, A1)
    await world.client.server.app.shutdown()  # type: ignore[union-attr]
    msg = await ws.receive(timeout=5)
    assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED)
    assert json.dumps(ws.close_code) == "1001"


async def test_a_first_frame_nested_too_deeply_is_refused_without_a_traceback(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    ws = await world.client.ws_connect("/ws")
    await ws.send_str("[" * 60_000)
    error = await ws.receive_json(timeout=5)
    assert error["type"] == "error"
    closing = await ws.receive(timeout=5)
    assert closing.type in (WSMsgType.CLOSE, WSMsgType.CLOSED)
    assert ws.close_code == 4401
    assert [r.getMessage() for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")] == []
    await connect(world, A1, first_frame=True)  # and the server still serves
