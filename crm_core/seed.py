"""Realistic, deterministic demo data, fast enough for a million customers.

``seed(store, n, seed=S)`` writes the well-known demo customers (``DEMO_NUMBERS``: the numbers
the demo and the recorded traces call from) and ``n`` generated ones, in batches written with
the driver's bulk path (``executemany`` on SQLite with bulk-load pragmas, ``COPY`` on
PostgreSQL). The same seed, store region and ``now`` give the same data.
"""

from __future__ import annotations

import itertools
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool
from tqdm import tqdm

from crm_core.customer_batch import driver_error
from crm_core.models import (
    Case,
    Customer,
    Order,
    name_words,
)
from crm_core.store import CrmStore, PhoneInput

# role -> E.164 of the fixed demo customers (the traces in ../shared call from these).
DEMO_NUMBERS: dict[str, str] = {
    "known": "+442071234567",  # Alice Whitaker, an ordinary known customer
    "vip": "+447700900456",  # Victor Ashby, VIP (external id CUST-000456, as in the traces)
    "arrears": "+442079460652",  # Paula Grant, payment arrears
    "hearing_impaired": "+442079460694",  # Harriet Lowe, hearing impaired
    "switchboard": "+442079460833",  # shared by two Northwind companies
    "open_case": "+447700900911",  # Omar Said, open tier2 case
    "in_transit": "+447700900924",  # Ivy Chen, an order out for delivery
    "wheelchair": "+12025550532",  # Walter Price (US), wheelchair user
}
# A valid number that no demo or generated customer has.
DEMO_UNKNOWN_NUMBER = "+442079460999"

FIRST_NAMES = (  # noqa: SIM905
    "Oliver George Harry Jack Jacob Noah Charlie Muhammad Thomas Oscar William James Leo "
    "Alfie Henry Joshua Freddie Archie Ethan Isaac Alexander Joseph Edward Samuel Max Daniel "
    "Arthur Lucas Mohammed Logan Olivia Amelia Isla Ava Emily Sophia Grace Mia Poppy Ella "
    "Lily Evie Isabella Sophie Ivy Freya Harper Willow Charlotte Jessica Rosie Daisy Alice "
    "Florence Priya Aisha Fatima Zara Anjali Chloe Ruby Evelyn Sienna Niamh Siobhan Aoife "
    "Ciaran Sean Hannah Lena Marie Pierre Camille Lucia Mateo Gabriel Ana Joao Beatriz Emma "
    "Liam"
).split()
LAST_NAMES = (  # noqa: SIM905
    "Smith Jones Taylor Brown Williams Wilson Johnson Davies Robinson Wright Thompson Evans "
    "Walker White Roberts Green Hall Wood Jackson Clarke Patel Khan Lewis James Phillips "
    "Mason Mitchell Rose Davis Rodriguez Cox Alexander Morgan Moore Mills King Hughes Ward "
    "Harris Martin Cooper Baker Turner Hill Scott Edwards Young Allen Shaw Lloyd Begum Ali "
    "Hussain Murphy Kelly OSullivan Walsh Byrne Ryan Muller Schmidt Schneider Fischer Dubois "
    "Martin Bernard Silva Santos Oliveira Souza Costa Nguyen Chen Singh Kaur Okafor Mensah "
    "Kowalski"
).split()
STREETS = (
    "High Street",
    "Station Road",
    "Main Street",
    "Park Road",
    "Church Lane",
    "Victoria Road",
    "Green Lane",
    "Manor Road",
    "Kings Road",
    "Queens Avenue",
    "Mill Lane",
    "The Crescent",
)
TOWNS = (
    "London",
    "Manchester",
    "Birmingham",
    "Leeds",
    "Glasgow",
    "Bristol",
    "Liverpool",
    "Cardiff",
    "Belfast",
    "Edinburgh",
    "Brighton",
    "York",
)
ORG_SUFFIXES = ("Ltd", "& Co", "Logistics Ltd", "Holdings plc", "Consulting", "Trading Ltd")
PRODUCTS = (
    "Fibre 100",
    "Fibre 500",
    "Fibre 900",
    "Mobile SIM 10GB",
    "Mobile SIM Unlimited",
    "TV Basic",
    "TV Sports",
    "Home Phone",
    "Smart Hub 2",
    "Mesh Wi-Fi",
)
CASE_SUBJECTS = (
    "No broadband signal",
    "Slow speeds in the evening",
    "Billing query",
    "Router keeps rebooting",
    "Move home request",
    "Engineer did not arrive",
    "Roaming charges dispute",
    "TV box no picture",
    "Cancel contract",
    "Upgrade request",
)
DISPOSITIONS = ("resolved", "callback", "escalated", "info_given", "sale", "complaint")
LANGUAGES = ("en",) * 17 + ("cy", "pl", "fr", "de", "pt")

# Valid ranges per country (checked against phonenumbers by the tests), as
# (country code, national prefixes, digits after the prefix, national trunk prefix, kind).
_RANGES: dict[str, tuple[str, tuple[str, ...], int, str, str]] = {
    "GB-mobile": (
        "44",
        tuple(f"74{d:02d}" for d in range(45)) + tuple(f"79{d}" for d in range(40, 100)),
        6,
        "0",
        "mobile",
    ),
    "GB-london": ("44", ("203", "207", "208"), 7, "0", "home"),
    "GB-manchester": ("44", ("1612", "1613", "1614", "1618"), 6, "0", "home"),
    "US": ("1", ("2124", "4155", "3122", "6173", "3054", "5128", "6465"), 6, "1", "mobile"),
    "DE": ("49", ("3012", "3045", "15123", "1601", "1702"), 6, "0", "mobile"),
    "FR": ("33", ("612", "623", "145", "478"), 6, "0", "mobile"),
    "BR": ("55", ("11912", "21987", "31988"), 6, "0", "mobile"),
    "IE": ("353", ("12", "871", "862"), 6, "0", "mobile"),
}
_COUNTRY_OF = {"44": "GB", "1": "US", "49": "DE", "33": "FR", "55": "BR", "353": "IE"}
_RANGE_WEIGHTS = {
    "GB-mobile": 60,
    "GB-london": 17,
    "GB-manchester": 8,
    "US": 4,
    "DE": 3,
    "FR": 3,
    "BR": 2,
    "IE": 3,
}
_RESERVED = ("+44207946", "+447700900", "+4420712345")  # demo and drama ranges


def _group(digits: str, sizes: Sequence[int]) -> str:
    parts, at = [], 0
    for size in sizes:
        parts.append(digits[at : at + size])
        at += size
    if at < len(digits):
        parts.append(digits[at:])
    return " ".join(p for p in parts if p)


def format_number(rng: random.Random, e164: str, region: str) -> str:
    """``e164`` written the way a person might type it (national form only in ``region``)."""
    for cc, country in _COUNTRY_OF.items():
        if e164.startswith("+" + cc) and (cc != "1" or country == "US"):
            break
    else:
        return e164
    national = e164[1 + len(cc) :]
    style = rng.random()
    if country == region.upper() and style < 0.6:
        if country == "US":
            return f"({national[:3]}) {national[3:6]}-{national[6:]}"
        trunk = "0" + national
        sizes: tuple[int, ...]
        if country == "GB":
            sizes = (5, 6) if trunk.startswith("07") else (3, 4, 4)
            if trunk.startswith("01"):
                sizes = (4, 3, 4)
        else:
            sizes = (2, 2, 2, 2, 2, 2)
        return _group(trunk, sizes) if style < 0.45 else trunk
    if style < 0.75:
        return e164
    if style < 0.9:
        return f"+{cc} {_group(national, (3, 3, 4))}"
    return f"00{cc} {national}"


@dataclass
class SeedReport:
    customers: int = 0
    demo_customers: int = 0
    # table -> rows written for the generated customers
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


_COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": (
        "id", "external_id", "kind", "name", "organisation", "email", "address", "language",
        "vip", "hearing_impaired", "wheelchair_user", "payment_arrears", "do_not_call",
        "marketing_opt_in", "marketing_opt_in_at", "created_at", "updated_at",
    ),
    "customer_words": ("word", "customer_id"),
    "contacts": ("customer_id", "name", "role", "email"),
    "phone_numbers": ("customer_id", "kind", "number", "e164"),
    "cases": ("customer_id", "subject", "status", "tier", "product", "sla_deadline", "notes",
              "opened_at"),
    "orders": ("customer_id", "reference", "status", "delivery_state", "tracking_ref",
               "placed_at"),
    "owned_products": ("customer_id", "product", "since"),
    "interactions": (
        "call_id", "customer_id", "caller", "direction", "started_at", "answered_at", "ended_at",
        "queues", "tiers", "agents", "outcome", "wait_s", "talk_s", "transfers",
        "routing_reason", "notes", "disposition", "extra",
    ),
}  # fmt: skip
# JSON columns are generated as JSON text, ready for both drivers.
_TIER1, _ESCALATED = '["tier1"]', '["tier1", "tier2"]'
_BLIND_TO_TIER2 = '[{"kind": "blind", "to": "tier2"}]'
_DATETIMES = frozenset(
    {"marketing_opt_in_at", "created_at", "updated_at", "sla_deadline", "opened_at",
     "placed_at", "since", "started_at", "answered_at", "ended_at"}
)  # fmt: skip


class _Generator:
    """Rows for customers ``first_id``…; one RNG so a seed always gives the same data."""

    def __init__(self, seed: int, region: str, now: datetime, taken: set[str]) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.region = region.upper()
        self.now = now
        self.taken = taken
        self.ranges = list(_RANGE_WEIGHTS)
        self.cum_weights = list(itertools.accumulate(_RANGE_WEIGHTS.values()))
        self.last_home: tuple[str, str] | None = None

    def number(self, kind: str | None = None) -> tuple[str, str, str]:
        """A fresh (e164, as typed, kind)."""
        rng = self.rng
        while True:
            name = rng.choices(self.ranges, cum_weights=self.cum_weights)[0]
            cc, prefixes, tail, _trunk, default_kind = _RANGES[name]
            digits = rng.choice(prefixes) + f"{rng.randrange(10**tail):0{tail}d}"
            e164 = f"+{cc}{digits}"
            if e164 in self.taken or e164.startswith(_RESERVED):
                continue
            self.taken.add(e164)
            return e164, format_number(rng, e164, self.region), kind or default_kind

    def when(self, max_days: float, min_days: float = 0.0) -> datetime:
        return self.now - timedelta(seconds=self.rng.uniform(min_days, max_days) * 86400)

    def customer(self, cid: int, rows: dict[str, list[tuple[Any, ...]]]) -> None:
        rng, now = self.rng, self.now
        organisation = rng.random() < 0.08
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        email: str | None
        if organisation:
            name = f"{last} {rng.choice(ORG_SUFFIXES)}"
            email = f"info@{last.lower()}{cid}.example.com"
        else:
            name = f"{first} {last}"
            email = (
                f"{first.lower()}.{last.lower()}{cid}@example.com" if rng.random() < 0.8 else None
            )
        opt_in = rng.random() < 0.3
        created = self.when(2000, 30)
        rows["customers"].append((
            cid, f"CRM-{cid:07d}", "organisation" if organisation else "person", name,
            name if organisation else None, email,
            f"{rng.randrange(1, 200)} {rng.choice(STREETS)}, {rng.choice(TOWNS)}",
            rng.choice(LANGUAGES), rng.random() < 0.02, rng.random() < 0.02,
            rng.random() < 0.01, rng.random() < 0.04, rng.random() < 0.01, opt_in,
            self.when(1000) if opt_in else None, created, created,
        ))  # fmt: skip
        rows["customer_words"].extend((word, cid) for word in name_words(name))
        phones = rows["phone_numbers"]
        for _ in range(1 if rng.random() < 0.75 else rng.randint(2, 3)):
            e164, typed, kind = self.number()
            phones.append((cid, kind, typed, e164))
            if kind == "home":
                self.last_home = (typed, e164)
        if not organisation and self.last_home and rng.random() < 0.03:
            # A household: this customer also answers on the previous customer's home line.
            phones.append((cid, "home", *self.last_home))
        if organisation:
            e164, typed, kind = self.number("work")
            phones.append((cid, kind, typed, e164))
            for _ in range(rng.randint(1, 3)):
                contact = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
                rows["contacts"].append(
                    (cid, contact, rng.choice(("Office manager", "IT", "Finance")), None)
                )
        if rng.random() < 0.25:
            is_open = rng.random() < 0.4
            tier = rng.choices(("tier1", "tier2", "tier3"), (50, 35, 15))[0] if is_open else None
            opened = self.when(60)
            rows["cases"].append((
                cid, rng.choice(CASE_SUBJECTS),
                rng.choice(("open", "open", "pending", "escalated")) if is_open else "closed",
                tier or rng.choice(("tier1", "tier2")), rng.choice(PRODUCTS),
                now + timedelta(hours=rng.uniform(-6, 72)) if is_open else None,
                "Customer called about this." if rng.random() < 0.5 else "", opened,
            ))  # fmt: skip
        if rng.random() < 0.5:
            for n in range(rng.randint(1, 3)):
                status = rng.choices(
                    ("delivered", "in_transit", "placed", "cancelled"), (70, 15, 10, 5)
                )[0]
                recent = status in ("in_transit", "placed")
                state = {
                    "delivered": "delivered",
                    "in_transit": rng.choice(("in transit", "out for delivery", "at depot")),
                    "placed": "awaiting dispatch",
                }.get(status)
                rows["orders"].append((
                    cid, f"ORD-{cid}-{n + 1}", status, state,
                    f"TRK{rng.randrange(10**10):010d}" if status in ("delivered", "in_transit")
                    else None,
                    self.when(7) if recent else self.when(365, 7),
                ))  # fmt: skip
        for _ in range(rng.choice((0, 1, 1, 1, 2, 3))):
            rows["owned_products"].append((cid, rng.choice(PRODUCTS), self.when(1500, 10)))
        for n in range(rng.choice((0, 0, 1, 1, 2, 3))):
            started = self.when(180)
            answered = rng.random() < 0.85
            wait = round(rng.uniform(2, 240), 1)
            talk = round(rng.uniform(30, 1200), 1) if answered else None
            escalated = answered and rng.random() < 0.1
            rows["interactions"].append((
                f"seed-{self.seed}-{cid}-{n}", cid, phones[-1][2], "inbound", started,
                started + timedelta(seconds=wait) if answered else None,
                started + timedelta(seconds=wait + (talk or 0)),
                _ESCALATED if escalated else _TIER1, _ESCALATED if escalated else _TIER1,
                f'["Agent {rng.randint(1001, 1040)}"]' if answered else "[]",
                "answered" if answered else "abandoned", wait, talk,
                _BLIND_TO_TIER2 if escalated else "[]",
                "default route", "" if rng.random() < 0.6 else "Discussed the latest bill.",
                rng.choice(DISPOSITIONS) if answered else None, "{}",
            ))  # fmt: skip


def _converter(table: str, sqlite: bool) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    """Row values as the driver takes them: on SQLite, naive UTC datetimes as the text
    SQLAlchemy reads back (the generator's datetimes are all UTC)."""
    time_at = [i for i, c in enumerate(_COLUMNS[table]) if c in _DATETIMES] if sqlite else []
    if not time_at:
        return lambda row: row

    def convert(row: tuple[Any, ...]) -> tuple[Any, ...]:
        values = list(row)
        for i in time_at:
            if values[i] is not None:
                values[i] = values[i].replace(tzinfo=None).isoformat(" ")
        return tuple(values)

    return convert


async def _write(conn: AsyncConnection, table: str, rows: list[tuple[Any, ...]]) -> None:
    """Bulk-write ``rows`` inside the transaction ``conn`` has open (see ``_begin_batch``)."""
    if not rows:
        return
    columns = _COLUMNS[table]
    convert = _converter(table, conn.dialect.name == "sqlite")
    records = [convert(row) for row in rows]
    if conn.dialect.name == "sqlite":
        placeholders = ", ".join("?" for _ in columns)
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})"
        await conn.exec_driver_sql(sql, records)  # one executemany, in SQLAlchemy's transaction
    else:
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection
        try:
            await driver.copy_records_to_table(table, records=records, columns=list(columns))
        except Exception as exc:  # the driver's own errors: as SQLAlchemy's, for store._guard
            raise driver_error(f"COPY {table}", exc) from exc


async def _begin_batch(conn: AsyncConnection, last_id: int) -> None:
    """Open the batch's transaction through SQLAlchemy, so that its commit is the driver's.

    PostgreSQL: reserving the batch's customer ids (``setval``) is the first statement, which
    makes the asyncpg adapter issue BEGIN; the COPYs on the driver connection then belong to
    that transaction (the other tables' ids come from their sequences). Without a statement
    through SQLAlchemy first, the adapter has no transaction to commit (each COPY autocommits)
    and on SQLite the driver's implicit transaction was never committed: only the first batch
    was kept.
    """
    if conn.dialect.name == "postgresql":
        await conn.execute(
            text("SELECT setval(pg_get_serial_sequence('customers', 'id'), :last)"),
            {"last": last_id},
        )


async def _seed_demo(store: CrmStore, now: datetime) -> int:
    """The fixed demo customers; written once (keyed on external_id), returns how many new."""
    soon = now + timedelta(hours=4)
    people: list[dict[str, Any]] = [
        {"external_id": "CUST-000001", "name": "Alice Whitaker", "email": "alice@example.com",
         "phones": [PhoneInput("020 7123 4567", "home"), PhoneInput("07700 900001", "mobile")],
         "orders": [("ORD-1001", "delivered", "delivered", "TRK1001", 20)]},
        {"external_id": "CUST-000456", "name": "Victor Ashby", "flags": ["vip"],
         "phones": [PhoneInput("07700 900456", "mobile")],
         "cases": [("Priority line fault", "open", "tier2", "Fibre 900", soon)]},
        {"external_id": "CUST-000652", "name": "Paula Grant", "flags": ["payment_arrears"],
         "phones": [PhoneInput("020 7946 0652", "home")]},
        {"external_id": "CUST-000694", "name": "Harriet Lowe",
         "flags": ["hearing_impaired", "marketing_opt_in"],
         "phones": [PhoneInput("+44 20 7946 0694", "home")]},
        {"external_id": "CUST-000833", "name": "Northwind Traders Ltd", "kind": "organisation",
         "phones": [PhoneInput("020 7946 0833", "work")],
         "cases": [("Leased line down", "open", "tier2", "Broadband Business", soon)]},
        {"external_id": "CUST-000834", "name": "Northwind Logistics Ltd", "kind": "organisation",
         "phones": [PhoneInput("020 7946 0833", "work")]},
        {"external_id": "CUST-000911", "name": "Omar Said",
         "phones": [PhoneInput("07700 900911", "mobile")],
         "cases": [("Router keeps rebooting", "open", "tier2", "Smart Hub 2", soon)]},
        {"external_id": "CUST-000924", "name": "Ivy Chen",
         "phones": [PhoneInput("07700 900924", "mobile")],
         "orders": [("ORD-1924", "in_transit", "out for delivery", "TRK1924", 1)]},
        {"external_id": "CUST-000532", "name": "Walter Price", "flags": ["wheelchair_user"],
         "language": "en", "phones": [PhoneInput("+1 202-555-0532", "mobile")]},
    ]  # fmt: skip
    created = 0
    for person in people:
        cases = person.pop("cases", [])
        orders = person.pop("orders", [])
        result = await store.upsert_customer(**person)
        if not result.created:
            continue
        created += 1
        cid = result.customer_id
        async with store.engine.begin() as conn:
            for subject, status, tier, product, deadline in cases:
                await conn.execute(
                    insert(Case).values(customer_id=cid, subject=subject, status=status,
                                        tier=tier, product=product, sla_deadline=deadline,
                                        notes="Demo case", opened_at=now - timedelta(days=2))
                )  # fmt: skip
            for reference, status, state, tracking, days in orders:
                await conn.execute(
                    insert(Order).values(customer_id=cid, reference=reference, status=status,
                                         delivery_state=state, tracking_ref=tracking,
                                         placed_at=now - timedelta(days=days))
                )  # fmt: skip
    return created


async def seed(
    store: CrmStore,
    customers: int,
    *,
    seed: int = 1,
    now: datetime | None = None,
    batch: int = 5000,
    demo: bool = True,
    progress: bool = True,
    on_batch: Callable[[int], None] | None = None,
) -> SeedReport:
    """Add the demo customers (once) and ``customers`` generated ones; returns what was written."""
    started = time.perf_counter()
    now = (now or datetime.now(UTC)).astimezone(UTC)
    report = SeedReport(rows=dict.fromkeys(_COLUMNS, 0))
    # A private engine, so the bulk-load pragmas never leak into the store's pool.
    bulk = create_async_engine(store.engine.url, poolclass=NullPool)
    bar = tqdm(total=customers, unit="customer", file=sys.stderr, disable=not progress,
               desc="seeding")  # fmt: skip
    try:
        async with store._guard("seed"):
            if demo:
                report.demo_customers = await _seed_demo(store, now)
            # One transaction per batch: the WAL (SQLite) stays small and a failure keeps whole
            # batches.
            async with bulk.connect() as conn:
                first_id = 1 + int(
                    (
                        await conn.execute(select(func.coalesce(func.max(Customer.id), 0)))
                    ).scalar_one()
                )
                await conn.commit()
                generator = _Generator(seed, store.region, now, set(DEMO_NUMBERS.values()))
                if conn.dialect.name == "sqlite":
                    await conn.execute(text("PRAGMA synchronous=OFF"))
                    await conn.execute(text("PRAGMA cache_size=-200000"))
                    await conn.execute(text("PRAGMA temp_store=MEMORY"))
                    await conn.commit()
                for start in range(0, customers, batch):
                    rows: dict[str, list[tuple[Any, ...]]] = {table: [] for table in _COLUMNS}
                    count = min(batch, customers - start)
                    for offset in range(count):
                        generator.customer(first_id + start + offset, rows)
                    async with conn.begin():
                        await _begin_batch(conn, first_id + start + count - 1)
                        for table, table_rows in rows.items():
                            await _write(conn, table, table_rows)
                    for table, table_rows in rows.items():
                        report.rows[table] += len(table_rows)
                    report.customers += count
                    bar.update(count)
                    if on_batch:
                        on_batch(report.customers)
            async with bulk.connect() as conn:
                await conn.execute(text("ANALYZE"))
                await conn.commit()
    finally:
        bar.close()
        await bulk.dispose()
    store.cache.clear()
    report.seconds = time.perf_counter() - started
    return report
