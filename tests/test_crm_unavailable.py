"""A dead or broken database raises CrmUnavailable with a clear message, never a driver error."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from crm_core import CrmStore, CrmUnavailable, InteractionRecord
from crm_core.testing import empty_store

PG_HOST, PG_PORT = "127.0.0.1", 5432


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TcpProxy:
    """A real TCP hop in front of PostgreSQL that a test can cut and restore."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", self.port)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(PG_HOST, PG_PORT)
        self._writers |= {writer, up_writer}
        for task in (self._pipe(reader, up_writer), self._pipe(up_reader, writer)):
            self._tasks.add(asyncio.create_task(task))

    async def cut(self) -> None:
        """The database host goes away: listening stops, open connections are reset."""
        if self._server:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()


@pytest.fixture
async def proxied_pg(pg_server_url: str) -> AsyncIterator[tuple[TcpProxy, str]]:
    proxy = TcpProxy(free_port())
    await proxy.start()
    url = pg_server_url.replace(f"{PG_HOST}:{PG_PORT}", f"127.0.0.1:{proxy.port}")
    try:
        yield proxy, url.replace("postgresql://", "postgresql+asyncpg://", 1)
    finally:
        await proxy.cut()


async def test_opening_a_postgresql_nobody_listens_on_is_crm_unavailable() -> None:
    started = time.monotonic()
    with pytest.raises(CrmUnavailable, match="unavailable"):
        await CrmStore.open(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/crm")
    assert time.monotonic() - started < 10


async def test_a_sqlite_path_that_cannot_exist_is_crm_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(CrmUnavailable, match="cannot create the CRM directory"):
        await CrmStore.open(f"sqlite+aiosqlite:///{blocker}/crm.db")


async def test_a_file_that_is_not_a_database_is_crm_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "crm.db"
    path.write_bytes(b"this is a text file, not SQLite" * 100)
    with pytest.raises(CrmUnavailable, match="not a database"):
        await CrmStore.open(f"sqlite+aiosqlite:///{path}")


async def test_database_going_away_mid_run_gives_crm_unavailable_then_recovers(
    proxied_pg: tuple[TcpProxy, str],
) -> None:
    proxy, url = proxied_pg
    store = await empty_store(url, cache_size=0)
    try:
        ann = await store.upsert_customer(name="Ann", phones=["02071234567"])
        assert (await store.resolve("02071234567")).status == "match"

        await proxy.cut()
        calls = [
            store.resolve("02071234567"),
            store.view(ann.customer_id),
            store.search("Ann"),
            store.record_interaction(InteractionRecord("c1", ann.customer_id, "02071234567")),
            store.add_interaction_note("c1", "note", "Agent 1"),
            store.ping(),
        ]
        for call in calls:
            started = time.monotonic()
            with pytest.raises(CrmUnavailable):
                await call
            assert time.monotonic() - started < 10
        # Caller IDs that need no database still get an answer.
        assert (await store.resolve("anonymous")).status == "anonymous"

        await proxy.start()  # the database is back: the store reconnects by itself
        assert (await store.resolve("02071234567")).customer_id == ann.customer_id
        assert await store.view(ann.customer_id) is not None
    finally:
        await store.close()
