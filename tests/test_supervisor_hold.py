"""On hold: the tracker reports Asterisk 22's Hold/Unhold as call events, the console shows a
held call "on hold" with the hold time, and talk keeps the held time (the caller stays
bridged, as Asterisk's queue_log counts it)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from http_world import headers
from supervisor_world import T0, SupervisorWorld, running_console

from cti.tracker import CallTracker
from cti.tracker.events import CallEvent

ATTENDED = "attended_transfer_tier1_to_tier2"
CALL = "1795394611.24"
HOLD_TS = "1795394616.434232"


def trace(traces_dir: Path, name: str) -> list[dict[str, str]]:
    events: list[dict[str, str]] = json.loads(
        (traces_dir / "asterisk22" / f"{name}.json").read_text()
    )
    return events


def holds(events: list[dict[str, str]]) -> list[CallEvent]:
    tracker = CallTracker()
    out = [e for event in events for e in tracker.feed(event)]
    return [e for e in out if e.event in ("hold", "unhold")]


def test_the_agent_holding_the_caller_before_an_attended_transfer_is_reported(
    traces_dir: Path,
) -> None:
    [hold] = holds(trace(traces_dir, ATTENDED))
    assert (hold.call, hold.event, hold.ts) == (CALL, "hold", float(HOLD_TS))
    assert hold.data["by"] == "Agent 1003"
    assert hold.data["channel"] == "Local/1003@agents-0000000d;1"


def test_unhold_ends_the_hold_and_an_unhold_without_hold_is_not_reported(
    traces_dir: Path,
) -> None:
    events = trace(traces_dir, ATTENDED)
    at = next(i for i, e in enumerate(events) if e.get("Event") == "Hold")
    unhold = {**events[at], "Event": "Unhold", "Timestamp": "1795394617.434232"}
    unhold.pop("MusicClass", None)
    got = holds([*events[: at + 1], unhold, unhold, *events[at + 1 :]])
    assert [(e.event, e.ts) for e in got] == [
        ("hold", float(HOLD_TS)),
        ("unhold", 1795394617.434232),
    ]
    # The blind transfer trace has an Unhold of a call never held: nothing to report.
    assert holds(trace(traces_dir, "blind_transfer_tier1_to_tier2")) == []


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[SupervisorWorld]:
    async with running_console(tmp_path) as w:
        yield w


async def board_row(world: SupervisorWorld, call: str) -> dict[str, object]:
    response = await world.client.get("/api/supervisor/board", headers=headers("Supervisor"))
    assert response.status == 200
    [row] = [c for c in (await response.json())["calls"] if c["call_id"] == call]
    return row  # type: ignore[no-any-return]


async def test_a_held_call_shows_on_hold_with_its_time_and_talk_keeps_it(
    world: SupervisorWorld,
) -> None:
    member = {"member": "Agent 1001", "interface": "Local/1001@agents"}
    await world.event("offered", "c1", 0, caller="+442071234567", uniqueid="c1")
    await world.event("queued", "c1", 0, queue="tier1")
    await world.event("answered", "c1", 10, agent="Agent 1001", queue="tier1", **member)
    await world.event("hold", "c1", 20, by="Agent 1001", channel="Local/1001@agents-01;1")
    world.now[0] = T0 + 25
    row = await board_row(world, "c1")
    assert (row["state"], row["detail"]) == ("on hold", "on hold by Agent 1001")
    assert (row["on_hold_since"], row["hold_s"], row["talk_s"]) == (T0 + 20, 5.0, 15.0)
    assert row["wait_s"] is None and row["agent"] == "Agent 1001"
    await world.event("unhold", "c1", 30, by="Agent 1001", channel="Local/1001@agents-01;1")
    world.now[0] = T0 + 40
    row = await board_row(world, "c1")
    assert (row["state"], row["on_hold_since"], row["hold_s"]) == ("talking", None, 10.0)
    # Held again, and the call ends while held: the hold ends with it.
    await world.event("hold", "c1", 50, by="Agent 1001", channel="Local/1001@agents-01;1")
    await world.event("ended", "c1", 70, hangup_by="caller")
    [leg] = [leg for leg in world.supervision.stats.today() if leg.call_id == "c1"]
    assert (leg.hold_s, leg.hold_since, leg.talk_s) == (30.0, None, 60.0)
    assert world.supervision.live_stats()["queue"]["tier1"]["aht_s"] == 60.0
