"""The supervisor's API over a real socket: statistics, the console's WebSocket, acting on
agents (validated before anything reaches the PBX) and alerts."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientWebSocketResponse, WSMsgType
from http_world import TOKENS, headers
from supervisor_world import T0, SupervisorWorld, running_console

from cti.config import SupervisorConfig
from cti.supervisor.alerts import AlertEvent
from cti.tracker.events import CallEvent

SUP, A1 = "Supervisor", "Agent 1001"


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[SupervisorWorld]:
    async with running_console(tmp_path) as w:
        yield w


async def console(world: SupervisorWorld, who: str = SUP) -> ClientWebSocketResponse:
    ws = await world.client.ws_connect("/ws/supervisor")
    await ws.send_json({"type": "auth", "token": TOKENS[who]})
    return ws


async def next_of(ws: ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    while True:
        msg = await ws.receive(timeout=10)
        assert msg.type == WSMsgType.TEXT, (msg.type, msg.data)
        data = json.loads(msg.data)
        if data["type"] == kind:
            return data  # type: ignore[no-any-return]


async def test_statistics_are_for_supervisors_only(world: SupervisorWorld) -> None:
    for path in ("/api/stats/live", "/api/stats?from=2026-11-23&to=2026-11-24"):
        refused = await world.client.get(path, headers=headers(A1))
        assert refused.status == 403
        assert (await world.client.get(path)).status == 401
        assert (await world.client.get(path, headers=headers(SUP))).status == 200


async def test_live_statistics_follow_the_calls(world: SupervisorWorld) -> None:
    await world.call("c1", 0, 10, 60, "1001")
    await world.call("c2", 100, 30, 60, "1002")
    await world.event("offered", "c3", 200, caller="+441632960001")
    await world.event("queued", "c3", 200, queue="tier1")
    world.now[0] = T0 + 245
    got = await (await world.client.get("/api/stats/live", headers=headers(SUP))).json()
    tier1 = got["queue"]["tier1"]
    assert (tier1["offered"], tier1["answered"], tier1["answered_in_sl"]) == (3, 2, 1)
    assert tier1["service_level"] == pytest.approx(1 / 3, abs=1e-4)
    assert tier1["longest_wait_s"] == 45.0  # c3 still waiting
    assert got["agent"]["Agent 1001"]["answered"] == 1


async def test_period_statistics_come_from_the_database(world: SupervisorWorld) -> None:
    await world.call("c1", 0, 10, 60, "1001")
    await world.call("c2", 100, 30, 60, "1002")
    assert await world.recorder.flush(10)
    response = await world.client.get(
        "/api/stats?from=2026-11-23T00:00Z&to=2026-11-23T01:00Z&group_by=agent",
        headers=headers(SUP),
    )
    got = await response.json()
    assert response.status == 200, got
    assert sorted(got["groups"]) == ["Agent 1001", "Agent 1002"]
    assert got["groups"]["Agent 1002"]["asa_s"] == 30.0


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("from=2026-11-23", "from, to"),
        ("from=yesterday&to=2026-11-24", "from: not an ISO date"),
        ("from=2026-11-24&to=2026-11-23", "to: must be after from"),
        ("from=2026-11-23&to=2026-11-24&group_by=colour", "group_by"),
    ],
)
async def test_a_bad_period_is_a_clear_error(
    world: SupervisorWorld, query: str, error: str
) -> None:
    response = await world.client.get(f"/api/stats?{query}", headers=headers(SUP))
    assert response.status == 400
    assert (await response.json())["error"].startswith(error)


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"agent": "Nobody", "action": "pause"}, 404, "agent: no agent"),
        ({"agent": "Supervisor", "action": "pause"}, 404, "agent: no agent"),
        ({"agent": A1, "action": "login"}, 400, "queue: required"),
        ({"agent": A1, "action": "login", "queue": "tier9"}, 400, "queue: 'tier9'"),
        ({"agent": A1, "action": "pause", "reason": "x\r\nAction: Hangup"}, 400, "reason"),
        ({"agent": A1, "action": "dance"}, 400, "action"),
    ],
)
async def test_acting_on_an_agent_is_validated_before_the_pbx(
    world: SupervisorWorld, body: dict[str, Any], status: int, error: str
) -> None:
    response = await world.client.post("/api/supervisor/agent", json=body, headers=headers(SUP))
    assert response.status == status
    assert error in (await response.json())["error"]
    assert world.ami.actions == []


async def test_a_supervisor_pauses_and_logs_in_an_agent(world: SupervisorWorld) -> None:
    refused = await world.client.post(
        "/api/supervisor/agent", json={"agent": A1, "action": "pause"}, headers=headers(A1)
    )
    assert refused.status == 403 and world.ami.actions == []
    for body in (
        {"agent": A1, "action": "pause", "reason": "coaching"},
        {"agent": A1, "action": "unpause"},
        {"agent": A1, "action": "login", "queue": "tier2"},
        {"agent": A1, "action": "logout", "queue": "tier1"},
    ):
        response = await world.client.post("/api/supervisor/agent", json=body, headers=headers(SUP))
        assert response.status == 200, await response.text()
    assert world.ami.actions == [
        {
            "Action": "QueuePause",
            "Interface": "Local/1001@agents",
            "Paused": "true",
            "Reason": "coaching",
        },
        {"Action": "QueuePause", "Interface": "Local/1001@agents", "Paused": "false"},
        {
            "Action": "QueueAdd",
            "Queue": "tier2",
            "Interface": "Local/1001@agents",
            "MemberName": "Agent 1001",
        },
        {"Action": "QueueRemove", "Queue": "tier1", "Interface": "Local/1001@agents"},
    ]


async def test_the_console_gets_a_snapshot_then_rows(world: SupervisorWorld) -> None:
    await world.agent_state("1001", -10)
    await world.call("c1", 0, 10, 60, "1001")
    await world.event("offered", "c2", 100, caller="+442071234567", uniqueid="c2")
    ws = await console(world)
    assert (await next_of(ws, "hello"))["agent"]["name"] == SUP
    snapshot = (await next_of(ws, "snapshot"))["board"]
    assert [c["call_id"] for c in snapshot["calls"]] == ["c2"]
    agent = next(a for a in snapshot["agents"] if a["name"] == A1)
    assert (agent["state"], agent["calls_today"], agent["queues"]) == ("available", 1, ["tier1"])
    await world.event("queued", "c2", 100, queue="tier1")
    row = (await next_of(ws, "call_row"))["row"]
    assert (row["call_id"], row["state"], row["queue"]) == ("c2", "waiting", "tier1")
    await world.event("ringing", "c2", 101, queue="tier1", member=A1)
    row = (await next_of(ws, "call_row"))["row"]
    assert (row["state"], row["detail"]) == ("ringing", f"ringing {A1}")
    assert (await next_of(ws, "agent_row"))["row"]["state"] == "ringing"
    await world.event("ended", "c2", 105, hangup_by="caller")
    assert (await next_of(ws, "call_gone"))["call_id"] == "c2"
    world.supervision.resynced()
    assert (await next_of(ws, "snapshot"))["board"]["calls"] == []
    await ws.close()


async def test_an_agent_token_cannot_open_the_console(world: SupervisorWorld) -> None:
    ws = await console(world, A1)
    assert (await ws.receive_json(timeout=10))["error"] == "supervisors only"
    msg = await ws.receive(timeout=10)
    assert msg.type == WSMsgType.CLOSE and msg.data == 4403


async def test_an_agent_paused_too_long_raises_an_alert_then_clears_it(tmp_path: Path) -> None:
    limits = SupervisorConfig(max_pause_s=600, max_pause_by_reason={"lunch": 3600}, refresh_s=3600)
    async with running_console(tmp_path, supervisor=limits) as world:
        heard: list[AlertEvent] = []
        world.supervision.on_alert(heard.append)
        ws = await console(world)
        await next_of(ws, "snapshot")
        await world.agent_state("1001", 0, paused=True, reason="lunch")
        await world.agent_state("1002", 0, paused=True, reason="toilet")
        world.now[0] = T0 + 700
        assert [(a.kind, a.subject) for a in world.supervision.refresh()] == [
            ("long_pause", "Agent 1002")  # lunch is allowed an hour
        ]
        alert = await next_of(ws, "alert")
        assert (alert["event"], alert["subject"], alert["raised"]) == (
            "alert",
            "Agent 1002",
            True,
        )
        assert alert["value"] == 700.0 and alert["limit"] == 600
        assert world.supervision.refresh() == []  # still holding: not raised twice
        await world.agent_state("1002", 710, paused=False)
        world.now[0] = T0 + 720
        [cleared] = world.supervision.refresh()
        assert (cleared.subject, cleared.raised) == ("Agent 1002", False)
        assert [a.raised for a in heard] == [True, False]
        await ws.close()


async def test_a_queue_below_its_service_level_raises_an_alert(world: SupervisorWorld) -> None:
    await world.call("c1", 0, 30, 60, "1001")  # answered after 30 s: outside 20 s
    [alert] = world.supervision.refresh()
    assert (alert.kind, alert.subject, alert.value, alert.limit) == (
        "service_level",
        "tier1",
        0.0,
        0.8,
    )


async def test_an_agent_paused_on_a_pbx_without_timestamps_shows_paused_since_now(
    world: SupervisorWorld,
) -> None:
    """``timestampevents = no``: agent states come without a time; the console takes its own."""
    member = {"member": A1, "interface": "Local/1001@agents", "queue": "tier1"}
    world.now[0] = T0 + 100
    for paused in (False, True):
        state = {**member, "logged_in": True, "paused": paused, "reason": "lunch"}
        event = CallEvent("", "agent_state", None, state)
        await world.calls.apply(event)
        world.hub.publish(event, None)
        world.supervision.apply(event, None)
    world.now[0] = T0 + 160
    board = await (await world.client.get("/api/supervisor/board", headers=headers(SUP))).json()
    row = next(a for a in board["agents"] if a["name"] == A1)
    assert (row["state"], row["reason"], row["queues"]) == ("paused", "lunch", ["tier1"])
    assert (row["paused_since"], row["paused_s"]) == (T0 + 100, 60)
