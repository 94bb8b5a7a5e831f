"""The edges of the definitions, on times as Asterisk gives them (microseconds), worked out by
hand: a wait equal to the short-abandon grace is a short abandon and one a fraction of a
millisecond longer is not; a wait equal to the service-level threshold is within it and one a
fraction longer is not; the 90th percentile is the nearest rank, to the tenth below. The live
figures (``/api/stats/live``) and a period's (``/api/stats``, SQL) count the same leg the same.

Ten calls to tier 1 from T0 (an hour boundary):

- S: the caller hangs up after exactly 5 s: short abandon (within the 5 s grace);
- L: hangs up after 5.0004 s: an abandon (after the grace);
- X: hangs up after 42 s: an abandon;
- seven calls answered after 2, 4, 6, 8, 12.39, 20, and 20.0004 s, 30 s of talk each.

offered 10, answered 7, short 1, abandoned 2; within 20 s: 2, 4, 6, 8, 12.39, 20 = 6;
service level 6 / (10 - 1) = 0.6667; ASA (2+4+6+8+12.39+20+20.0004)/7 = 72.3904/7 = 10.3415;
p90: nearest rank ceil(0.9 * 7) = 7th of the seven sorted waits = 20.0004 → 20.0 (tenth below);
longest wait 42 s (X).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import delete

from crm_core.models import CallLeg
from crm_core.store import CrmStore
from cti.stats.figures import Thresholds
from cti.stats.legs import LegBook
from cti.stats.live import LiveStats
from cti.stats.period import period_figures
from cti.stats.store import write_legs
from cti.tracker.events import CallEvent

T0 = 1_795_392_000.0
LIMITS = Thresholds(default_s=20.0, short_abandon_s=5.0)


def ev(call: str, name: str, at: float, **data: Any) -> CallEvent:
    # As the tracker reads them: Asterisk's "1795392005.000400" parsed as a float.
    return CallEvent(call, name, float(f"{T0 + at:.6f}"), data)  # type: ignore[arg-type]


def gave_up(call: str, at: float, after: float) -> list[CallEvent]:
    return [
        ev(call, "offered", at, caller="+441632960001"),
        ev(call, "queued", at, queue="tier1"),
        ev(call, "left_queue", at + after, queue="tier1", reason="abandon"),
        ev(call, "abandoned", at + after, queue="tier1", wait_s=after),
        ev(call, "ended", at + after, hangup_by="caller"),
    ]


def answered(call: str, at: float, wait: float) -> list[CallEvent]:
    agent = {"agent": "Agent 1001", "member": "Agent 1001", "interface": "Local/1001@agents"}
    return [
        ev(call, "offered", at, caller="+442071234567"),
        ev(call, "queued", at, queue="tier1"),
        ev(call, "answered", at + wait, queue="tier1", **agent),
        ev(call, "ended", at + wait + 30, hangup_by="caller"),
    ]


def the_calls() -> list[CallEvent]:
    events = gave_up("S", 0, 5.0) + gave_up("L", 100, 5.0004) + gave_up("X", 200, 42.0)
    for n, wait in enumerate((2, 4, 6, 8, 12.39, 20, 20.0004)):
        events += answered(f"A{n}", 300 + 100 * n, wait)
    return events


def assert_worked_out(fig: dict[str, Any]) -> None:
    assert (fig["offered"], fig["answered"]) == (10, 7)
    assert (fig["short_abandoned"], fig["abandoned"]) == (1, 2)  # S within; L and X after
    assert fig["answered_in_sl"] == 6  # 20 s is within, 20.0004 s is not
    assert fig["service_level"] == 0.6667  # 6 / (10 - 1)
    assert fig["asa_s"] == pytest.approx(72.3904 / 7, abs=1e-3)
    assert fig["p90_answer_s"] == 20.0  # the 7th of 7, 20.0004, to the tenth below
    assert fig["longest_wait_s"] == 42.0
    assert fig["aht_s"] == 30.0


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[CrmStore]:
    store = await CrmStore.open(db_url)
    async with store.engine.begin() as conn:
        await conn.execute(delete(CallLeg))
    try:
        yield store
    finally:
        await store.close()


def live_after(events: list[CallEvent]) -> LiveStats:
    live = LiveStats(LIMITS, {"tier1": "tier1"})
    for event in events:
        live.apply(event)
    return live


def test_live_figures_count_the_grace_and_the_threshold_as_worked_out() -> None:
    live = live_after(the_calls())
    assert_worked_out(live.to_dict()["queue"]["tier1"])


async def test_period_figures_count_the_grace_and_the_threshold_as_worked_out(
    store: CrmStore,
) -> None:
    live = live_after(the_calls())
    await write_legs(store.engine, live.today())
    report = await period_figures(store.engine, T0, T0 + 3600, "queue", LIMITS)
    assert_worked_out(report.groups["tier1"].to_dict())
    assert report.groups["tier1"].to_dict() == live.to_dict()["queue"]["tier1"]


async def test_a_call_waiting_across_midnight_counts_on_the_day_it_was_offered(
    store: CrmStore,
) -> None:
    """M joins at 23:59:50, is answered at 00:00:10 (20 s: within) and ends at 00:01:10; N is
    offered at 00:00:30 and answered after 4 s. The day before has M; the new day has only N,
    live (``/api/stats/live`` after midnight) and over the period."""
    day = 86400.0
    events = answered("M", -10, 20) + answered("N", 30, 4)
    events.sort(key=lambda e: e.ts or 0.0)
    live = live_after(events)
    today = live.to_dict()["queue"]["tier1"]
    assert (today["offered"], today["answered"], today["asa_s"]) == (1, 1, 4.0)
    assert live.calls_today() == {"Agent 1001": 1}
    assert live.legs.live_legs() == []  # both ended
    book = LegBook({"tier1": "tier1"})
    await write_legs(store.engine, [leg for e in events for leg in book.feed(e)])
    before = await period_figures(store.engine, T0 - day, T0, "queue", LIMITS)
    after = await period_figures(store.engine, T0, T0 + day, "queue", LIMITS)
    assert (before.groups["tier1"].offered, before.groups["tier1"].asa_s) == (1, 20.0)
    assert before.groups["tier1"].service_level == 1.0
    assert (after.groups["tier1"].offered, after.groups["tier1"].asa_s) == (1, 4.0)
