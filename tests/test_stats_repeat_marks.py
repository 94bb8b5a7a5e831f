"""Repeat calls are marked when a call's legs or interaction are written (``crm_core.repeats``),
so that a report counts them in its GROUP BY over ``call_legs``: the counts equal those of
the window query over ``interactions`` the reports ran before (``stats_reference``), for any
``repeat_days``, whichever of legs and interaction is written first, and for calls that end
out of order."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic import command
from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection
from stats_reference import repeat_calls_by_window

from crm_core import schema
from crm_core.models import AgentActivity, CallLeg, Interaction
from crm_core.repeats import backfill
from crm_core.store import CrmStore
from crm_core.types import InteractionRecord
from cti.stats.figures import Thresholds
from cti.stats.legs import Leg
from cti.stats.period import LEGS, period_figures
from cti.stats.store import write_legs

DAY = 86400.0
T0 = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
LIMITS = Thresholds(default_s=20.0, short_abandon_s=5.0)
AGENTS = ("Agent 1001", "Agent 1002", "Agent 2001", "Agent 2002")


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


class Call:
    def __init__(self, call_id: str, at: float, customer: int | None, direction: str) -> None:
        self.call_id, self.at, self.customer, self.direction = call_id, at, customer, direction
        self.legs: list[Leg] = []

    def record(self) -> InteractionRecord:
        return InteractionRecord(
            call_id=self.call_id,
            customer_id=self.customer,
            caller="+442071234567",
            direction=self.direction,  # type: ignore[arg-type]
            started_at=datetime.fromtimestamp(self.at, UTC),
        )


def a_month(rnd: random.Random, customers: list[int]) -> list[Call]:
    """Calls of a few customers over three weeks, with gaps on the N-day boundaries (exactly
    1, 3 and 7 days, and a second either side), unknown callers, outbound calls, calls put
    straight through to an agent (no leg; only as a customer's first call) and escalations."""
    calls: list[Call] = []
    n = 0

    def add(at: float, customer: int | None, direction: str = "inbound", legs: bool = True) -> None:
        nonlocal n
        n += 1
        call = Call(f"c{n:04d}", at, customer, direction)
        calls.append(call)
        if direction == "outbound" or not legs:
            return
        tier = rnd.choice(("tier1", "tier2"))
        leg = Leg(call.call_id, 0, tier, tier, at)
        if rnd.random() < 0.2:
            leg.left_at, leg.outcome = at + rnd.uniform(1, 60), "abandoned"
        else:
            leg.answered_at, leg.agent = at + rnd.uniform(1, 40), rnd.choice(AGENTS)
            leg.ended_at, leg.outcome = leg.answered_at + rnd.uniform(10, 300), "answered"
        call.legs.append(leg)
        if leg.ended_at is not None and rnd.random() < 0.2:
            leg.exit = "escalation"
            second = Leg(call.call_id, 1, "tier3", "tier3", leg.ended_at)
            second.answered_at, second.agent = leg.ended_at + 5, rnd.choice(AGENTS)
            second.ended_at, second.outcome = second.answered_at + 60, "answered"
            call.legs.append(second)

    for customer in customers:
        at = T0 + rnd.uniform(0, 2 * DAY)
        add(at, customer, legs=rnd.random() < 0.7)
        for _ in range(rnd.randint(2, 9)):
            gap = rnd.choice(
                (DAY, DAY - 1, DAY + 1, 3 * DAY, 3 * DAY + 1, 7 * DAY, 7 * DAY - 1, 7 * DAY + 1)
                + (rnd.uniform(60, 10 * DAY),) * 4
            )
            at += gap
            add(at, customer)
        add(at - 600, customer, "outbound")
    for _ in range(30):
        add(T0 + rnd.uniform(0, 25 * DAY), None)  # an unknown caller
    return calls


async def write_in_any_order(store: CrmStore, calls: list[Call], rnd: random.Random) -> None:
    """Each call's legs and interaction written in a random order, calls ending in random
    order (a customer's later call may be written before an earlier one)."""
    steps: list[tuple[str, Call]] = [("record", c) for c in calls]
    steps += [("legs", c) for c in calls if c.legs]
    rnd.shuffle(steps)
    for step, call in steps:
        if step == "record":
            await store.record_interaction(call.record())
        else:
            await write_legs(store.engine, call.legs)


PERIODS = ((T0, T0 + 30 * DAY), (T0 + 5 * DAY, T0 + 12 * DAY), (T0 + 9 * DAY, T0 + 9.5 * DAY))


async def assert_counts_as_before(store: CrmStore) -> int:
    compared = 0
    for start, end in PERIODS:
        for days in (1, 3, 7):
            for by in ("queue", "tier", "agent", "hour"):
                report = await period_figures(
                    store.engine, start, end, by, LIMITS, repeat_days=days
                )
                async with store.engine.connect() as conn:
                    before = await repeat_calls_by_window(conn, start, end, by, days)
                assert report.repeat_calls == before, (start - T0, end - T0, days, by)
                compared += sum(before.values())
    return compared


async def test_marks_count_what_the_window_query_counted(store: CrmStore) -> None:
    rnd = random.Random(15)
    customers = [(await store.upsert_customer(name=f"Customer {n}")).customer_id for n in range(12)]
    calls = a_month(rnd, customers)
    await write_in_any_order(store, calls, rnd)
    assert await assert_counts_as_before(store) > 100  # the comparison counted something


async def test_the_n_day_boundary_and_any_n_at_report_time(store: CrmStore) -> None:
    ada = (await store.upsert_customer(name="Ada")).customer_id
    calls = [
        Call("first", T0, ada, "inbound"),
        Call("exactly-7-days", T0 + 7 * DAY, ada, "inbound"),
        Call("7-days-and-a-second", T0 + 14 * DAY + 1, ada, "inbound"),
    ]
    for call in calls:
        leg = Leg(call.call_id, 0, "tier1", "tier1", call.at)
        leg.answered_at, leg.agent, leg.outcome = call.at + 3, "Agent 1001", "answered"
        leg.ended_at = call.at + 60
        await write_legs(store.engine, [leg])
        await store.record_interaction(call.record())
    async with store.engine.connect() as conn:
        stored = dict((await conn.execute(select(LEGS.c.call_id, LEGS.c.repeat_gap_s))).all())
    assert stored == {"first": None, "exactly-7-days": 7 * DAY, "7-days-and-a-second": 7 * DAY + 1}

    async def repeats(days: int) -> dict[str, int]:
        month = await period_figures(
            store.engine, T0, T0 + 30 * DAY, "queue", LIMITS, repeat_days=days
        )
        return month.repeat_calls

    assert await repeats(7) == {"tier1": 1}  # a gap of exactly 7 days is within 7 days
    assert await repeats(8) == {"tier1": 2}  # the same marks, another N
    assert await repeats(6) == {}
    await assert_counts_as_before(store)


async def test_the_migration_marks_the_calls_written_before_it(store: CrmStore) -> None:
    rnd = random.Random(16)
    customers = [(await store.upsert_customer(name=f"Customer {n}")).customer_id for n in range(6)]
    await write_in_any_order(store, a_month(rnd, customers), rnd)
    columns = (
        LEGS.c.call_id,
        LEGS.c.seq,
        LEGS.c.repeat_gap_s,
        LEGS.c.repeat_of,
        LEGS.c.repeat_agents,
    )
    async with store.engine.connect() as conn:
        live = sorted((await conn.execute(select(*columns))).all())
    assert sum(1 for row in live if row.repeat_gap_s is not None) > 10

    def migrate(conn: Connection, revision: str) -> None:
        cfg = schema.alembic_config()
        cfg.attributes["connection"] = conn
        if revision == "0009":
            command.downgrade(cfg, revision)
        else:
            command.upgrade(cfg, revision)

    async with store.engine.begin() as conn:
        await conn.run_sync(migrate, "0009")
    async with store.engine.begin() as conn:
        await conn.run_sync(migrate, "0010")
    async with store.engine.connect() as conn:
        assert sorted((await conn.execute(select(*columns))).all()) == live
    # In steps of a few customers (as on a large database), the same marks.
    async with store.engine.begin() as conn:
        await conn.execute(
            update(LEGS).values(repeat_gap_s=None, repeat_of=None, repeat_agents=None)
        )
        await conn.run_sync(lambda sync: backfill(sync, customers_per_step=2))
    async with store.engine.connect() as conn:
        assert sorted((await conn.execute(select(*columns))).all()) == live


async def test_a_report_counts_repeat_calls_from_the_legs_alone(store: CrmStore) -> None:
    rnd = random.Random(17)
    customers = [(await store.upsert_customer(name=f"Customer {n}")).customer_id for n in range(4)]
    await write_in_any_order(store, a_month(rnd, customers), rnd)
    before: dict[str, Any] = {}
    for by in ("queue", "agent"):
        report = await period_figures(store.engine, T0, T0 + 30 * DAY, by, LIMITS)
        before[by] = report.repeat_calls
    assert before["queue"] and before["agent"]
    async with store.engine.begin() as conn:
        await conn.execute(delete(Interaction))  # the report no longer reads them for repeats
    for by in ("queue", "agent"):
        report = await period_figures(store.engine, T0, T0 + 30 * DAY, by, LIMITS)
        assert report.repeat_calls == before[by]
