"""SIGTERM with the database down: the records not written are saved in the dead-letter file, not
dropped, and the exit status says whether anything was lost (``cti run`` as a process)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from fakes.ami_server import FakeAmiServer
from interaction_world import recorded, renumbered, unique_shift

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@pytest.fixture
async def ami() -> AsyncIterator[FakeAmiServer]:
    server = FakeAmiServer()
    await server.start()
    yield server
    await server.stop()


async def health(port: int) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}/healthz") as response,
    ):
        result: dict[str, Any] = await response.json()
        return result


async def read_log(stream: asyncio.StreamReader, stopped: asyncio.Event) -> None:
    while line := await stream.readline():
        if b"daemon.stopped" in line:
            stopped.set()


async def run_with_database_locked(
    tmp_path: Path, ami: FakeAmiServer, traces_dir: Path, dead_letters: Path
) -> int:
    """``cti run``; lock its SQLite database; three calls end; SIGTERM; the exit status, once
    it stopped within the time the shipped service files allow."""
    db = tmp_path / "crm.db"
    conf = tmp_path / "cti.toml"
    conf.write_text(
        f"""
[ami]
port = {ami.port}
secret = "cti-secret"
[agi]
host = "127.0.0.1"
port = 0
[http]
host = "127.0.0.1"
port = 0
[database]
url = "sqlite:///{db}"
[crm]
dead_letter_path = "{dead_letters}"
[logging]
format = "json"
""",
        encoding="utf-8",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cti", "run", "-c", str(conf),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.stderr is not None
    lock: sqlite3.Connection | None = None
    try:
        async with asyncio.timeout(30):
            port = None
            while port is None:
                line = (await proc.stderr.readline()).decode()
                assert line, "cti run ended before it was ready"
                if "daemon.ready" in line:
                    port = json.loads(line)["http_port"]
            while not (await health(port))["ami"]:  # noqa: ASYNC110 - polls another process
                await asyncio.sleep(0.05)
        # Keep reading its log, or a full pipe would stop the daemon.
        stopped = asyncio.Event()
        drain = asyncio.create_task(read_log(proc.stderr, stopped))
        lock = sqlite3.connect(db, isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")  # writers now wait, then fail: the CRM is "down"
        trace = recorded(traces_dir, "abandoned_in_queue")
        shift = unique_shift()
        for n in range(3):
            await ami.play(renumbered(trace, shift + n * 10))
        async with asyncio.timeout(30):
            while (await health(port))["interactions"]["pending"] < 3:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        asked = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            await stopped.wait()
        async with asyncio.timeout(30):
            status = await proc.wait()
        await drain
        # The parts that write stop side by side, each within its own deadline: one after
        # the other they took 17-22 s, and systemd (TimeoutStopSec) killed the process first.
        assert time.monotonic() - asked < 16
        return status
    finally:
        if lock is not None:
            lock.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_sigterm_with_the_database_down_saves_the_unwritten_records_and_exits_0(
    tmp_path: Path, ami: FakeAmiServer, traces_dir: Path
) -> None:
    dead = tmp_path / "dead.jsonl"
    assert await run_with_database_locked(tmp_path, ami, traces_dir, dead) == 0
    saved = [json.loads(line) for line in dead.read_text().splitlines()]
    assert len(saved) == 3 and {s["state"] for s in saved} == {"unwritten"}
    assert all(s["record"]["outcome"] == "abandoned" for s in saved)


async def test_sigterm_when_the_records_cannot_be_saved_either_exits_3(
    tmp_path: Path, ami: FakeAmiServer, traces_dir: Path
) -> None:
    (tmp_path / "not-a-dir").write_text("")
    dead = tmp_path / "not-a-dir" / "dead.jsonl"
    assert await run_with_database_locked(tmp_path, ami, traces_dir, dead) == 3


def test_the_shipped_service_files_wait_longer_than_a_stop_with_the_database_down() -> None:
    """The bound asserted above (16 s) fits in what compose and systemd give a stop."""
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text(encoding="utf-8"))
    for name, service in compose["services"].items():
        if name.startswith("cti"):
            assert int(service["stop_grace_period"].removesuffix("s")) >= 16, name
    unit = (ROOT / "docker" / "systemd" / "cti.service").read_text(encoding="utf-8")
    timeouts = [
        line.split("=", 1)[1] for line in unit.splitlines() if line.startswith("TimeoutStopSec=")
    ]
    assert [int(t) for t in timeouts] and all(int(t) >= 16 for t in timeouts)
