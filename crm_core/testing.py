"""Helpers for tests of code that uses the CRM store: a migrated, empty store on any URL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, text

from crm_core.models import Base
from crm_core.store import CrmStore


async def wipe(store: CrmStore) -> None:
    """Delete every CRM row (a PostgreSQL test database is shared by a whole test session)."""
    tables = list(reversed(Base.metadata.sorted_tables))
    async with store.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            names = ", ".join(t.name for t in tables)
            await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                await conn.execute(delete(table))
    store.cache.clear()


async def empty_store(url: str, **options: Any) -> CrmStore:
    """Open (and migrate) the store at ``url`` with no customers in it."""
    store = await CrmStore.open(url, **options)
    await wipe(store)
    return store
