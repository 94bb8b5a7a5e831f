"""Where Asterisk's queue_log is read: its file (one node beside Asterisk) or its realtime table.

Both read incrementally: the first ``read(since)`` takes every row from ``since`` on, later
ones only what was appended (the file from its last offset, the table from a few seconds
before the newest row seen, the overlap dropped), so polling costs what is new.

The file (``logger.conf`` ``queue_log_to_file``/no realtime) has whole-second times. The table
is the one ``contrib/ast-db-manage`` creates for ``extconfig.conf`` ``queue_log => pgsql,...``
(``time, callid, queuename, agent, event, data1..data5``), ``time`` a timestamp without zone
in Asterisk's local time, or UTC with ``queue_log_realtime_use_gmt = yes`` (``timezone``).
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import BinaryIO, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from cti.queuelog.model import QueueLogRow, parse_line

_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$")


class QueueLogSource(Protocol):
    """Rows of one PBX's queue_log."""

    @property
    def fine(self) -> bool:
        """Its times are finer than a second."""
        ...

    async def read(self, since: float) -> list[QueueLogRow]:
        """Every row logged at or after ``since`` (epoch seconds), oldest first."""
        ...

    async def close(self) -> None: ...


class FileSource:
    """``/var/log/asterisk/queue_log`` on this host."""

    fine = False

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._inode: int | None = None
        self._rows: list[QueueLogRow] = []
        self._from: float | None = None
        self.bytes_read = 0

    async def read(self, since: float) -> list[QueueLogRow]:
        if self._from is None or since < self._from:
            self._offset, self._rows, self._from = 0, [], since
        await asyncio.to_thread(self._read_new)
        return [r for r in self._rows if r.time >= since]

    def _read_new(self) -> None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return
        if stat.st_ino != self._inode or stat.st_size < self._offset:  # rotated, truncated
            self._inode, self._offset, self._rows = stat.st_ino, 0, []
        with self.path.open("rb") as f:
            if self._offset == 0 and self._from:
                self._offset = _first_at_or_after(f, stat.st_size, int(self._from))
            f.seek(self._offset)
            data = f.read()
        self.bytes_read += len(data)
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next read
        self._offset += end
        floor = int(self._from or 0)
        for raw in data[:end].decode("utf-8", "replace").splitlines():
            row = parse_line(raw)
            if row is not None and row.time >= floor:
                self._rows.append(row)

    async def close(self) -> None:
        return None


def _first_at_or_after(f: BinaryIO, size: int, since: int) -> int:
    """The offset of a line start at or before the first line logged at ``since`` or later
    (the file is in time order): a bisection, not a read of years of queue_log."""
    low, high = 0, size
    while high - low > 65536:
        mid = (low + high) // 2
        f.seek(mid)
        f.readline()  # to the next line start
        line = f.readline()
        head = line.split(b"|", 1)[0]
        if not line or not head.isdigit() or int(head) >= since:
            high = mid
        else:
            low = mid
    if low:
        f.seek(low)
        f.readline()
        return f.tell()
    return 0


class TableSource:
    """The realtime ``queue_log`` table (PostgreSQL, MySQL/MariaDB, SQLite)."""

    fine = True

    def __init__(
        self,
        engine: AsyncEngine,
        table: str = "queue_log",
        *,
        timezone: str = "",
        owns_engine: bool = False,
        overlap_s: float = 5.0,
    ) -> None:
        if not _TABLE.match(table):
            raise ValueError(f"not a table name: {table!r}")
        self._engine = engine
        self._zone: tzinfo | None = ZoneInfo(timezone) if timezone else None
        self._owns = owns_engine
        self._overlap_s = overlap_s
        self._sql = text(
            f"SELECT time, callid, queuename, agent, event, data1, data2, data3, data4, data5"
            f" FROM {table} WHERE time >= :since ORDER BY time"
        )
        self._seen: dict[tuple[object, ...], QueueLogRow] = {}
        self._from: float | None = None
        self._newest: float | None = None

    def _naive(self, at: float) -> datetime:
        """``at`` as the table writes it (naive, in Asterisk's zone)."""
        if self._zone is None:
            return datetime.fromtimestamp(at)  # this host's local time, as Asterisk's
        return datetime.fromtimestamp(at, self._zone).replace(tzinfo=None)

    def _epoch(self, value: datetime | str) -> float:
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            if self._zone is None:
                return value.timestamp()
            value = value.replace(tzinfo=self._zone)
        return value.astimezone(UTC).timestamp()

    async def read(self, since: float) -> list[QueueLogRow]:
        if self._from is None or since < self._from:
            self._seen, self._from, self._newest = {}, since, None
        start = since if self._newest is None else max(since, self._newest - self._overlap_s)
        async with self._engine.connect() as conn:
            result = await conn.execute(self._sql, {"since": self._naive(start)})
            fetched = result.all()
        for t, callid, queue, agent, event, *data in fetched:
            row = QueueLogRow(
                self._epoch(t),
                callid or "",
                queue or "",
                agent or "",
                event or "",
                tuple(d or "" for d in data),
            )
            self._seen.setdefault(
                (row.time, row.callid, row.queue, row.agent, row.event, row.data), row
            )
            if self._newest is None or row.time > self._newest:
                self._newest = row.time
        return sorted((r for r in self._seen.values() if r.time >= since), key=lambda r: r.time)

    async def close(self) -> None:
        if self._owns:
            await self._engine.dispose()
