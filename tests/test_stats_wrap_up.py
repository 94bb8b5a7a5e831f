"""Wrap-up: measured from a call's end until its disposition is saved, the agent answers their
next call, or the grace period ends; kept on the interaction and in the handle time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from http_world import headers
from supervisor_world import T0, LatestRecords, SupervisorWorld, running_console

from cti.calls import LiveCalls, WrapUp
from cti.tracker.events import CallEvent

SUP, A1, A2 = "Supervisor", "Agent 1001", "Agent 1002"


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[SupervisorWorld]:
    async with running_console(tmp_path) as w:
        yield w


def member(ext: str) -> dict[str, str]:
    return {"member": f"Agent {ext}", "interface": f"Local/{ext}@agents"}


async def answer(world: SupervisorWorld, call: str, offered: float, answered: float, ext: str):
    await world.event("offered", call, offered, caller="+442071234567", uniqueid=call)
    await world.event("queued", call, offered, queue="tier1")
    await world.event("ringing", call, offered + 1, queue="tier1", **member(ext))
    await world.event(
        "answered", call, answered, agent=f"Agent {ext}", queue="tier1", **member(ext)
    )


async def dispose(world: SupervisorWorld, call: str, at: float, who: str) -> None:
    world.now[0] = T0 + at
    response = await world.client.post(
        f"/api/calls/{call}/disposition", json={"code": "resolved"}, headers=headers(who)
    )
    assert response.status == 200, await response.text()


async def test_wrap_up_ends_with_the_disposition_or_the_next_call_and_joins_handle_time(
    world: SupervisorWorld,
) -> None:
    # c1: Agent 1001 talks 10 → 70, saves the disposition at 100: wrap-up 30, handle 90.
    await answer(world, "c1", 0, 10, "1001")
    await world.event("ended", "c1", 70, hangup_by="caller")
    await dispose(world, "c1", 100, A1)
    # c2: Agent 1002 talks 30 → 90 and answers c3 at 150 without a disposition: wrap-up 60,
    # handle 120. c3: the disposition is saved during the call (at 170): no wrap-up; talk
    # 150 → 200, handle 50.
    await answer(world, "c2", 0, 30, "1002")
    await world.event("ended", "c2", 90, hangup_by="agent")
    await answer(world, "c3", 120, 150, "1002")
    await dispose(world, "c3", 170, A2)
    await world.event("ended", "c3", 200, hangup_by="caller")

    got = {c: world.interactions[c].extra for c in ("c1", "c2", "c3")}
    assert [(e["wrap_up_agent"], e["wrap_up_s"], e["wrap_up_end"]) for e in got.values()] == [
        (A1, 30.0, "disposition"),
        (A2, 60.0, "next_call"),
        (A2, 0.0, "disposition"),
    ]
    live = world.supervision.live_stats()
    assert live["agent"][A1]["aht_s"] == 90.0
    assert live["agent"][A2]["aht_s"] == 85.0  # (120 + 50) / 2
    assert live["queue"]["tier1"]["aht_s"] == pytest.approx(260 / 3, abs=1e-3)

    assert await world.recorder.flush(10)
    response = await world.client.get(
        "/api/stats?from=2026-11-23T00:00Z&to=2026-11-23T01:00Z&group_by=agent",
        headers=headers(SUP),
    )
    report = await response.json()
    assert response.status == 200, report
    assert report["groups"][A1]["aht_s"] == 90.0
    assert report["groups"][A2]["aht_s"] == 85.0
    assert report["agents"][A2]["handle_s"] == 170.0


async def test_a_later_disposition_does_not_lengthen_a_measured_wrap_up(
    world: SupervisorWorld,
) -> None:
    await answer(world, "c1", 0, 10, "1001")
    await world.event("ended", "c1", 70, hangup_by="caller")
    await dispose(world, "c1", 80, A1)
    await dispose(world, "c1", 110, A1)  # corrected later: the wrap-up stays 10 s
    assert world.interactions["c1"].extra["wrap_up_s"] == 10.0
    assert world.supervision.live_stats()["agent"][A1]["aht_s"] == 70.0


async def test_without_a_disposition_the_wrap_up_lasts_the_grace_period() -> None:
    records = LatestRecords()
    measured: list[WrapUp] = []
    calls = LiveCalls(recorder=records, grace_s=0.2)
    calls.on_wrap_up(measured.append)
    events = [
        ("offered", 0.0, {"caller": "+442071234567"}),
        ("queued", 0.0, {"queue": "tier1"}),
        ("answered", 4.0, {"agent": A1, "queue": "tier1"}),
        ("ended", 64.0, {"hangup_by": "caller"}),
    ]
    try:
        for name, at, data in events:
            await calls.apply(CallEvent("c1", name, T0 + at, data))  # type: ignore[arg-type]
        assert records["c1"].extra["wrap_up_s"] is None  # still wrapping up
        await asyncio.sleep(1.0)
        assert measured == [WrapUp("c1", A1, 0.2, "grace")]
        assert records["c1"].extra["wrap_up_end"] == "grace"
    finally:
        await calls.close()


async def test_an_unanswered_call_has_no_wrap_up(world: SupervisorWorld) -> None:
    await world.event("offered", "c1", 0, caller="+442071234567")
    await world.event("queued", "c1", 0, queue="tier1")
    await world.event("ended", "c1", 30, hangup_by="caller")
    assert "wrap_up_s" not in world.interactions["c1"].extra
