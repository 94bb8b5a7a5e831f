"""The Alembic migrations shipped in the package build exactly the schema the models declare."""

from __future__ import annotations

from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from crm_core import schema
from crm_core.models import Base
from crm_core.testing import empty_store


def _differences(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


# SQLite cannot reflect expression indexes (lower(email)); PostgreSQL compares them.
@pytest.mark.filterwarnings("ignore:.*expression-based index:UserWarning")
@pytest.mark.filterwarnings("ignore:.*expression-based index:sqlalchemy.exc.SAWarning")
async def test_migrated_database_matches_the_models(db_url: str) -> None:
    store = await empty_store(db_url)
    try:
        async with store.engine.connect() as conn:
            assert await conn.run_sync(_differences) == []
        assert await schema.current_revision(store.engine) == schema.head_revision()
    finally:
        await store.close()


async def test_downgrade_and_upgrade_again_keeps_the_customers(db_url: str) -> None:
    store = await empty_store(db_url)
    try:
        await store.upsert_customer(name="Ann Example", external_id="A", phones=["02071234567"])

        def downgrade(conn: Connection) -> None:
            cfg = schema.alembic_config()
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0001")

        async with store.engine.begin() as conn:
            await conn.run_sync(downgrade)
        assert await schema.current_revision(store.engine) == "0001"
        await schema.upgrade(store.engine)
        # The upgrade backfilled the name words of the customer already there.
        assert [c.external_id for c in await store.search("exam")] == ["A"]
    finally:
        await store.close()
