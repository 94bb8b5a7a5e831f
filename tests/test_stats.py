"""Statistics on hand-built call sequences whose answers are worked out here, in Python (live)
and in SQL over a period (SQLite and PostgreSQL): both must give the same, right, figures.

The hour starting at T0 holds five tier-1 calls and an outbound one:

- A: answered by 1001 after 10 s, talk 60 s;
- B: rings 1001, the caller hangs up during ringing after 30 s (an abandon);
- C: the caller hangs up after 3 s (a short abandon: grace 5 s);
- D: answered by 1002 after 25 s (outside 20 s), talk 40 s, blind transfer to tier 2, answered
  there by 2001 after 5 s, talk 30 s: offered once in tier 1 and once in tier 2;
- E: joins at T0+3590, answered at T0+3610 (20 s, within: the threshold is inclusive), talk
  20 s: it spans the boundary and counts in the hour it was offered;
- F: an outbound call by 1001, 45 s of talk: no queue, counted apart.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import delete

from crm_core.models import AgentActivity, CallLeg, Interaction
from crm_core.store import CrmStore
from crm_core.types import InteractionRecord
from cti.stats.figures import Thresholds, figures, grouped
from cti.stats.legs import Activity, AgentBook, Leg, LegBook
from cti.stats.period import period_figures
from cti.stats.store import legs_since, write_activity, write_legs
from cti.tracker.events import CallEvent

T0 = 1_795_392_000.0  # an hour boundary (UTC)
HOUR = 3600.0
TIERS = {"tier1": "tier1", "tier2": "tier2"}
LIMITS = Thresholds(default_s=20.0, short_abandon_s=5.0)


def ev(call: str, name: str, at: float, **data: Any) -> CallEvent:
    return CallEvent(call, name, T0 + at, data)  # type: ignore[arg-type]


def agent_member(ext: str) -> dict[str, str]:
    return {"member": f"Agent {ext}", "interface": f"Local/{ext}@agents"}


def answered_call(
    call: str, at: float, wait: float, talk: float, ext: str, queue: str = "tier1"
) -> list[CallEvent]:
    return [
        ev(call, "offered", at, caller="+442071234567"),
        ev(call, "queued", at, queue=queue),
        ev(call, "ringing", at + 1, queue=queue, **agent_member(ext)),
        ev(call, "answered", at + wait, agent=f"Agent {ext}", queue=queue, **agent_member(ext)),
        ev(call, "ended", at + wait + talk, hangup_by="caller"),
    ]


def the_hour() -> list[CallEvent]:
    events = answered_call("A", 0, 10, 60, "1001")
    events += [
        ev("B", "offered", 100, caller="+441632960001"),
        ev("B", "queued", 100, queue="tier1"),
        ev("B", "ringing", 110, queue="tier1", **agent_member("1001")),
        ev("B", "ring_stopped", 130, queue="tier1", reason="caller_gone", **agent_member("1001")),
        ev("B", "abandoned", 130, queue="tier1", wait_s=30.0),
        ev("B", "ended", 130, hangup_by="caller"),
        ev("C", "offered", 200, caller="+441632960002"),
        ev("C", "queued", 200, queue="tier1"),
        ev("C", "left_queue", 203, queue="tier1", reason="abandon"),
        ev("C", "abandoned", 203, queue="tier1", wait_s=3.0),
        ev("C", "ended", 203, hangup_by="caller"),
        ev("D", "offered", 300, caller="+442071234567"),
        ev("D", "queued", 300, queue="tier1"),
        ev("D", "answered", 325, agent="Agent 1002", queue="tier1", **agent_member("1002")),
        ev("D", "transferred", 365, kind="blind", from_agent="Agent 1002", to="8002"),
        ev("D", "queued", 365, queue="tier2"),
        ev("D", "answered", 370, agent="Agent 2001", queue="tier2", **agent_member("2001")),
        ev("D", "ended", 400, hangup_by="agent"),
        ev("F", "offered", 500, caller="1001", direction="outbound"),
        ev("F", "answered", 505, agent="Agent 1001", direction="outbound"),
        ev("F", "ended", 550, hangup_by="agent", direction="outbound"),
    ]
    return events + answered_call("E", 3590, 20, 20, "1001")


def legs_of(events: list[CallEvent]) -> list[Leg]:
    book = LegBook(TIERS)
    legs: list[Leg] = []
    for event in events:
        legs.extend(book.feed(event))
    return legs + book.live_legs()


def agent_day() -> list[Activity]:
    def state(at: float, logged_in: bool, paused: bool, reason: str = "") -> CallEvent:
        data = {"queue": "tier1", "logged_in": logged_in, "paused": paused, "reason": reason}
        return ev("", "agent_state", at, **agent_member("1001"), **data)

    book = AgentBook()
    closed: list[Activity] = []
    for event in (
        state(-600, True, False),
        state(1000, True, True, "lunch"),
        state(1300, True, False),
        state(3000, False, False),
    ):
        closed.extend(book.feed(event))
    return closed


def worked_out_tier1(fig: Any) -> None:
    assert (fig.offered, fig.answered, fig.abandoned, fig.short_abandoned) == (5, 3, 1, 1)
    assert fig.answered_in_sl == 2  # A (10 s) and E (20 s); D waited 25 s
    assert fig.service_level == 0.5  # 2 / (5 offered - 1 short abandon)
    assert fig.asa_s == pytest.approx((10 + 25 + 20) / 3, abs=1e-3)
    assert fig.p90_answer_s == 25.0  # nearest rank: the 3rd of [10, 20, 25]
    assert fig.longest_wait_s == 30.0  # B, abandoned while ringing
    assert fig.aht_s == pytest.approx((60 + 40 + 20) / 3, abs=1e-3)
    assert (fig.escalations_out, fig.transfers_out) == (1, 0)


def test_the_hour_worked_out_by_hand_in_python() -> None:
    legs = legs_of(the_hour())
    by_tier = grouped(legs, "tier", LIMITS)
    worked_out_tier1(by_tier["tier1"])
    tier2 = by_tier["tier2"]
    assert (tier2.offered, tier2.answered, tier2.service_level, tier2.asa_s) == (1, 1, 1.0, 5.0)
    assert tier2.aht_s == 30.0
    assert {leg.call_id for leg in legs} == {"A", "B", "C", "D", "E"}  # F had no queue
    by_agent = grouped(legs, "agent", LIMITS)
    assert sorted(by_agent) == ["Agent 1001", "Agent 1002", "Agent 2001"]
    assert by_agent["Agent 1001"].answered == 2  # A and E; B only rang
    assert by_agent["Agent 1002"].escalations_out == 1


def test_a_call_spanning_the_boundary_counts_in_the_hour_it_was_offered() -> None:
    legs = legs_of(the_hour())
    by_hour = grouped(legs, "hour", LIMITS)
    assert list(by_hour) == ["2026-11-23T00:00Z"]
    assert by_hour["2026-11-23T00:00Z"].offered == 6  # 5 in tier 1, 1 in tier 2
    assert figures([leg for leg in legs if leg.joined_at >= T0 + HOUR], LIMITS).offered == 0


def test_a_waiting_caller_counts_in_the_longest_wait_so_far() -> None:
    book = LegBook(TIERS)
    book.feed(ev("W", "offered", 0, caller="+442071234567"))
    book.feed(ev("W", "queued", 0, queue="tier1"))
    fig = figures(book.live_legs(), LIMITS, now=T0 + 42)
    assert (fig.offered, fig.answered, fig.longest_wait_s, fig.service_level) == (1, 0, 42, 0.0)


def test_pauses_and_logins_become_intervals() -> None:
    closed = agent_day()
    assert [(a.kind, a.started_at - T0, a.ended_at, a.reason) for a in closed] == [
        ("pause", 1000, T0 + 1300, "lunch"),
        ("login", -600, T0 + 3000, ""),
    ]


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[CrmStore]:
    store = await CrmStore.open(db_url)
    async with store.engine.begin() as conn:
        for model in (CallLeg, AgentActivity, Interaction):
            await conn.execute(delete(model))
    try:
        yield store
    finally:
        await store.close()


def record(call: str, at: float, customer: int | None, direction: str, **kw: Any) -> Any:
    return InteractionRecord(
        call_id=call,
        customer_id=customer,
        caller="+442071234567",
        direction=direction,  # type: ignore[arg-type]
        started_at=datetime.fromtimestamp(T0 + at, UTC),
        **kw,
    )


async def test_the_same_hour_in_sql_gives_the_same_figures(store: CrmStore) -> None:
    legs = legs_of(the_hour())
    await write_legs(store.engine, legs)
    await write_activity(store.engine, agent_day())
    ada = await store.upsert_customer(name="Ada", phones=["+442071234567"])
    cid = ada.customer_id
    await store.record_interaction(record("A", 0, cid, "inbound", agents=("Agent 1001",)))
    await store.record_interaction(record("D", 300, cid, "inbound"))  # A's caller again: repeat
    await store.record_interaction(
        record("F", 500, None, "outbound", outcome="answered", talk_s=45.0)
    )

    report = await period_figures(store.engine, T0, T0 + HOUR, "tier", LIMITS)
    worked_out_tier1(report.groups["tier1"])
    python = grouped(legs, "tier", LIMITS)
    assert {k: v.to_dict() for k, v in report.groups.items()} == {
        k: v.to_dict() for k, v in python.items()
    }
    assert report.repeat_calls == {"tier1": 1}  # D: its first leg was in tier 1
    assert report.outbound == {"calls": 1, "answered": 1, "talk_s": 45.0, "avg_talk_s": 45.0}
    agent = report.agents["Agent 1001"]
    assert agent["login_s"] == 3000.0  # clipped to the period: from T0, not T0-600
    assert agent["pause_s"] == 300.0 and agent["pause_by_reason"] == {"lunch": 300.0}
    assert agent["calls"] == 2 and agent["handle_s"] == 80.0  # A 60 s + E 20 s
    assert agent["occupancy"] == pytest.approx(80 / 2700, abs=1e-4)

    by_agent = await period_figures(store.engine, T0, T0 + HOUR, "agent", LIMITS)
    assert by_agent.repeat_calls == {"Agent 1001": 1}  # A, the call before D, was 1001's
    assert by_agent.groups["Agent 1001"].answered == 2
    assert by_agent.agents == report.agents  # handle time by agent: from its own GROUP BY

    later = await period_figures(store.engine, T0 + HOUR, T0 + 2 * HOUR, "queue", LIMITS)
    assert later.groups == {}  # E was answered after the boundary but offered before it


def test_live_figures_and_calls_today_start_again_each_day() -> None:
    from cti.stats.live import LiveStats

    live = LiveStats(LIMITS, TIERS)
    for event in the_hour():
        live.apply(event)
    assert live.calls_today() == {"Agent 1001": 2, "Agent 1002": 1, "Agent 2001": 1}
    assert live.figures("tier")["tier1"].offered == 5
    for event in answered_call("next-day", 86400 + 60, 4, 30, "1002"):
        live.apply(event)
    assert live.calls_today() == {"Agent 1002": 1}
    assert {k: f.offered for k, f in live.figures("tier").items()} == {"tier1": 1}


async def test_sql_and_python_agree_on_many_fractional_waits_and_holds(store: CrmStore) -> None:
    import random

    rnd = random.Random(3)
    legs = []
    for n in range(400):
        joined = T0 + n * 7.3
        leg = Leg(f"r{n}", 0, rnd.choice(("tier1", "tier2")), None, joined)
        leg.tier = leg.queue
        if rnd.random() < 0.85:
            leg.answered_at = joined + rnd.expovariate(1 / 18)
            leg.ended_at, leg.outcome = leg.answered_at + rnd.uniform(10, 300), "answered"
            leg.agent = rnd.choice(("Agent 1001", "Agent 1002", "Agent 2001"))
            if rnd.random() < 0.3:  # held for part of the talk (kept on the leg)
                leg.hold_s = round(rnd.uniform(0, leg.ended_at - leg.answered_at), 3)
        else:
            leg.left_at, leg.outcome = joined + rnd.uniform(0, 60), "abandoned"
        legs.append(leg)
    await write_legs(store.engine, legs)
    for by in ("queue", "agent", "hour"):
        report = await period_figures(store.engine, T0, T0 + 3 * HOUR, by, LIMITS)
        python = grouped(legs, by, LIMITS)
        assert {k: v.to_dict() for k, v in report.groups.items()} == {
            k: v.to_dict() for k, v in python.items()
        }
        assert any(v.avg_hold_s for v in report.groups.values())


async def test_sql_and_python_leave_legs_of_unknown_hold_and_wrap_up_out_of_their_means(
    store: CrmStore,
) -> None:
    """Legs recovered from queue_log know their talk, not their hold or wrap-up (NULL)."""
    legs = []
    for n, (talk, hold, wrap) in enumerate([(60.0, 5.0, 10.0), (100.0, None, None)]):
        leg = Leg(f"u{n}", 0, "tier1", "tier1", T0 + n, agent="Agent 1001")
        leg.answered_at, leg.outcome = T0 + n + 4, "answered"
        leg.ended_at, leg.hold_s, leg.wrap_s = leg.answered_at + talk, hold, wrap
        legs.append(leg)
    await write_legs(store.engine, legs)
    assert [(leg.hold_s, leg.wrap_s) for leg in await legs_since(store.engine, T0)] == [
        (5.0, 10.0),
        (None, None),
    ]
    for by in ("queue", "agent"):
        report = await period_figures(store.engine, T0, T0 + HOUR, by, LIMITS)
        python = grouped(legs, by, LIMITS)
        assert {k: v.to_dict() for k, v in report.groups.items()} == {
            k: v.to_dict() for k, v in python.items()
        }
        (fig,) = report.groups.values()
        assert (fig.answered, fig.aht_s, fig.avg_hold_s) == (2, 70.0, 5.0)  # not (160 + 10) / 2
    # The agent surely worked the talk of both: occupancy's handle time counts it.
    assert report.agents["Agent 1001"]["handle_s"] == 170.0
    assert report.agents["Agent 1001"]["calls"] == 2


async def test_the_90th_percentile_is_the_nearest_rank_where_floating_point_rounds_up(
    store: CrmStore,
) -> None:
    # 0.9 * 70 is 63.00000000000001 in floating point; the nearest rank is still the 63rd.
    legs = []
    for n in range(1, 71):
        leg = Leg(f"p{n}", 0, "tier1", "tier1", T0 + n * 60)
        leg.answered_at, leg.agent, leg.outcome = leg.joined_at + n, "Agent 1001", "answered"
        legs.append(leg)
    await write_legs(store.engine, legs)
    report = await period_figures(store.engine, T0, T0 + 3 * HOUR, "queue", LIMITS)
    assert report.groups["tier1"].p90_answer_s == 63.0
    assert grouped(legs, "queue", LIMITS)["tier1"].p90_answer_s == 63.0


async def test_an_instance_taking_over_counts_today_from_the_legs_written_before(
    store: CrmStore,
) -> None:
    from cti.stats.live import LiveStats

    seen = LiveStats(LIMITS, TIERS)  # the instance that ingested the PBX until now
    for event in the_hour():
        seen.apply(event)
    await write_legs(store.engine, legs_of(the_hour()))  # each call's legs, as it ended
    taker = LiveStats(LIMITS, TIERS)
    legs = await legs_since(store.engine, T0)
    assert taker.seed(legs, T0) == 6
    later = T0 + HOUR + 60
    assert taker.to_dict(later) == seen.to_dict(later)  # the whole day, not from the takeover
    assert taker.calls_today() == seen.calls_today()
    assert taker.seed(legs, T0) == 0  # read twice: counted once

    # A call taken back and ended here replaces its legs read from the database; a new one
    # adds to them.
    for event in answered_call("A", 0, 10, 60, "1001") + answered_call("G", 3700, 5, 9, "1002"):
        taker.apply(event)
    for event in answered_call("G", 3700, 5, 9, "1002"):
        seen.apply(event)
    assert taker.to_dict(later) == seen.to_dict(later)
    assert taker.figures("tier")["tier1"].offered == 6


async def test_legs_are_read_back_for_one_pbx_from_a_day_on(store: CrmStore) -> None:
    legs = legs_of(answered_call("lyon:1", 10, 5, 30, "1001"))
    legs += legs_of(answered_call("lyon_2:1", 20, 5, 30, "1001"))  # "_" is not a wildcard
    legs += legs_of(answered_call("paris:1", 30, 5, 30, "1001"))
    legs += legs_of(answered_call("lyon:0", -60, 5, 30, "1001"))  # the day before T0
    await write_legs(store.engine, legs)
    assert [leg.call_id for leg in await legs_since(store.engine, T0, "lyon:")] == ["lyon:1"]
    assert len(await legs_since(store.engine, T0)) == 3
    (back,) = await legs_since(store.engine, T0, "paris:")
    assert back == next(leg for leg in legs if leg.call_id == "paris:1")
