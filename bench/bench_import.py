"""`cti import` speed on 100,000 rows, on SQLite and PostgreSQL, beside the simplest import.

For each store, in the same run, on the same generated file:

- ``import_csv``: a first import (every row creates a customer), a re-import of the same file
  (nothing to change) and a re-import where every row changes (new email, new mobile number);
- ``bare``: the simplest implementation of the same job: ``csv.reader``, ``normalise`` for
  each number, and one ``executemany`` INSERT of the customers and one of their numbers through
  the driver (aiosqlite / asyncpg), in one transaction, no validation, no report;
- ``normalise`` alone: the cost of parsing the numbers, which both pay.

After each run the rows are counted with ``SELECT count(*)`` on a fresh driver connection; a
figure is printed only when the count is the file's size.

    .venv/bin/python bench/bench_import.py                   # 100,000 rows, both stores
    .venv/bin/python bench/bench_import.py --rows 20000 --stores sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiosqlite  # noqa: E402
import asyncpg  # noqa: E402

from crm_core.importer import ImportReport, import_csv  # noqa: E402
from crm_core.models import FLAGS  # noqa: E402
from crm_core.phone import normalise  # noqa: E402
from crm_core.store import CrmStore  # noqa: E402
from crm_core.testing import wipe  # noqa: E402
from cti.logsetup import configure_logging  # noqa: E402

PG_ADMIN = os.environ.get("CTI_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
PG_DB = "cti_bench_import"
FIRST = ("Olivia", "Noah", "Amelia", "Oliver", "Isla", "George", "Ava", "Arthur", "Priya", "Zoë")
LAST = ("Smith", "Jones", "Taylor", "Brown", "Patel", "Khan", "O'Brien", "Nguyen", "Müller")


def mobile(i: int) -> str:
    """A valid UK mobile number, distinct for each i below 45,000,000."""
    digits = f"74{(i // 1_000_000) % 45:02d}{i % 1_000_000:06d}"
    return f"0{digits[:4]} {digits[4:]}"


def write_file(path: Path, rows: int, version: int) -> None:
    """``rows`` customers; ``version`` 2 gives every one a new email and mobile number."""
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["external_id", "name", "email", "phone_mobile", "phone_home", "flags"])
        for i in range(rows):
            name = f"{FIRST[i % len(FIRST)]} {LAST[i // 7 % len(LAST)]}"
            number = mobile(i + (rows if version == 2 else 0))
            home = f"020 7{i % 1000:03d} {i // 1000 % 10000:04d}" if i % 4 == 0 else ""
            flags = "vip" if i % 50 == 0 else ("hearing_impaired" if i % 97 == 0 else "")
            out.writerow([f"B-{i:07d}", name, f"c{i}.v{version}@example.com", number, home,
                          flags])  # fmt: skip


async def bare_rows(path: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    customers, phones = [], []
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        next(reader)
        for cid, (external_id, name, email, mobile_no, home, flags) in enumerate(reader, 1):
            customers.append((cid, external_id, "person", name, email,
                              *(flag in flags.split(";") for flag in FLAGS)))  # fmt: skip
            for kind, number in (("mobile", mobile_no), ("home", home)):
                if number:
                    phones.append((cid, kind, number, normalise(number, "GB").e164))
    return customers, phones


CUSTOMER_SQL = (
    f"INSERT INTO customers (id, external_id, kind, name, email, {', '.join(FLAGS)}) VALUES ({{}})"
)
PHONE_SQL = "INSERT INTO phone_numbers (customer_id, kind, number, e164) VALUES ({})"


async def bare_sqlite(db: str, path: Path) -> None:
    customers, phones = await bare_rows(path)
    async with aiosqlite.connect(db) as conn:
        await conn.executemany(CUSTOMER_SQL.format(", ".join("?" * 11)), customers)
        await conn.executemany(PHONE_SQL.format("?, ?, ?, ?"), phones)
        await conn.commit()


async def bare_pg(dsn: str, path: Path) -> None:
    customers, phones = await bare_rows(path)
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.executemany(
                CUSTOMER_SQL.format(", ".join(f"${i}" for i in range(1, 12))), customers
            )
            await conn.executemany(PHONE_SQL.format("$1, $2, $3, $4"), phones)
    finally:
        await conn.close()


async def count(url: str, table: str) -> int:
    """``SELECT count(*)`` on a fresh driver connection."""
    if url.startswith("sqlite"):
        async with (
            aiosqlite.connect(url.split(":///", 1)[1]) as conn,
            conn.execute(f"SELECT count(*) FROM {table}") as cursor,
        ):
            row = await cursor.fetchone()
            return int(row[0]) if row else 0
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
    finally:
        await conn.close()


async def timed(fn: Callable[[], Awaitable[Any]]) -> tuple[Any, float, float]:
    """The result, the seconds it took and the CPU seconds this process spent on it (all its
    threads: aiosqlite's included, PostgreSQL's server not)."""
    started, cpu = time.perf_counter(), time.process_time()
    result = await fn()
    return result, time.perf_counter() - started, time.process_time() - cpu


def figure(name: str, rows: int, seconds: float, cpu: float, note: str = "") -> str:
    return (f"  {name:<44} {seconds:6.2f} s {rows / seconds:7.0f} rows/s  "
            f"(CPU {cpu:5.2f} s, {rows / cpu:6.0f} rows per CPU s)  {note}")  # fmt: skip


async def bench_store(name: str, url: str, bare: Callable[[Path], Awaitable[None]],
                      files: tuple[Path, Path], rows: int) -> bool:  # fmt: skip
    """Print the store's figures; False (and no figure) when a count disagrees."""
    print(f"\n{name}: {url}", flush=True)
    first, changed = files
    store = await CrmStore.open(url, cache_size=0)
    try:
        # The bare import before and after ours: the machine's load moves between runs.
        if not await bare_run(store, url, bare, first, rows, "before"):
            return False
        for label, path in (("import (creates)", first), ("re-import, unchanged", first),
                            ("re-import, every row changed", changed)):  # fmt: skip
            report, seconds, cpu = await timed(lambda path=path: import_csv(store, path))
            assert isinstance(report, ImportReport)
            counted = await count(url, "customers")
            if counted != rows or report.rejected:
                print(f"  {label}: SELECT count(*) finds {counted:,} customers, "
                      f"{len(report.rejected)} rejected: no figure")  # fmt: skip
                return False
            what = (f"{report.created} created, {report.updated - report.unchanged} changed, "
                    f"{len(report.changes)} field changes")  # fmt: skip
            print(figure(f"import_csv, {label}", rows, seconds, cpu, what), flush=True)
        numbers = await count(url, "phone_numbers")
        if not await bare_run(store, url, bare, first, rows, "after"):
            return False
    finally:
        await store.close()
    print(f"  counted after each run: {rows:,} customers ({numbers:,} numbers after ours), "
          "SELECT count(*) on a fresh connection")  # fmt: skip
    return True


async def bare_run(store: CrmStore, url: str, bare: Callable[[Path], Awaitable[None]],
                   path: Path, rows: int, when: str) -> bool:  # fmt: skip
    await wipe(store)
    _, seconds, cpu = await timed(lambda: bare(path))
    counted = await count(url, "customers")
    if counted != rows:
        print(f"  bare ({when}): SELECT count(*) finds {counted:,} customers: no figure")
        return False
    print(figure(f"bare csv + normalise + executemany ({when})", rows, seconds, cpu), flush=True)
    await wipe(store)
    return True


async def main(args: argparse.Namespace) -> int:
    configure_logging("warning")
    with tempfile.TemporaryDirectory() as tmp:
        files = (Path(tmp) / "customers.csv", Path(tmp) / "changed.csv")
        for version, path in enumerate(files, 1):
            write_file(path, args.rows, version)
        with files[0].open(encoding="utf-8") as f:
            numbers = [c for row in list(csv.reader(f))[1:] for c in row[3:5] if c]
        started = time.perf_counter()
        for number in numbers:
            normalise(number, "GB")
        parse = time.perf_counter() - started
        print(f"load average {', '.join(f'{x:.1f}' for x in os.getloadavg())} at the start")
        print(f"import of {args.rows:,} rows ({files[0].stat().st_size / 1e6:.1f} MB, "
              f"{len(numbers):,} numbers); normalise alone: {parse:.2f} s, "
              f"{len(numbers) / parse:.0f} numbers/s")  # fmt: skip
        ok = True
        if "sqlite" in args.stores:
            db = Path(tmp) / "crm.db"
            url = f"sqlite+aiosqlite:///{db}"
            ok &= await bench_store("SQLite", url, lambda p: bare_sqlite(str(db), p), files,
                                    args.rows)  # fmt: skip
        if "postgresql" in args.stores:
            admin = await asyncpg.connect(PG_ADMIN)
            try:
                if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", PG_DB):
                    await admin.execute(f'CREATE DATABASE "{PG_DB}"')
            finally:
                await admin.close()
            dsn = PG_ADMIN.rsplit("/", 1)[0] + "/" + PG_DB
            url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
            ok &= await bench_store("PostgreSQL", url, lambda p: bare_pg(dsn, p), files,
                                    args.rows)  # fmt: skip
    print(f"load average {', '.join(f'{x:.1f}' for x in os.getloadavg())} at the end")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--stores", nargs="+", default=["sqlite", "postgresql"],
                        choices=["sqlite", "postgresql"])  # fmt: skip
    sys.exit(asyncio.run(main(parser.parse_args())))
