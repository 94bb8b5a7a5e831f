"""`cti sim` as a load generator: a real AMI client sees the calls; figures at the end."""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

import pytest

from cti.queuelog.model import parse_line

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_sim_waits_for_a_client_then_generates_calls_and_prints_figures(
    tmp_path: Path,
) -> None:
    port = _free_port()
    queue_log = tmp_path / "queue_log"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cti", "sim", "--calls-per-second", "20", "--agents", "12",
        "--duration", "1", "--ami-port", str(port), "--agi", "none", "--time-scale", "0.05",
        "--seed", "1", "--log-level", "warning", "--queue-log", str(queue_log),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    waiting = await asyncio.wait_for(proc.stdout.readline(), 30)
    assert f"AMI on 127.0.0.1:{port}" in waiting.decode()
    assert "waiting" in (await asyncio.wait_for(proc.stdout.readline(), 5)).decode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reader.readline()
    writer.write(b"Action: Login\r\nUsername: cti\r\nSecret: \r\nEvents: call,agent\r\n\r\n")
    reading = asyncio.create_task(reader.read())  # until the simulator closes (EOF)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    received = await asyncio.wait_for(reading, 10)
    writer.close()
    assert proc.returncode == 0, err.decode()
    figures = out.decode().strip().splitlines()[-1]
    assert "calls ended" in figures and "answered" in figures, figures
    calls = int(figures.split("cti sim: ")[1].split(" calls")[0])
    assert calls >= 5
    assert received.count(b"Event: QueueCallerJoin\r\n") >= calls
    assert b"Event: VarSet" not in received  # dialplan class not asked for
    # Asterisk's queue_log, as app_queue writes it: a queue entry per call joining a queue.
    entries = [r for r in map(parse_line, queue_log.read_text().splitlines()) if r]
    assert sum(r.event == "ENTERQUEUE" for r in entries) == received.count(
        b"Event: QueueCallerJoin\r\n"
    )
