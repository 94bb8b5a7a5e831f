"""The resolution hot path: who holds one E.164 number, and what ranks them, on the raw driver.

Every call that rings asks this once, within the router's deadline, so it skips SQLAlchemy's
statement building, pool checkout and reset-on-return (~4x the query itself, see
``bench/bench_lookup.py``): one ``SELECT`` on the ``e164`` index, and for a shared number one
more for the ranking facts, over an asyncpg pool or a dedicated aiosqlite connection, opened on
first use and reopened after a failure. The same SQL runs through SQLAlchemy where there is no
separate connection to open (in-memory SQLite).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_core.db import COMMAND_TIMEOUT_S, CONNECT_TIMEOUT_S
from crm_core.errors import CrmUnavailable
from crm_core.models import CASE_OPEN_STATUSES

Holder = tuple[int, str | None, str]  # customer id, external id, name


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


class NumberLookup:
    """The two resolution queries on the raw driver; failures raise ``CrmUnavailable``."""

    def __init__(self, url: URL, limit: int, pool_size: int = 10) -> None:
        self._url = url
        self._limit = limit
        self._pool_size = pool_size
        self._postgres = url.get_backend_name() == "postgresql"
        self._pool: Any = None  # asyncpg.Pool
        self._sqlite: Any = None  # aiosqlite.Connection
        self._opening: asyncio.Lock | None = None

    async def holders(self, e164: str) -> list[Holder]:
        rows = await self._fetch(lambda style: holders_sql(style, self._limit), [e164])
        return [(r[0], r[1], r[2]) for r in rows]

    async def facts(self, customer_ids: Sequence[int]) -> list[Facts]:
        count = len(customer_ids)
        rows = await self._fetch(lambda style: facts_sql(style, count), list(customer_ids))
        return [Facts(r) for r in rows]

    async def _fetch(self, sql: Callable[[ParamStyle], str], params: list[Any]) -> list[Any]:
        try:
            if self._postgres:
                pool = self._pool or await self._open()
                return list(await pool.fetch(sql("numeric"), *params))
            conn = self._sqlite or await self._open()
            async with conn.execute(sql("qmark"), params) as cursor:
                return list(await cursor.fetchall())
        except CrmUnavailable:
            raise
        except _FAILURES as exc:
            await self.close(graceful=False)  # reopen on the next call: it may be back
            raise CrmUnavailable(
                f"CRM database unavailable during resolve: {type(exc).__name__}: {exc}"
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
                import aiosqlite

                path = quote(str(self._url.database), safe="/")
                conn = await aiosqlite.connect(f"file:{path}?mode=rw", uri=True, timeout=5)
                try:
                    await conn.execute("PRAGMA query_only=ON")
                except BaseException:
                    await conn.close()
                    raise
                self._sqlite = conn
            return self._sqlite

    async def close(self, graceful: bool = True) -> None:
        pool, self._pool = self._pool, None
        conn, self._sqlite = self._sqlite, None
        if pool is not None:
            if graceful:
                try:
                    await asyncio.wait_for(pool.close(), CONNECT_TIMEOUT_S)
                except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    pool.terminate()
            else:
                pool.terminate()
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                await conn.close()


class EngineLookup:
    """The same queries through the store's engine (for in-memory SQLite)."""

    def __init__(self, engine: AsyncEngine, limit: int) -> None:
        self._engine = engine
        self._limit = limit

    async def holders(self, e164: str) -> list[Holder]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(text(holders_sql("named", self._limit)), {"p0": e164})
            return [(r[0], r[1], r[2]) for r in rows]

    async def facts(self, customer_ids: Sequence[int]) -> list[Facts]:
        params = {f"p{i}": cid for i, cid in enumerate(customer_ids)}
        async with self._engine.connect() as conn:
            rows = await conn.execute(text(facts_sql("named", len(customer_ids))), params)
            return [Facts(r) for r in rows]

    async def close(self, graceful: bool = True) -> None:
        return None
