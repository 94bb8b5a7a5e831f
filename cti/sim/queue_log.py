"""The simulated PBX's queue_log, written as Asterisk 22 writes it (``cti.queuelog.model``).

``QueueLogFile`` appends ``epoch|callid|queue|agent|event|data`` lines (``main/logger.c``,
whole seconds, flushed per row). ``QueueLogTable`` inserts into the realtime table as
``ast_store_realtime`` does with ``queue_adaptive_realtime`` (``time`` as a naive timestamp
with microseconds in local time, or UTC with ``queue_log_realtime_use_gmt``; the data split
on ``|`` over data1..data5, the fifth taking the rest); ``create_table`` makes the table as
``contrib/ast-db-manage``'s ``queue_log`` migration does. Rows are inserted in order by one
owned task a few milliseconds after they are logged.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from cti.queuelog.model import QueueLogRow, format_line


class QueueLogWriter(Protocol):
    def write(self, row: QueueLogRow) -> None: ...

    async def close(self) -> None: ...


class QueueLogFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = path.open("a", encoding="utf-8")

    def write(self, row: QueueLogRow) -> None:
        self._file.write(format_line(row) + "\n")
        self._file.flush()

    async def close(self) -> None:
        self._file.close()


async def create_table(engine: AsyncEngine, table: str = "queue_log") -> None:
    """The realtime table as ``contrib/ast-db-manage/queue_log`` creates it."""
    ident = "BIGSERIAL" if engine.dialect.name == "postgresql" else "INTEGER"
    async with engine.begin() as conn:
        await conn.execute(
            text(
                f"CREATE TABLE IF NOT EXISTS {table} (id {ident} PRIMARY KEY, time TIMESTAMP,"
                " callid VARCHAR(80), queuename VARCHAR(256), agent VARCHAR(80),"
                " event VARCHAR(32), data1 VARCHAR(100), data2 VARCHAR(100),"
                " data3 VARCHAR(100), data4 VARCHAR(100), data5 VARCHAR(100))"
            )
        )


class QueueLogTable:
    def __init__(self, engine: AsyncEngine, table: str = "queue_log", *, gmt: bool = True) -> None:
        self._engine = engine
        self._gmt = gmt
        self._sql = text(
            f"INSERT INTO {table} (time, callid, queuename, agent, event,"
            " data1, data2, data3, data4, data5)"
            " VALUES (:time, :callid, :queuename, :agent, :event,"
            " :data1, :data2, :data3, :data4, :data5)"
        )
        self._rows: list[dict[str, object]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.written = 0
        self._busy = False

    def write(self, row: QueueLogRow) -> None:
        at = (
            datetime.fromtimestamp(row.time, UTC).replace(tzinfo=None)
            if self._gmt
            else datetime.fromtimestamp(row.time)
        )
        data = "|".join(row.data).split("|", 4)  # AST_NONSTANDARD_APP_ARGS(data[5], '|')
        data += [""] * (5 - len(data))
        self._rows.append(
            {
                "time": at,
                "callid": row.callid,
                "queuename": row.queue,
                "agent": row.agent,
                "event": row.event,
                **{f"data{i + 1}": d for i, d in enumerate(data)},
            }
        )
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="sim-queue-log")
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._flush()

    async def _flush(self) -> None:
        self._busy = True
        try:
            while self._rows:
                rows, self._rows = self._rows, []
                async with self._engine.begin() as conn:
                    await conn.execute(self._sql, rows)
                self.written += len(rows)
        finally:
            self._busy = False

    async def close(self) -> None:
        """Every row logged so far is in the table."""
        while self._task is not None and (self._rows or self._busy):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._flush()
