"""Agent occupancy, pause time by reason and outbound calls on ``/api/stats/live``: the period
report's definitions (README, "Statistics"), kept as events arrive, equal to ``/api/stats``
over the same day, and read back after a restart. On SQLite and PostgreSQL.

The day (T0 is midnight UTC), worked out by hand for Agent 1001:

- logged in to tier1 08:00 → 12:00: logged in 4 h = 14,400 s;
- paused "lunch" 09:00 → 09:15 (900 s) and "training" 10:00 → 10:05 (300 s): paused 1,200 s;
- one queue call offered at 10:30:00, answered at 10:30:10, ended at 11:00:10 (30 min of
  talk, 1,800 s), its disposition saved at 11:10:10 (10 min of wrap-up, 600 s): handle
  time = 1,800 + 600 = 2,400 s;
- occupancy = handle ÷ (logged in − paused) = 2,400 ÷ (14,400 − 1,200) = 2,400 ÷ 13,200
  = 0.1818 (to four places).

Outbound, apart (from the interactions, by the time the call started): o1 dialled at 11:20,
answered, 120 s of talk; o2 dialled at 11:30, not answered. calls 2, answered 1, talk 120 s,
mean talk 120 s (over the calls with a talk time).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from http_world import headers
from sqlalchemy import delete
from supervisor_world import T0, SupervisorWorld, running_console

from crm_core.models import AgentActivity, CallLeg, Interaction
from crm_core.store import CrmStore
from cti.stats.figures import Thresholds
from cti.stats.live import LiveStats
from cti.tracker.events import CallEvent

H = 3600.0
SUP, A1 = "Supervisor", "Agent 1001"
MEMBER = {"member": A1, "interface": "Local/1001@agents"}
DAY = "from=2026-11-23T00:00Z&to=2026-11-24T00:00Z"


@pytest.fixture
async def url(db_url: str) -> str:
    """The database, emptied of what these figures read (PostgreSQL's is shared)."""
    store = await CrmStore.open(db_url)
    async with store.engine.begin() as conn:
        for model in (CallLeg, AgentActivity, Interaction):
            await conn.execute(delete(model))
    await store.close()
    return db_url


@pytest.fixture
async def world(tmp_path: Path, url: str) -> AsyncIterator[SupervisorWorld]:
    async with running_console(tmp_path, db_url=url, grace_s=3600) as w:
        yield w


async def state(world: SupervisorWorld, at: float, **data: Any) -> None:
    await world.agent_state("1001", at, **data)


async def the_day(world: SupervisorWorld) -> None:
    await state(world, 8 * H)  # logged in, not paused
    await state(world, 9 * H, paused=True, reason="lunch")
    await state(world, 9 * H + 900)
    await state(world, 10 * H, paused=True, reason="training")
    await state(world, 10 * H + 300)
    start = 10.5 * H
    await world.event("offered", "c1", start, caller="+442071234567", uniqueid="c1")
    await world.event("queued", "c1", start, queue="tier1")
    await world.event("ringing", "c1", start + 1, queue="tier1", **MEMBER)
    await world.event("answered", "c1", start + 10, agent=A1, queue="tier1", **MEMBER)
    await world.event("ended", "c1", start + 10 + 1800, hangup_by="caller")
    world.now[0] = T0 + start + 10 + 1800 + 600
    response = await world.client.post(
        "/api/calls/c1/disposition", json={"code": "resolved"}, headers=headers(A1)
    )
    assert response.status == 200, await response.text()
    for call, at, answered in (("o1", 11 * H + 1200, True), ("o2", 11 * H + 1800, False)):
        out = {"agent": A1, "direction": "outbound", **MEMBER}
        await world.event("outbound", call, at, number="+442071234567", **out)
        if answered:
            await world.event("answered", call, at + 5, queue=None, **out)
        result = {"agent": A1, "outcome": "answered" if answered else "no_answer"}
        talk = {"talk_s": 120.0} if answered else {}
        await world.event(
            "ended", call, at + 125, hangup_by="agent", outbound=result, **out, **talk
        )
    await state(world, 12 * H, logged_in=False)


WORKED_OUT_AGENT = {
    "calls": 1,
    "handle_s": 2400.0,
    "login_s": 14400.0,
    "pause_s": 1200.0,
    "pause_by_reason": {"lunch": 900.0, "training": 300.0},
    "occupancy": 0.1818,
}
WORKED_OUT_OUTBOUND = {"calls": 2, "answered": 1, "talk_s": 120.0, "avg_talk_s": 120.0}


async def the_report(world: SupervisorWorld) -> dict[str, Any]:
    assert await world.recorder.flush(10)
    for record in world.interactions.values():
        await world.store.record_interaction(record)
    response = await world.client.get(f"/api/stats?{DAY}&group_by=agent", headers=headers(SUP))
    report: dict[str, Any] = await response.json()
    assert response.status == 200, report
    return report


async def test_live_occupancy_pauses_and_outbound_are_worked_out_and_equal_the_period(
    world: SupervisorWorld,
) -> None:
    await the_day(world)
    live = world.supervision.live_stats()
    assert live["agents"] == {A1: WORKED_OUT_AGENT}
    assert live["outbound"] == WORKED_OUT_OUTBOUND
    report = await the_report(world)
    assert report["agents"] == live["agents"]
    assert report["outbound"] == live["outbound"]


async def test_an_open_pause_counts_until_now_on_the_live_view(world: SupervisorWorld) -> None:
    await state(world, 8 * H)
    await state(world, 9 * H, paused=True, reason="lunch")
    world.now[0] = T0 + 9 * H + 600
    agent = world.supervision.live_stats()["agents"][A1]
    assert (agent["login_s"], agent["pause_s"]) == (3600.0 + 600.0, 600.0)
    assert agent["pause_by_reason"] == {"lunch": 600.0}


async def test_todays_agent_time_and_outbound_calls_survive_a_restart(
    world: SupervisorWorld, tmp_path: Path, url: str
) -> None:
    await the_day(world)
    report = await the_report(world)
    async with running_console(tmp_path / "again", db_url=url) as restarted:
        restarted.now[0] = T0 + 13 * H
        await restarted.supervision.count_today()
        live = restarted.supervision.live_stats()
    assert live["agents"] == {A1: WORKED_OUT_AGENT} == report["agents"]
    assert live["outbound"] == WORKED_OUT_OUTBOUND == report["outbound"]


def test_an_agent_logged_in_across_midnight_counts_today_from_midnight() -> None:
    """Logged in 23:00 → 01:00, paused "lunch" 23:30 → 00:30: on the new day the live view
    counts 01:00 of login and 00:30 of pause (clipped at midnight, as the period report clips
    an interval to its period); before midnight, the day so far (open intervals until now)."""
    live = LiveStats(Thresholds(default_s=20.0), {"tier1": "tier1"})

    def state(at: float, **data: Any) -> None:
        values = {"queue": "tier1", "logged_in": True, "paused": False, **MEMBER, **data}
        live.apply(CallEvent("", "agent_state", T0 + at, values))  # type: ignore[arg-type]

    state(23 * H)
    state(23.5 * H, paused=True, reason="lunch")
    agent = live.agents_today(T0 + 24 * H - 1)[A1]
    assert (agent["login_s"], agent["pause_s"]) == (3599.0, 1799.0)  # until 23:59:59
    state(24.5 * H)  # the new day: unpaused at 00:30
    state(25 * H, logged_in=False)
    agent = live.agents_today()[A1]
    assert (agent["login_s"], agent["pause_s"]) == (3600.0, 1800.0)
    assert agent["pause_by_reason"] == {"lunch": 1800.0}
    assert agent["occupancy"] == 0.0  # no call: 0 s handled of 1,800 s staffed
