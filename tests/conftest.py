"""Shared fixtures: the shared traces and a CRM database on each store (SQLite, PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import structlog
from aiohttp import web

from connectors.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
PG_DSN = os.environ.get("CTI_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` beside the checkout (recorded Asterisk traffic and tools)."""
    if not (SHARED / "ami-traces").is_dir():
        pytest.skip(f"recorded Asterisk traffic not found at {SHARED}/ami-traces")
    return SHARED


@pytest.fixture(scope="session")
def traces_dir(shared_dir: Path) -> Path:
    return shared_dir / "ami-traces"


@pytest.fixture(scope="session")
def protocol_dir(shared_dir: Path) -> Path:
    return shared_dir / "ami-traces" / "asterisk22" / "protocol"


async def _pg_admin(statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_DSN, timeout=5)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    name = f"cti_test_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, Exception) as exc:  # asyncpg raises its own errors, OSError when down
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL at {PG_DSN} is not reachable: {exc}")
    base = PG_DSN.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL for each store; PostgreSQL tables are emptied by the store's own tests."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}"
    url: str = request.getfixturevalue("pg_server_url")
    return url.replace("postgresql://", "postgresql+asyncpg://", 1)


@pytest.fixture(autouse=True)
def _fresh_structlog() -> Iterator[None]:
    """Each test starts from structlog's defaults, whatever an in-process CLI run configured."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


@pytest.fixture
async def redis_prefix() -> AsyncIterator[tuple[aioredis.Redis, str]]:
    """The machine's Redis and a key prefix of this test alone, its keys deleted after it."""
    client = aioredis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as exc:
        await client.aclose()
        pytest.skip(f"Redis at {REDIS_URL} is not reachable: {exc}")
    prefix = f"cti-test-{uuid.uuid4().hex[:10]}"
    yield client, prefix
    keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
async def hook() -> AsyncIterator[tuple[int, list[dict[str, Any]]]]:
    """A webhook receiver on 127.0.0.1 (``/hook``, secret ``hook-secret``): its port and the
    bodies it took, each signature checked."""
    received: list[dict[str, Any]] = []

    async def take(request: web.Request) -> web.Response:
        body = await request.read()
        assert verify("hook-secret", request.headers[TIMESTAMP_HEADER], body,
                      request.headers[SIGNATURE_HEADER])  # fmt: skip
        received.append(json.loads(body))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", take)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield runner.addresses[0][1], received
    finally:
        await runner.cleanup()
