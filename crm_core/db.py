"""The async engine for either store, tuned for each (SQLite pragmas, asyncpg timeouts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

# A dead PostgreSQL must fail a lookup quickly, not after asyncpg's default 60 s.
CONNECT_TIMEOUT_S = 3.0
COMMAND_TIMEOUT_S = 10.0


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL (None for other databases and in-memory SQLite)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def create_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    """An async engine for ``sqlite+aiosqlite://`` or ``postgresql+asyncpg://`` URLs."""
    backend = make_url(url).get_backend_name()
    kwargs: dict[str, Any] = {"echo": echo}
    if backend == "postgresql":
        kwargs["connect_args"] = {
            "timeout": CONNECT_TIMEOUT_S,
            "command_timeout": COMMAND_TIMEOUT_S,
        }
        kwargs["pool_size"] = 10
        kwargs["pool_timeout"] = CONNECT_TIMEOUT_S
    engine = create_async_engine(url, **kwargs)
    if backend == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def refused_by_database(exc: BaseException) -> bool:
    """The database refused these values (a constraint, data it cannot store: writing them
    again cannot succeed), as opposed to failing (down, slow, locked): IntegrityError or
    DataError, or SQLSTATE class 22/23 (asyncpg's "value too long" and "invalid byte sequence"
    come to SQLAlchemy as a bare DBAPIError)."""
    if isinstance(exc, sa_exc.IntegrityError | sa_exc.DataError):
        return True
    if not isinstance(exc, sa_exc.DBAPIError):
        return False
    sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return isinstance(sqlstate, str) and sqlstate[:2] in ("22", "23")


def describe_db_error(exc: BaseException) -> str:
    """The driver's own error, first line, with its type: what a log or a message shows."""
    original = getattr(exc, "orig", None) or exc
    text = str(original).strip()
    return f"{type(original).__name__}: {text.splitlines()[0]}" if text else type(original).__name__
