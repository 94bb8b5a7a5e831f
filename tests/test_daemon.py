"""The daemon's lifetime: built from config, started on free ports, stopped in reverse, and
``cti run`` as a real process that says when it is ready and exits 0 on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from fakes.ami_server import FakeAmiServer

from cti.ami.errors import AmiAuthError
from cti.config import Config
from cti.daemon import build_daemon
from cti.tracker.events import CallEvent

ROOT = Path(__file__).resolve().parent.parent


class QuietTracker:
    """No calls: these tests are about the daemon's lifetime, not call tracking."""

    def __init__(self) -> None:
        self.fed: list[dict[str, str]] = []
        self.resyncs = 0

    def feed(self, event: dict[str, str]) -> list[CallEvent]:
        self.fed.append(event)
        return []

    def resync(self, items: Any, **_: Any) -> list[CallEvent]:
        self.resyncs += 1
        return []


def config_for(tmp_path: Path, ami_port: int, secret: str = "cti-secret", **ami: Any) -> Config:
    return Config.model_validate(
        {
            "ami": {
                "port": ami_port,
                "secret": secret,
                "reconnect_initial_s": 0.05,
                "reconnect_max_s": 0.2,
                **ami,
            },
            "agi": {"host": "127.0.0.1", "port": 0},
            "http": {"host": "127.0.0.1", "port": 0},
            "database": {"url": f"sqlite:///{tmp_path / 'crm.db'}"},
        }
    )


@pytest.fixture
async def ami() -> AsyncIterator[FakeAmiServer]:
    server = FakeAmiServer(auth_fail_delay_s=0.05)
    await server.start()
    yield server
    await server.stop()


async def eventually(condition: Callable[[], bool], within_s: float = 5.0) -> None:
    async with asyncio.timeout(within_s):
        while not condition():  # noqa: ASYNC110 - polls state another task updates
            await asyncio.sleep(0.01)


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def test_started_daemon_serves_health_and_feeds_ami_events_to_the_tracker(
    tmp_path: Path, ami: FakeAmiServer
) -> None:
    tracker = QuietTracker()
    daemon = await build_daemon(config_for(tmp_path, ami.port), tracker=tracker)
    await daemon.start()
    try:
        assert daemon.ready.is_set() and daemon.http_port and daemon.agi_port
        await eventually(lambda: daemon.resyncs >= 1)
        assert tracker.resyncs == 1
        await ami.play([{"Event": "Newchannel", "Channel": "Local/1@x-1;1", "Uniqueid": "1.1"}])
        await eventually(lambda: bool(tracker.fed))
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{daemon.http_port}/healthz") as response,
        ):
            assert response.status == 200
            assert (await response.json())["ami"] is True
    finally:
        await daemon.stop()


async def test_stop_releases_every_port_and_can_be_called_twice(
    tmp_path: Path, ami: FakeAmiServer
) -> None:
    daemon = await build_daemon(config_for(tmp_path, ami.port), tracker=QuietTracker())
    await daemon.start()
    ports = (daemon.http_port, daemon.agi_port)
    await daemon.stop()
    await daemon.stop()
    assert all(p is not None and port_is_free(p) for p in ports)
    assert daemon.stopped.is_set() and not daemon.ready.is_set()


async def test_wrong_ami_secret_fails_start_clearly_and_leaves_nothing_listening(
    tmp_path: Path, ami: FakeAmiServer
) -> None:
    daemon = await build_daemon(
        config_for(tmp_path, ami.port, secret="wrong"), tracker=QuietTracker()
    )
    with pytest.raises(AmiAuthError):
        await daemon.start()
    assert daemon.http_port is None and daemon.stopped.is_set()


async def test_a_daemon_without_ami_still_serves_the_api(tmp_path: Path) -> None:
    config = config_for(tmp_path, 5038, enabled=False)
    async with await build_daemon(config, tracker=QuietTracker()) as daemon:
        assert daemon.parts.ami is None
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{daemon.http_port}/healthz") as response,
        ):
            assert response.status in (200, 503)
            assert (await response.json())["ami"] is False


@pytest.mark.slow
async def test_cti_run_reports_ready_and_exits_0_on_sigterm(
    tmp_path: Path, ami: FakeAmiServer
) -> None:
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
url = "sqlite:///{tmp_path / "crm.db"}"
[logging]
format = "json"
""",
        encoding="utf-8",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cti",
        "run",
        "-c",
        str(conf),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stderr is not None
    try:
        async with asyncio.timeout(30):
            port = None
            while port is None:
                line = (await proc.stderr.readline()).decode()
                assert line, "cti run ended before it was ready"
                if "daemon.ready" in line:
                    import json

                    port = json.loads(line)["http_port"]
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/healthz") as response,
        ):
            assert response.status == 200
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
