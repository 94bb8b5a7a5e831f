"""A month of statistics for a 200-agent centre (1,500,000 interactions), SQLite and PostgreSQL.

Generated month: 30 days of 1,500,000 calls (5% outbound) from 100,000 customers (a third of
the calls from unknown numbers), 200 agents in 3 tiers, about 8% of the inbound calls
escalated to a second tier (so about 1,560,000 legs), waits, abandons and talk times drawn at
random with a fixed seed; pauses and logins for every agent each day.

For each store, on the same data:

- ``report``: ``cti.stats.period.period_figures`` for the whole month, grouped by queue, tier,
  agent and hour (one aggregate query, the 90th percentile window query, repeat calls over
  ``interactions``, outbound calls, agent occupancy), as ``GET /api/stats`` and
  ``cti report`` run it;
- ``marks``: ``crm_core.repeats.backfill`` (what migration 0010 runs): every call's gap to its
  customer's previous call, written on its legs, timed once after loading;
- ``repeat calls, before``: the query reports ran before repeat calls were marked when written
  (a window over the customers' calls in ``interactions`` joined back to the legs,
  ``tests/stats_reference.py``), timed beside the report's repeat counts (which must agree);
- ``plain``: the simplest implementation, one plain ``SELECT queue, count(*), ... GROUP BY``
  over the legs (no percentile, no repeats, no occupancy);
- ``count``: an independent ``SELECT count(*)`` of the legs and interactions in the period,
  which must equal the report's offered total and the generated numbers.

The databases are rebuilt on each run: a SQLite file in ``bench/results/`` and the
PostgreSQL database ``cti_bench_stats`` (on ``$CTI_BENCH_PG``).

    .venv/bin/python bench/bench_stats.py                          # 1,500,000, both stores
    .venv/bin/python bench/bench_stats.py --interactions 100000 --stores sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import asyncpg  # noqa: E402
from sqlalchemy import text  # noqa: E402
from stats_reference import repeat_calls_by_window  # noqa: E402

from crm_core.repeats import backfill  # noqa: E402
from crm_core.store import CrmStore  # noqa: E402
from cti.logsetup import configure_logging  # noqa: E402
from cti.stats.figures import Thresholds  # noqa: E402
from cti.stats.period import period_figures, report_engine  # noqa: E402

RESULTS = ROOT / "bench" / "results"
PG_ADMIN = os.environ.get("CTI_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
PG_DB = "cti_bench_stats"
START = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
DAYS = 30
TIERS = ("tier1", "tier2", "tier3")
CUSTOMERS = 100_000
PLAIN = (
    "SELECT queue, count(*), sum(CASE WHEN answered_at IS NOT NULL THEN 1 ELSE 0 END), "
    "avg(answered_at - joined_at) FROM call_legs "
    "WHERE joined_at >= :start AND joined_at < :end GROUP BY queue"
)


def generate(calls: int, seed: int = 7) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(interactions, legs) rows; interactions: call_id, customer_id, direction, started_at
    (epoch), outcome, talk_s; legs: call_legs columns in table order."""
    rnd = random.Random(seed)
    agents = [f"Agent {1000 + n}" for n in range(200)]
    by_tier = {t: agents[i::3] for i, t in enumerate(TIERS)}
    interactions: list[tuple[Any, ...]] = []
    legs: list[tuple[Any, ...]] = []
    span = DAYS * 86400
    for n in range(calls):
        call = f"{START:.0f}.{n}"
        at = START + rnd.random() * span
        customer = rnd.randint(1, CUSTOMERS) if rnd.random() < 0.67 else None
        if rnd.random() < 0.05:
            talk = rnd.uniform(20, 400)
            interactions.append((call, customer, "outbound", at, "answered", talk))
            continue
        tier = rnd.choice(TIERS)
        joined, seq, outcome, total_talk = at, 0, "answered", 0.0
        while True:
            wait = rnd.expovariate(1 / 25)
            if rnd.random() < 0.08 and seq == 0:  # abandoned
                leg = (
                    call,
                    seq,
                    tier,
                    tier,
                    None,
                    "inbound",
                    None,
                    joined,
                    int(joined // 3600),
                    None,
                    joined + wait,
                    None,
                    "abandoned",
                    None,
                    0.0,
                )
                legs.append(leg)
                outcome = "abandoned"
                break
            agent = rnd.choice(by_tier[tier])
            talk = rnd.uniform(30, 600)
            total_talk += talk
            escalate = seq == 0 and tier != "tier3" and rnd.random() < 0.08
            answered = joined + wait
            legs.append(
                (
                    call,
                    seq,
                    tier,
                    tier,
                    agent,
                    "inbound",
                    None,
                    joined,
                    int(joined // 3600),
                    answered,
                    None,
                    answered + talk,
                    "answered",
                    "escalation" if escalate else None,
                    rnd.uniform(0, 60),
                )
            )
            if not escalate:
                break
            seq, tier, joined = 1, TIERS[TIERS.index(tier) + 1], answered + talk
        interactions.append((call, customer, "inbound", at, outcome, total_talk or None))
    return interactions, legs


def activity_rows() -> list[tuple[Any, ...]]:
    rows = []
    for day in range(DAYS):
        base = START + day * 86400 + 8 * 3600
        for n in range(200):
            agent = f"Agent {1000 + n}"
            rows.append((agent, "login", "", base, base + 8 * 3600))
            rows.append((agent, "pause", "lunch", base + 4 * 3600, base + 4.5 * 3600))
    return rows


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


LEG_COLUMNS = (
    "call_id",
    "seq",
    "queue",
    "tier",
    "agent",
    "direction",
    "caller",
    "joined_at",
    "joined_hour",
    "answered_at",
    "left_at",
    "ended_at",
    "outcome",
    "exit",
    "wrap_s",
)


def load_sqlite(
    path: Path, interactions: list[tuple[Any, ...]], legs: list[tuple[Any, ...]]
) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    db.executemany(
        "INSERT INTO customers (id, name, kind, vip, hearing_impaired, wheelchair_user, "
        "payment_arrears, do_not_call, marketing_opt_in) VALUES (?, ?, 'person', 0,0,0,0,0,0)",
        ((n, f"Customer {n}") for n in range(1, CUSTOMERS + 1)),
    )
    db.executemany(
        "INSERT INTO interactions (call_id, customer_id, direction, started_at, outcome, talk_s, "
        "queues, tiers, agents, transfers, notes, extra) "
        "VALUES (?, ?, ?, ?, ?, ?, '[]', '[]', '[]', '[]', '', '{}')",
        (
            (c, cu, d, _dt(at).strftime("%Y-%m-%d %H:%M:%S.%f"), o, t)
            for c, cu, d, at, o, t in interactions
        ),
    )
    db.executemany(
        f"INSERT INTO call_legs ({', '.join(LEG_COLUMNS)}) VALUES ({', '.join('?' * 15)})", legs
    )
    db.executemany(
        "INSERT INTO agent_activity (agent, kind, reason, started_at, ended_at) VALUES (?,?,?,?,?)",
        activity_rows(),
    )
    db.commit()
    db.execute("ANALYZE")
    db.close()


async def load_pg(
    dsn: str, interactions: list[tuple[Any, ...]], legs: list[tuple[Any, ...]]
) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.copy_records_to_table(
            "customers",
            records=[
                (n, f"Customer {n}", "person", False, False, False, False, False, False)
                for n in range(1, CUSTOMERS + 1)
            ],
            columns=[
                "id",
                "name",
                "kind",
                "vip",
                "hearing_impaired",
                "wheelchair_user",
                "payment_arrears",
                "do_not_call",
                "marketing_opt_in",
            ],
        )
        await conn.copy_records_to_table(
            "interactions",
            records=[
                (c, cu, d, _dt(at), o, t, "[]", "[]", "[]", "[]", "", "{}")
                for c, cu, d, at, o, t in interactions
            ],
            columns=[
                "call_id",
                "customer_id",
                "direction",
                "started_at",
                "outcome",
                "talk_s",
                "queues",
                "tiers",
                "agents",
                "transfers",
                "notes",
                "extra",
            ],
        )
        await conn.copy_records_to_table("call_legs", records=legs, columns=list(LEG_COLUMNS))
        await conn.copy_records_to_table(
            "agent_activity",
            records=activity_rows(),
            columns=["agent", "kind", "reason", "started_at", "ended_at"],
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def measure(name: str, url: str, calls: int, legs: int, inbound_calls: int) -> None:
    store = await CrmStore.open(url)
    reports = report_engine(url)  # as the daemon and cti report run them
    end = START + DAYS * 86400
    limits = Thresholds(default_s=20.0, short_abandon_s=5.0)
    try:
        async with store.engine.connect() as conn:
            t = time.perf_counter()
            n_legs = (
                await conn.execute(
                    text("SELECT count(*) FROM call_legs WHERE joined_at >= :s AND joined_at < :e"),
                    {"s": START, "e": end},
                )
            ).scalar_one()
            n_calls = (await conn.execute(text("SELECT count(*) FROM interactions"))).scalar_one()
            count_s = time.perf_counter() - t
            t = time.perf_counter()
            plain = (await conn.execute(text(PLAIN), {"start": START, "end": end})).all()
            plain_s = time.perf_counter() - t
        print(
            f"{name}: input  {n_calls:,} interactions, {n_legs:,} legs "
            f"(generated {calls:,} and {legs:,}); count(*) {count_s * 1000:.0f} ms"
        )
        assert n_calls == calls and n_legs == legs, "the database does not hold the month"
        print(
            f"{name}: plain  one GROUP BY queue: {plain_s * 1000:.0f} ms "
            f"({sum(r[1] for r in plain):,} legs)"
        )
        for by in ("queue", "tier", "agent", "hour"):
            async with reports.connect() as conn:
                t = time.perf_counter()
                before = await repeat_calls_by_window(conn, START, end, by, 7)
                before_s = time.perf_counter() - t
            t = time.perf_counter()
            report = await period_figures(reports, START, end, by, limits)
            took = time.perf_counter() - t
            offered = sum(f.offered for f in report.groups.values())
            extra = ""
            if by == "queue":
                extra = f", {report.outbound['calls']:,} outbound"
                assert offered == n_legs, (offered, n_legs)
            print(
                f"{name}: report group_by={by}: {took * 1000:.0f} ms, {len(report.groups)} "
                f"groups, {offered:,} legs offered, "
                f"{sum(report.repeat_calls.values()):,} repeat calls{extra}; "
                f"before: the repeat-call window query alone {before_s * 1000:.0f} ms"
            )
            # The month's first legs were all offered in the month (calls start in it), so
            # the marks and the window over interactions count the same calls.
            assert report.repeat_calls == before, by
    finally:
        await reports.dispose()
        await store.close()


async def mark(url: str, name: str) -> None:
    """Repeat-call marks for the loaded month, as migration 0010 writes them."""
    store = await CrmStore.open(url)
    try:
        t = time.perf_counter()
        async with store.engine.begin() as conn:
            repeats = await conn.run_sync(backfill)
        took = time.perf_counter() - t
        async with store.engine.connect() as conn:
            marked = (
                await conn.execute(
                    text(
                        "SELECT count(*) FROM call_legs WHERE seq = 0 AND repeat_gap_s IS NOT NULL"
                    )
                )
            ).scalar_one()
            if name == "postgresql":
                await conn.execute(text("ANALYZE call_legs"))
            else:
                await conn.execute(text("ANALYZE"))
        print(
            f"{name}: marks (the migration's backfill): {took:.1f} s, {repeats:,} calls follow "
            f"an earlier one; count(*) of marked first legs {marked:,}"
        )
    finally:
        await store.close()


def _remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interactions", type=int, default=1_500_000)
    parser.add_argument("--stores", default="sqlite,postgresql")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="measure the databases of the last run (same --interactions)",
    )
    args = parser.parse_args()
    configure_logging("warning", "console")
    t = time.perf_counter()
    interactions, legs = generate(args.interactions)
    inbound = sum(1 for i in interactions if i[2] == "inbound")
    # A second leg of a call escalated just before the month's end joins after it: it is not
    # the month's (a leg counts in the period it was offered in).
    in_month = sum(1 for leg in legs if leg[7] < START + DAYS * 86400)
    print(
        f"generated {len(interactions):,} interactions ({inbound:,} inbound), {len(legs):,} "
        f"legs ({in_month:,} offered in the month) in {time.perf_counter() - t:.1f} s"
    )
    stores = args.stores.split(",")
    if "sqlite" in stores:
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / "bench_stats.db"
        url = f"sqlite+aiosqlite:///{path}"
        if not args.reuse:
            _remove_sqlite(path)
            await (await CrmStore.open(url)).close()  # migrated
            t = time.perf_counter()
            load_sqlite(path, interactions, legs)
            print(f"sqlite: loaded in {time.perf_counter() - t:.1f} s")
            await mark(url, "sqlite")
        await measure("sqlite", url, len(interactions), in_month, inbound)
    if "postgresql" in stores:
        dsn = f"{PG_ADMIN.rsplit('/', 1)[0]}/{PG_DB}"
        url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
        if not args.reuse:
            admin = await asyncpg.connect(PG_ADMIN)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{PG_DB}" WITH (FORCE)')
                await admin.execute(f'CREATE DATABASE "{PG_DB}"')
            finally:
                await admin.close()
            await (await CrmStore.open(url)).close()
            t = time.perf_counter()
            await load_pg(dsn, interactions, legs)
            print(f"postgresql: loaded in {time.perf_counter() - t:.1f} s")
            await mark(url, "postgresql")
        await measure("postgresql", url, len(interactions), in_month, inbound)


if __name__ == "__main__":
    asyncio.run(main())
