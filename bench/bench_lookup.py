"""Caller-ID resolution at 1,000,000 customers, on SQLite and PostgreSQL.

For each store, measured in the same run on the same seeded data and the same caller IDs:

- ``CrmStore.resolve``, cache off: normalise the presented caller ID + one indexed query
  (+ the ranking queries when the number is shared);
- ``CrmStore.resolve``, cache on (30 s TTL, 10,000 entries), the same caller IDs;
- ``bare``: the simplest implementation of the same job: the raw driver (aiosqlite / asyncpg)
  running one indexed ``SELECT`` on the ``e164`` column, given the already-normalised number;
- open loop: new resolutions arriving at ``--rate`` per second (uncached), latency measured
  from each one's scheduled start, so a slow store shows up as queueing.

The seeded stores are reused between runs: the SQLite file in ``bench/results/`` and the
PostgreSQL database ``cti_bench_lookup`` (on ``$CTI_BENCH_PG``, default 127.0.0.1:5432).

    .venv/bin/python bench/bench_lookup.py                          # 1,000,000 customers, both
    .venv/bin/python bench/bench_lookup.py --customers 100000 --stores sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiosqlite  # noqa: E402
import asyncpg  # noqa: E402

from crm_core.phone import to_e164  # noqa: E402
from crm_core.seed import DEMO_NUMBERS, DEMO_UNKNOWN_NUMBER, seed  # noqa: E402
from crm_core.store import CrmStore  # noqa: E402
from crm_core.testing import wipe  # noqa: E402
from cti.logsetup import configure_logging  # noqa: E402

RESULTS = ROOT / "bench" / "results"
PG_ADMIN = os.environ.get("CTI_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
PG_DB = "cti_bench_lookup"
BARE_SQL = (
    "SELECT DISTINCT c.id, c.external_id, c.name FROM phone_numbers p "
    "JOIN customers c ON c.id = p.customer_id WHERE p.e164 = {param}"
)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def line(name: str, latencies: list[float], wall: float) -> str:
    ms = [v * 1000 for v in latencies]
    return (
        f"  {name:<32} p50 {pct(ms, 0.5):6.3f} ms  p99 {pct(ms, 0.99):6.3f} ms  "
        f"max {max(ms):7.2f} ms  mean {statistics.fmean(ms):6.3f} ms  "
        f"{len(ms) / wall:8.0f} lookups/s"
    )


async def closed_loop(
    fn: Callable[[str], Awaitable[Any]], callers: list[str]
) -> tuple[list[float], float]:
    latencies = []
    started = time.perf_counter()
    for caller in callers:
        t0 = time.perf_counter()
        await fn(caller)
        latencies.append(time.perf_counter() - t0)
    return latencies, time.perf_counter() - started


async def open_loop(
    fn: Callable[[str], Awaitable[Any]], callers: list[str], rate: float
) -> tuple[list[float], list[float], float]:
    """Start one resolution every 1/rate s whatever happens. Latency is measured from each
    one's scheduled start (queueing included), service time from when it actually started."""
    latencies: list[float] = []
    service: list[float] = []
    started = time.perf_counter()

    async def one(caller: str, due: float) -> None:
        began = time.perf_counter()
        await fn(caller)
        done = time.perf_counter()
        latencies.append(done - due)
        service.append(done - began)

    async with asyncio.TaskGroup() as group:
        for i, caller in enumerate(callers):
            due = started + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            group.create_task(one(caller, due))
    return latencies, service, time.perf_counter() - started


async def count_customers(url: str) -> int:
    """``SELECT count(*)`` on a fresh driver connection: the size measured, whatever the
    seeder reported (it once reported 1,000,000 on SQLite while 5,009 were committed)."""
    if url.startswith("sqlite"):
        async with (
            aiosqlite.connect(url.split(":///", 1)[1]) as conn,
            conn.execute("SELECT count(*) FROM customers") as cursor,
        ):
            row = await cursor.fetchone()
            return int(row[0]) if row else 0
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM customers"))
    finally:
        await conn.close()


def right_size(count: int, customers: int) -> bool:
    """``customers`` generated ones, plus the fixed demo customers the seeder adds."""
    demo = len(DEMO_NUMBERS) + 1  # two companies share the switchboard number
    return customers <= count <= customers + demo


async def ensure_seeded(url: str, customers: int) -> tuple[CrmStore, int]:
    """The store of ``customers`` seeded customers and its counted size; exits (no figures)
    when the count disagrees with the size asked for."""
    store = await CrmStore.open(url, cache_size=0)
    have = await count_customers(url)
    if not right_size(have, customers):
        print(f"  seeding {customers:,} customers (counted {have:,}); reused next time", flush=True)
        await wipe(store)
        report = await seed(
            store,
            customers,
            seed=42,
            progress=sys.stderr.isatty(),
            on_batch=lambda n: n % 100_000 or print(f"    {n:,}", flush=True),
        )
        print(f"  seeded in {report.seconds:.0f} s: {report.rows}", flush=True)
        have = await count_customers(url)
    if not right_size(have, customers):
        await store.close()
        raise SystemExit(
            f"  SELECT count(*) finds {have:,} customers, not {customers:,}: no figures printed"
        )
    print(f"  measured at {have:,} customers (SELECT count(*) on a fresh connection)", flush=True)
    return store, have


async def sample_callers(store: CrmStore, count: int, rng: random.Random) -> list[str]:
    """Caller IDs as a PBX presents them: mostly customers' numbers in the formats they were
    typed, some unknown numbers, withheld numbers and extensions."""
    from sqlalchemy import func, select

    from crm_core.models import PhoneNumber

    async with store.engine.connect() as conn:
        top = int((await conn.execute(select(func.max(PhoneNumber.id)))).scalar_one())
        ids = [rng.randint(1, top) for _ in range(int(count * 0.85))]
        known = list(
            (
                await conn.execute(
                    select(PhoneNumber.number).where(
                        PhoneNumber.id.in_(ids), PhoneNumber.e164.is_not(None)
                    )
                )
            ).scalars()
        )
    callers = known + [f"+4420794{rng.randint(61000, 69999)}" for _ in range(count // 20)]
    callers += ["anonymous", "<unknown>", "201", "8002", DEMO_UNKNOWN_NUMBER] * (count // 50)
    rng.shuffle(callers)
    return callers[:count]


async def bench_store(name: str, url: str, bare_connect: Callable[[], Awaitable[Any]],
                      args: argparse.Namespace) -> None:  # fmt: skip
    print(f"\n{name}: {url}", flush=True)
    rng = random.Random(7)
    store, counted = await ensure_seeded(url, args.customers)
    if args.seed_only:
        await store.close()
        return
    callers = await sample_callers(store, args.lookups, rng)
    e164s = [to_e164(c, "GB") for c in callers]
    kinds = {s: 0 for s in ("match", "ambiguous", "unknown", "anonymous", "internal")}
    for caller in callers[:2000]:
        kinds[(await store.resolve(caller)).status] += 1
    print(f"  caller mix (first 2000): {kinds}", flush=True)
    await store.close()

    uncached = await CrmStore.open(url, cache_size=0, migrate=False)
    cached = await CrmStore.open(url, cache_size=10_000, cache_ttl_s=30, migrate=False)
    try:
        # Warm both the database pages and the statement caches on a slice first.
        await closed_loop(uncached.resolve, callers[:1000])
        lat, wall = await closed_loop(uncached.resolve, callers)
        print(line("CrmStore.resolve (no cache)", lat, wall), flush=True)
        # Repeat callers: 5,000 distinct caller IDs (half the cache), each calling 4 times.
        repeat = callers[:5000] * 4
        rng.shuffle(repeat)
        lat, wall = await closed_loop(cached.resolve, repeat)
        hits = cached.cache.hits / max(1, cached.cache.hits + cached.cache.misses)
        print(line(f"CrmStore.resolve (cached, {hits:.0%} hits)", lat, wall), flush=True)

        conn, query = await bare_connect()
        try:
            numbers = [e or "+440000000000" for e in e164s]
            await closed_loop(query, numbers[:1000])
            lat, wall = await closed_loop(query, numbers)
            print(line("bare driver SELECT", lat, wall), flush=True)
        finally:
            await conn.close()

        count = int(args.rate * args.seconds)
        lat, service, wall = await open_loop(uncached.resolve, (callers * 3)[:count], args.rate)
        print(line(f"open loop {args.rate:.0f}/s, from due", lat, wall), flush=True)
        print(line(f"open loop {args.rate:.0f}/s, service", service, wall), flush=True)

        # What the screen-pop asks next: the 360° view of the resolved customer.
        ids = [str(rng.randint(1, counted)) for _ in range(args.views)]
        lat, wall = await closed_loop(lambda cid: uncached.view(int(cid)), ids)
        print(line("CrmStore.view (360°)", lat, wall).replace("lookups/s", "views/s"))
    finally:
        await uncached.close()
        await cached.close()


async def main(args: argparse.Namespace) -> None:
    configure_logging("warning")
    print(
        f"caller-ID resolution, {args.customers:,} customers asked for (each store states the "
        f"size it counted), {args.lookups:,} lookups each"
    )
    if "sqlite" in args.stores:
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"crm-{args.customers}.db"

        async def sqlite_bare() -> tuple[Any, Callable[[str], Awaitable[Any]]]:
            conn = await aiosqlite.connect(path)
            sql = BARE_SQL.format(param="?")

            async def query(e164: str) -> Any:
                async with conn.execute(sql, (e164,)) as cursor:
                    return await cursor.fetchall()

            return conn, query

        await bench_store("SQLite", f"sqlite+aiosqlite:///{path}", sqlite_bare, args)
    if "postgresql" in args.stores:
        admin = await asyncpg.connect(PG_ADMIN)
        try:
            if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", PG_DB):
                await admin.execute(f'CREATE DATABASE "{PG_DB}"')
        finally:
            await admin.close()
        dsn = PG_ADMIN.rsplit("/", 1)[0] + "/" + PG_DB

        async def pg_bare() -> tuple[Any, Callable[[str], Awaitable[Any]]]:
            conn = await asyncpg.connect(dsn)
            statement = await conn.prepare(BARE_SQL.format(param="$1"))
            return conn, statement.fetch

        url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
        await bench_store("PostgreSQL", url, pg_bare, args)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=20_000)
    parser.add_argument("--views", type=int, default=2000, help="360° views to time")
    parser.add_argument("--rate", type=float, default=500.0, help="open-loop arrivals per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="open-loop duration")
    parser.add_argument("--seed-only", action="store_true", help="seed (or check) and stop")
    parser.add_argument("--stores", nargs="+", default=["sqlite", "postgresql"],
                        choices=["sqlite", "postgresql"])  # fmt: skip
    asyncio.run(main(parser.parse_args()))
