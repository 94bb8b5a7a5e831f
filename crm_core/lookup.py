"""The per-call hot paths on the raw driver: who holds one E.164 number, what ranks them, and
what routing needs to know about one customer.

Every call that rings asks these within the router's deadline, so they skip SQLAlchemy's
statement building, pool checkout and reset-on-return (~4x the query itself, see
``bench/bench_lookup.py``), and each is one round trip: one statement over an asyncpg pool, or
one hop to a dedicated thread holding a plain ``sqlite3`` connection (aiosqlite costs three
thread hand-offs per statement, and at 200 calls/s the hand-offs, not the SQL, filled the CPU).
The connection is opened on first use and reopened after a failure. The same SQL runs through
SQLAlchemy where there is no separate connection to open (in-memory SQLite).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_core.db import COMMAND_TIMEOUT_S, CONNECT_TIMEOUT_S
from crm_core.errors import CrmUnavailable
from crm_core.models import CASE_OPEN_STATUSES, FLAGS
from crm_core.types import OrderFact, RoutingFacts

Holder = tuple[int, str | None, str]  # customer id, external id, name
T = TypeVar("T")


class Facts:
    """What ranks one of several customers sharing a number."""

    __slots__ = ("case_id", "case_tier", "customer_id", "last_call", "last_order")

    def __init__(self, row: Sequence[Any]) -> None:
        self.customer_id: int = row[0]
        self.case_id: int | None = row[1]
        self.case_tier: str | None = row[2]
        self.last_order = _utc(row[3])
        self.last_call = _utc(row[4])


ParamStyle = Literal["qmark", "numeric", "named"]
# A number's holders; what ranks them when several; the one holder's routing facts (if asked).
RoutingRows = tuple[list[Holder], list[Facts], RoutingFacts | None]


def _param(style: ParamStyle, index: int) -> str:
    return {"qmark": "?", "numeric": f"${index + 1}", "named": f":p{index}"}[style]


def holders_sql(style: ParamStyle, limit: int) -> str:
    return (
        "SELECT c.id, c.external_id, c.name FROM phone_numbers p "
        f"JOIN customers c ON c.id = p.customer_id WHERE p.e164 = {_param(style, 0)} "
        f"GROUP BY c.id, c.external_id, c.name ORDER BY c.id LIMIT {int(limit)}"
    )


def facts_sql(style: ParamStyle, count: int) -> str:
    ids = ", ".join(_param(style, i) for i in range(count))
    statuses = ", ".join(f"'{s}'" for s in CASE_OPEN_STATUSES)
    open_case = (
        f"FROM cases k WHERE k.customer_id = c.id AND k.status IN ({statuses}) "
        "ORDER BY k.id LIMIT 1"
    )
    return (
        f"SELECT c.id, (SELECT k.id {open_case}), (SELECT k.tier {open_case}), "
        "(SELECT max(o.placed_at) FROM orders o WHERE o.customer_id = c.id), "
        "(SELECT max(i.started_at) FROM interactions i WHERE i.customer_id = c.id) "
        f"FROM customers c WHERE c.id IN ({ids})"
    )


def routing_facts_sql(style: ParamStyle, postgres: bool, orders: int) -> str:
    """One statement: the customer's language and flags, and JSON arrays of its open cases'
    tiers, products and latest ``orders`` orders, each in the 360° view's order."""
    statuses = ", ".join(f"'{s}'" for s in CASE_OPEN_STATUSES)
    flags = ", ".join(f"c.{flag}" for flag in FLAGS)
    if postgres:
        agg = "COALESCE(json_agg({} ORDER BY t.n), '[]')"
        number = "row_number() OVER (ORDER BY {})"
    else:  # SQLite keeps a sorted subquery's order through json_group_array
        agg = "json_group_array({})"
        number = "NULL"
    case_order = "k.sla_deadline IS NULL, k.sla_deadline, k.id"
    order_order = "o.placed_at DESC, o.id DESC"
    cases = (
        f"SELECT k.tier AS v, {number.format(case_order)} AS n FROM cases k "
        f"WHERE k.customer_id = c.id AND k.status IN ({statuses}) ORDER BY {case_order}"
    )
    products = (
        f"SELECT p.product AS v, {number.format('p.id')} AS n FROM owned_products p "
        "WHERE p.customer_id = c.id ORDER BY p.id"
    )
    array = "json_build_array" if postgres else "json_array"
    latest = (
        f"SELECT {array}(o.reference, o.status, o.delivery_state) AS v, "
        f"{number.format(order_order)} AS n FROM orders o WHERE o.customer_id = c.id "
        f"ORDER BY {order_order} LIMIT {int(orders)}"
    )
    # A JSON value read back from a subquery is text to SQLite unless json() says otherwise.
    order_value = "t.v" if postgres else "json(t.v)"
    arrays = ", ".join(
        f"(SELECT {agg.format(v)} FROM ({q}) t)"
        for q, v in ((cases, "t.v"), (products, "t.v"), (latest, order_value))
    )
    return (
        f"SELECT c.id, c.language, {flags}, {arrays} "
        f"FROM customers c WHERE c.id = {_param(style, 0)}"
    )


def _json(value: Any) -> list[Any]:
    loaded = json.loads(value) if isinstance(value, str | bytes) else value
    return list(loaded or ())


def routing_facts_from_row(row: Sequence[Any]) -> RoutingFacts:
    flag_values = row[2 : 2 + len(FLAGS)]
    tiers, products, orders = (_json(v) for v in row[2 + len(FLAGS) :])
    return RoutingFacts(
        customer_id=row[0],
        language=row[1],
        flags=tuple(flag for flag, on in zip(FLAGS, flag_values, strict=True) if on),
        open_case_tiers=tuple(tiers),
        products=tuple(products),
        orders=tuple(OrderFact(o[0], o[1], o[2]) for o in orders),
    )


def _utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):  # SQLite hands back its text form to the raw driver
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


async def _keep_session(_conn: Any) -> None:
    """These connections only ever run read-only queries: skip asyncpg's reset round trip."""


_FAILURES = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, sqlite3.Error)


class _SqliteThread:
    """One thread holding one read-only ``sqlite3`` connection, opened there on first use."""

    def __init__(self, url: URL) -> None:
        self._uri = f"file:{quote(str(url.database), safe='/')}?mode=rw"
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="crm-lookup")
        self._conn: sqlite3.Connection | None = None  # touched only on the thread

    async def fetch(self, statement: str, params: list[Any]) -> list[Any]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._fetch, statement, params)

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work(connection)`` on the thread: several statements for one hop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run, work)

    def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return work(self._connection())

    def _fetch(self, statement: str, params: list[Any]) -> list[Any]:
        return self._connection().execute(statement, params).fetchall()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self._uri, uri=True, timeout=5, check_same_thread=False)
            try:
                conn.execute("PRAGMA query_only=ON")
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    async def close(self) -> None:
        # Queued after any query still running there; the thread then ends on its own.
        closing = asyncio.get_running_loop().run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=False)
        await closing


class NumberLookup:
    """The hot-path queries on the raw driver; failures raise ``CrmUnavailable``."""

    def __init__(self, url: URL, limit: int, pool_size: int = 10, orders: int = 5) -> None:
        self._url = url
        self._limit = limit
        self._orders = orders
        self._pool_size = pool_size
        self._postgres = url.get_backend_name() == "postgresql"
        self._pool: Any = None  # asyncpg.Pool
        self._sqlite: _SqliteThread | None = None
        self._opening: asyncio.Lock | None = None
        self._holders_sql = holders_sql("qmark", limit)
        self._routing_sql = routing_facts_sql("qmark", False, orders)

    async def holders(self, e164: str) -> list[Holder]:
        rows = await self._fetch(lambda style: holders_sql(style, self._limit), [e164])
        return [(r[0], r[1], r[2]) for r in rows]

    async def facts(self, customer_ids: Sequence[int]) -> list[Facts]:
        count = len(customer_ids)
        rows = await self._fetch(lambda style: facts_sql(style, count), list(customer_ids))
        return [Facts(r) for r in rows]

    async def routing_facts(self, customer_id: int) -> RoutingFacts | None:
        rows = await self._fetch(
            lambda style: routing_facts_sql(style, self._postgres, self._orders),
            [customer_id],
            "routing_facts",
        )
        return routing_facts_from_row(rows[0]) if rows else None

    async def for_routing(self, e164: str, with_facts: bool) -> RoutingRows:
        """Who holds ``e164`` and, in the same hop, what ranks them (several) or what routing
        needs of the one holder (``with_facts``): one thread hop on SQLite; on PostgreSQL the
        statements depend on the first one's answer, so two round trips for a match."""
        if self._postgres:
            holders = await self.holders(e164)
            if len(holders) > 1:
                return holders, await self.facts([h[0] for h in holders]), None
            if holders and with_facts:
                return holders, [], await self.routing_facts(holders[0][0])
            return holders, [], None
        holders_sql_ = self._holders_sql
        routing_sql = self._routing_sql

        def work(conn: sqlite3.Connection) -> RoutingRows:
            rows = conn.execute(holders_sql_, (e164,)).fetchall()
            holders: list[Holder] = [(r[0], r[1], r[2]) for r in rows]
            if len(holders) > 1:
                ids = [h[0] for h in holders]
                ranked = conn.execute(facts_sql("qmark", len(ids)), ids).fetchall()
                return holders, [Facts(r) for r in ranked], None
            if holders and with_facts:
                row = conn.execute(routing_sql, (holders[0][0],)).fetchone()
                return holders, [], routing_facts_from_row(row) if row is not None else None
            return holders, [], None

        try:
            thread = self._sqlite or await self._open()
            return await thread.run(work)
        except _FAILURES as exc:
            await self.close(graceful=False)  # reopen on the next call: it may be back
            raise CrmUnavailable(
                f"CRM database unavailable during resolve: {type(exc).__name__}: {exc}"
            ) from exc

    async def _fetch(
        self, sql: Callable[[ParamStyle], str], params: list[Any], operation: str = "resolve"
    ) -> list[Any]:
        try:
            if self._postgres:
                pool = self._pool or await self._open()
                return list(await pool.fetch(sql("numeric"), *params))
            thread = self._sqlite or await self._open()
            return await thread.fetch(sql("qmark"), params)
        except CrmUnavailable:
            raise
        except _FAILURES as exc:
            await self.close(graceful=False)  # reopen on the next call: it may be back
            raise CrmUnavailable(
                f"CRM database unavailable during {operation}: {type(exc).__name__}: {exc}"
            ) from exc

    async def _open(self) -> Any:
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._postgres:
                if self._pool is None:
                    dsn = self._url.set(drivername="postgresql").render_as_string(
                        hide_password=False
                    )
                    self._pool = await asyncpg.create_pool(
                        dsn,
                        min_size=1,
                        max_size=self._pool_size,
                        timeout=CONNECT_TIMEOUT_S,
                        command_timeout=COMMAND_TIMEOUT_S,
                        reset=_keep_session,
                    )
                return self._pool
            if self._sqlite is None:
                self._sqlite = _SqliteThread(self._url)
            return self._sqlite

    async def close(self, graceful: bool = True) -> None:
        pool, self._pool = self._pool, None
        thread, self._sqlite = self._sqlite, None
        if pool is not None:
            if graceful:
                try:
                    await asyncio.wait_for(pool.close(), CONNECT_TIMEOUT_S)
                except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    pool.terminate()
            else:
                pool.terminate()
        if thread is not None:
            await thread.close()


class EngineLookup:
    """The same queries through the store's engine (for in-memory SQLite)."""

    def __init__(self, engine: AsyncEngine, limit: int, orders: int = 5) -> None:
        self._engine = engine
        self._limit = limit
        self._orders = orders

    async def holders(self, e164: str) -> list[Holder]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(text(holders_sql("named", self._limit)), {"p0": e164})
            return [(r[0], r[1], r[2]) for r in rows]

    async def facts(self, customer_ids: Sequence[int]) -> list[Facts]:
        params = {f"p{i}": cid for i, cid in enumerate(customer_ids)}
        async with self._engine.connect() as conn:
            rows = await conn.execute(text(facts_sql("named", len(customer_ids))), params)
            return [Facts(r) for r in rows]

    async def routing_facts(self, customer_id: int) -> RoutingFacts | None:
        sql = routing_facts_sql("named", False, self._orders)
        async with self._engine.connect() as conn:
            row = (await conn.execute(text(sql), {"p0": customer_id})).first()
            return routing_facts_from_row(row) if row is not None else None

    async def for_routing(self, e164: str, with_facts: bool) -> RoutingRows:
        holders = await self.holders(e164)
        if len(holders) > 1:
            return holders, await self.facts([h[0] for h in holders]), None
        if holders and with_facts:
            return holders, [], await self.routing_facts(holders[0][0])
        return holders, [], None

    async def close(self, graceful: bool = True) -> None:
        return None
