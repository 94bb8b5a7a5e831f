"""The resolution hot path: which customers hold one E.164 number, on the raw driver.

Every call that rings asks this once, within the router's deadline, so it skips SQLAlchemy's
statement building, pool checkout and reset-on-return (~4x the query itself, see
``bench/bench_lookup.py``): one prepared ``SELECT`` on the ``e164`` index, over an asyncpg pool
or a dedicated aiosqlite connection, opened on first use and reopened after a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from typing import Any
from urllib.parse import quote

import asyncpg
from sqlalchemy.engine import URL

from crm_core.db import COMMAND_TIMEOUT_S, CONNECT_TIMEOUT_S
from crm_core.errors import CrmUnavailable

Holder = tuple[int, str | None, str]  # customer id, external id, name

_SQL = (
    "SELECT c.id, c.external_id, c.name FROM phone_numbers p "
    "JOIN customers c ON c.id = p.customer_id WHERE p.e164 = {param} "
    "GROUP BY c.id, c.external_id, c.name ORDER BY c.id LIMIT {limit}"
)


async def _keep_session(_conn: Any) -> None:
    """These connections only ever run one read-only query: skip asyncpg's reset round trip."""


class NumberLookup:
    """Customers holding a number, best effort fast; failures raise ``CrmUnavailable``."""

    def __init__(self, url: URL, limit: int, pool_size: int = 10) -> None:
        self._url = url
        self._limit = limit
        self._pool_size = pool_size
        self._postgres = url.get_backend_name() == "postgresql"
        self._pool: Any = None  # asyncpg.Pool
        self._sqlite: Any = None  # aiosqlite.Connection
        self._opening: asyncio.Lock | None = None

    async def holders(self, e164: str) -> list[Holder]:
        try:
            if self._postgres:
                pool = self._pool or await self._open()
                rows = await pool.fetch(_SQL.format(param="$1", limit=self._limit), e164)
                return [(r[0], r[1], r[2]) for r in rows]
            conn = self._sqlite or await self._open()
            sql = _SQL.format(param="?", limit=self._limit)
            async with conn.execute(sql, (e164,)) as cursor:
                return [(r[0], r[1], r[2]) for r in await cursor.fetchall()]
        except CrmUnavailable:
            raise
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError,
                sqlite3.Error) as exc:  # fmt: skip
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
