"""Routing latency over FastAGI against a CRM of 1,000,000 customers, beside agi-echo.

Both servers are driven by ``../shared/tools/agi-load`` (a separate process playing Asterisk 22)
in open loop, ``--rate`` new calls a second, in the same run:

- ``cti``: ``FastAgiServer`` → ``Router`` (the example config's rules, at a weekday 10:00 so
  the CRM rules are reached) → ``CrmStore`` on a SQLite file of N seeded customers, its
  caller-ID cache off so that every call goes to the database;
- ``agi-echo``: the simplest correct FastAGI server, the same five variables with no lookup.

Callers: 80% numbers of seeded customers, 10% valid numbers nobody has, 10% withheld.
Latency is agi-load's: connect to the server's close, what the dialplan waits for.
The seeded database is cached (``--db``, default in the user cache directory) and reused.
Afterwards ``agi-probe`` checks the server (bare connects and CPU, garbage, hang-ups, 520).

    .venv/bin/python bench/bench_routing.py                     # 1,000,000 customers, 200/s
    .venv/bin/python bench/bench_routing.py --customers 20000 --sessions 1000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import sys
import tempfile
import time
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import platformdirs
from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT.parent / "shared" / "tools"
sys.path.insert(0, str(ROOT))

from crm_core import CrmStore  # noqa: E402
from crm_core.types import CustomerView, Resolution  # noqa: E402
from cti.agi.server import FastAgiServer  # noqa: E402
from cti.config import load_config  # noqa: E402
from cti.gctune import tune_for_service  # noqa: E402
from cti.logsetup import configure_logging  # noqa: E402
from cti.routing.decisions import DecisionLog  # noqa: E402
from cti.routing.router import Router  # noqa: E402
from cti.routing.rules import load_rules  # noqa: E402

WEEKDAY_MORNING = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)  # Tuesday, open


class NoCrm:
    """Everyone is unknown, at once: the routing layer's own cost (server, rules, log)."""

    async def resolve(self, caller_id: str | None) -> Resolution:
        return Resolution("unknown", None, caller_id or "")

    async def view(self, customer_id: int) -> CustomerView | None:
        return None


def count_customers(path: Path) -> int:
    """``SELECT count(*)`` on a fresh driver connection: the size measured, whatever the
    seeder reported (it once reported 1,000,000 on SQLite while 5,009 were committed)."""
    with closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("SELECT count(*) FROM customers").fetchone()[0])


def right_size(count: int, customers: int) -> bool:
    """``customers`` generated ones, plus the fixed demo customers the seeder adds."""
    from crm_core.seed import DEMO_NUMBERS

    demo = len(DEMO_NUMBERS) + 1  # two companies share the switchboard number
    return customers <= count <= customers + demo


async def seeded_store(path: Path, customers: int) -> tuple[CrmStore, int]:
    """The cached database of ``customers`` seeded customers, built once (atomically), and
    its counted size; a cached file of another size is built again."""
    if path.exists() and not right_size(count_customers(path), customers):  # noqa: ASYNC240
        print(f"{path} holds {count_customers(path):,} customers, not {customers:,}: "
              "building it again", file=sys.stderr)  # fmt: skip
        path.unlink()  # noqa: ASYNC240
    if not path.exists():  # noqa: ASYNC240 (once, before anything is measured)
        from crm_core.seed import seed

        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        print(f"seeding {customers:,} customers into {path} (once)...", file=sys.stderr)
        started = time.perf_counter()
        store = await CrmStore.open(f"sqlite+aiosqlite:///{partial}")
        try:
            await seed(store, customers, seed=1, now=WEEKDAY_MORNING)
        finally:
            await store.close()
        partial.rename(path)
        print(f"seeded in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    counted = count_customers(path)
    if not right_size(counted, customers):
        raise SystemExit(
            f"SELECT count(*) finds {counted:,} customers in {path}, not {customers:,}: "
            "no figures printed"
        )
    store = await CrmStore.open(f"sqlite+aiosqlite:///{path}", cache_size=0, migrate=False)
    return store, counted


def warm_page_cache(path: Path) -> None:
    """Read the database file once: a running server's working set is in the page cache, and
    a cold one (another process's files pushed it out) times the disk, not the router."""
    with path.open("rb") as f:
        while f.read(1 << 24):
            pass


async def callers(store: CrmStore, count: int, rng: random.Random) -> list[str]:
    async with store.engine.connect() as conn:
        top = (await conn.execute(text("SELECT max(id) FROM phone_numbers"))).scalar_one()
        ids = [rng.randint(1, top) for _ in range(count)]
        rows = await conn.execute(
            text(
                "SELECT e164 FROM phone_numbers WHERE e164 IS NOT NULL "
                f"AND id IN ({','.join(map(str, ids))})"
            )
        )
        known = [r[0] for r in rows]
    out = []
    for _ in range(count):
        r = rng.random()
        if r < 0.8:
            out.append(rng.choice(known))
        elif r < 0.9:
            out.append(f"+44797946{rng.randint(0, 99999):05d}")  # Ofcom drama range: nobody's
        else:
            out.append("anonymous")
    return out


async def agi_load(port: int, callers_file: str, rate: float, sessions: int) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(TOOLS / "agi-load"), "127.0.0.1", str(port), "--rate", str(rate),
        "-m", str(sessions), "--callers", callers_file, "--tally", "CTI_REASON", "--json",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    result: dict[str, Any] = json.loads(out)
    return result


async def start_echo() -> tuple[asyncio.subprocess.Process, int]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(TOOLS / "agi-echo"), "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    line = (await proc.stdout.readline()).decode()  # "listening on 127.0.0.1:PORT"
    return proc, int(line.rsplit(":", 1)[1])


def row(name: str, r: dict[str, Any]) -> str:
    lat = r["latency_ms"]
    tally = r["tally"].get("CTI_REASON", {})
    queues = ", ".join(f"{q} {n}" for q, n in list(tally.items())[:6])
    return (
        f"{name:<10}{lat['p50']:>8} {lat['p90']:>8} {lat['p99']:>8} {lat['max']:>8} "
        f"{r['sessions_per_s']:>7} {r['error_total']:>6}   {queues}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=200.0, help="new calls a second (open loop)")
    parser.add_argument("--sessions", type=int, default=6000, help="calls per measured run")
    parser.add_argument("--db", help="cached SQLite file (default: user cache dir)")
    parser.add_argument("--no-probe", action="store_true", help="skip agi-probe afterwards")
    parser.add_argument("--seed-only", action="store_true", help="build the cached CRM and stop")
    parser.add_argument(
        "--also-no-crm",
        action="store_true",
        help="also route with a CRM that knows no one",
    )
    args = parser.parse_args()
    configure_logging("warning")
    db = Path(args.db) if args.db else (
        Path(platformdirs.user_cache_dir("cti")) / "bench" / f"crm-{args.customers}.sqlite"
    )  # fmt: skip
    store, customers = await seeded_store(db, args.customers)
    warm_page_cache(db)
    if args.seed_only:
        await store.close()
        return
    rng = random.Random(7)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(await callers(store, max(args.sessions, 2000), rng)) + "\n")
        callers_file = f.name
    config = load_config(ROOT / "config" / "cti.example.toml", env={})
    router = Router(
        store,
        load_rules(config),
        deadline_s=config.agi.deadline_ms / 1000,
        clock=lambda: WEEKDAY_MORNING,
    )
    server = FastAgiServer(router, DecisionLog(), "127.0.0.1", 0)
    await server.start()
    tune_for_service()  # as `cti run` does once started
    echo, echo_port = await start_echo()
    try:
        print(f"CRM: {customers:,} customers (SELECT count(*)) in {db} (cache off); "
              "rules: config/cti.example.toml")  # fmt: skip
        print(f"open loop, {args.rate:g} new calls/s, {args.sessions} calls each, driver agi-load")
        # The echo and the CRM-less router first: abandoned CRM lookups must not weigh on them.
        theirs = await agi_load(echo_port, callers_file, args.rate, args.sessions)
        bare = None
        if args.also_no_crm:
            bare_router = Router(NoCrm(), load_rules(config), clock=lambda: WEEKDAY_MORNING)
            bare_server = FastAgiServer(bare_router, DecisionLog(), "127.0.0.1", 0)
            await bare_server.start()
            cpu = time.process_time()
            bare = await agi_load(bare_server.port, callers_file, args.rate, args.sessions)
            bare_cpu_ms = (time.process_time() - cpu) * 1000 / max(1, bare["sessions"])
            await bare_server.stop()
        await agi_load(server.port, callers_file, args.rate, min(400, args.sessions))  # warm-up
        cpu = time.process_time()
        ours = await agi_load(server.port, callers_file, args.rate, args.sessions)
        cpu_ms = (time.process_time() - cpu) * 1000 / max(1, ours["sessions"])
        heads = ("p50 ms", "p90 ms", "p99 ms", "max ms")
        print(f"\n{'server':<10}" + " ".join(f"{h:>8}" for h in heads), end="")
        print(f" {'calls/s':>7} {'errors':>6}   CTI_REASON")
        print(row("cti", ours))
        if bare is not None:
            print(row("cti-nocrm", bare))
        print(row("agi-echo", theirs))
        p99 = ours["latency_ms"]["p99"]
        verdict = "meets" if p99 is not None and p99 < 20 else "misses"
        print(f"\ncti p99 {p99} ms {verdict} the 20 ms target "
              f"(agi-echo, no lookup at all: {theirs['latency_ms']['p99']} ms)")  # fmt: skip
        fallbacks = ours["tally"].get("CTI_REASON", {}).get("fallback", 0)
        print(f"cti server CPU per call {cpu_ms:.2f} ms (event loop + SQLite threads); "
              f"{fallbacks} fallbacks")  # fmt: skip
        if bare is not None:
            print(f"cti-nocrm server CPU per call {bare_cpu_ms:.2f} ms")
        if ours["errors"] or theirs["errors"]:
            print(f"errors: cti {ours['errors']}, agi-echo {theirs['errors']}")
        if not args.no_probe:
            print("\nagi-probe against the cti server (this process):")
            probe = await asyncio.create_subprocess_exec(
                sys.executable, str(TOOLS / "agi-probe"), "127.0.0.1", str(server.port),
                "--pid", str(os.getpid()), stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, _ = await probe.communicate()
            print(out.decode().rstrip())
    finally:
        echo.terminate()
        await echo.wait()
        await server.stop()
        await router.aclose()
        await store.close()
        os.unlink(callers_file)


if __name__ == "__main__":
    asyncio.run(main())
