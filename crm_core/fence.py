"""Fencing in the database: a write made under a stale fencing token is refused.

``live_pbx.fence`` holds the highest fencing token that wrote for a PBX (``cti.cluster``: the
token comes with the instance's Redis lease on the PBX). A write made on behalf of an
ingester first runs, in its own transaction,
``INSERT ... ON CONFLICT (pbx_id) DO UPDATE SET fence = :token WHERE live_pbx.fence <= :token``:
no row changed means a newer ingester has written since, and the transaction is rolled back
with ``StaleFence``. On PostgreSQL the row lock serialises it with the newer writer's own
claim, so an old holder woken from a pause cannot slip a write in after its successor's.

Live call state (``cti.callstate``) and interaction records (``CrmStore.record_interaction``)
are both written this way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from crm_core.models import LivePbx


class StaleFence(Exception):
    """A newer instance ingests this PBX: this one must stop, and not write."""

    def __init__(self, pbx_id: str, token: int) -> None:
        super().__init__(f"fencing token {token} for PBX {pbx_id!r} is stale: a newer ingester")
        self.pbx_id = pbx_id
        self.token = token


@dataclass(frozen=True)
class Fence:
    """The token a write is made under, for one PBX (0: not ingesting, always stale once
    any ingester has written)."""

    pbx_id: str
    token: int


async def claim(conn: AsyncConnection, pbx_id: str, token: int) -> None:
    """Record ``token`` as the PBX's fence, or raise ``StaleFence`` if a larger one wrote."""
    table: Any = LivePbx.__table__
    pg = conn.dialect.name == "postgresql"
    stmt = (postgresql.insert if pg else sqlite.insert)(table).values(pbx_id=pbx_id, fence=token)
    stmt = stmt.on_conflict_do_update(
        index_elements=["pbx_id"],
        set_={"fence": stmt.excluded.fence},
        where=table.c.fence <= stmt.excluded.fence,
    )
    result = await conn.execute(stmt)
    if result.rowcount == 0:
        raise StaleFence(pbx_id, token)
