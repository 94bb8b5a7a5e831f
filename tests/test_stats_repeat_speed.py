"""The repeat-call query of period reports reads a month of calls with one scan and a sort,
in memory: not row by row through the customer index (the benchmark: bench/bench_stats.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text

from crm_core.store import CrmStore
from cti.stats import period
from cti.stats.period import report_engine

START = datetime(2026, 11, 1, tzinfo=UTC).timestamp()


class PlanOf:
    """A connection that answers the query's plan instead of running it."""

    def __init__(self, conn: Any) -> None:
        self.conn, self.dialect, self.plans = conn, conn.dialect, []

    async def execute(self, query: Any) -> Any:
        sql = str(query.compile(dialect=self.dialect, compile_kwargs={"literal_binds": True}))
        explain = "EXPLAIN QUERY PLAN " if self.dialect.name == "sqlite" else "EXPLAIN "
        rows = (await self.conn.execute(text(explain + sql))).all()
        self.plans.append("\n".join(str(row[-1]) for row in rows))
        return await self.conn.execute(query)


async def test_repeat_calls_do_not_read_the_month_through_the_customer_index(
    tmp_path: Path,
) -> None:
    # SQLite: its planner takes the index whenever it can (PostgreSQL's choice depends on the
    # table sizes; the benchmark measures it there).
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}"
    store = await CrmStore.open(db_url)
    await store.close()
    engine = report_engine(db_url)
    try:
        async with engine.connect() as conn:
            spy = PlanOf(conn)
            for by in ("queue", "agent"):
                await period._repeat_calls(spy, START, START + 30 * 86400, by, 7)
    finally:
        await engine.dispose()
    for plan in spy.plans:
        assert "ix_interactions_customer_started" not in plan, plan


async def test_reports_on_postgresql_sort_in_memory(pg_server_url: str) -> None:
    engine = report_engine(pg_server_url.replace("postgresql://", "postgresql+asyncpg://", 1))
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("SHOW work_mem"))).scalar_one() == "128MB"
    finally:
        await engine.dispose()
