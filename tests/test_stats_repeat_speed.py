"""Period reports on PostgreSQL sort and hash in memory, not in temporary files (the
benchmark: bench/bench_stats.py)."""

from __future__ import annotations

from sqlalchemy import text

from cti.stats.period import report_engine


async def test_reports_on_postgresql_sort_in_memory(pg_server_url: str) -> None:
    engine = report_engine(pg_server_url.replace("postgresql://", "postgresql+asyncpg://", 1))
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("SHOW work_mem"))).scalar_one() == "128MB"
    finally:
        await engine.dispose()
