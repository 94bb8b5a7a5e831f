"""`cti demo` as a newcomer runs it: one process, a desktop login, real pops, Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest

pytestmark = pytest.mark.slow

READY = "cti demo: ready at "


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Demo:
    """A ``cti demo`` subprocess on free ports with its own HOME and database."""

    def __init__(self, tmp_path: Path, *extra: str) -> None:
        self.tmp_path = tmp_path
        self.http_port = _free_port()
        self.args = [
            "demo",
            "--http-port",
            str(self.http_port),
            "--ami-port",
            str(_free_port()),
            "--agi-port",
            str(_free_port()),
            "--db",
            str(tmp_path / "demo.db"),
            *extra,
        ]
        self.proc: asyncio.subprocess.Process | None = None
        self.output: list[str] = []
        self.url = ""

    async def start(self) -> None:
        env = {**os.environ, "HOME": str(self.tmp_path), "XDG_DATA_HOME": str(self.tmp_path)}
        env.pop("CTI_CONFIG", None)
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cti",
            *self.args,
            stdout=asyncio.subprocess.PIPE,
            stderr=(self.tmp_path / "demo.stderr").open("ab"),
            env=env,
        )
        assert self.proc.stdout is not None
        async with asyncio.timeout(60):
            while True:
                line = (await self.proc.stdout.readline()).decode()
                if not line:
                    raise AssertionError(f"demo exited before ready: {self.output} {self.stderr()}")
                self.output.append(line)
                if line.startswith(READY):
                    self.url = line[len(READY) :].strip()
                    return

    async def interrupt(self) -> int:
        assert self.proc is not None and self.proc.stdout is not None
        self.proc.send_signal(signal.SIGINT)
        rest = await asyncio.wait_for(self.proc.stdout.read(), 30)
        self.output += rest.decode().splitlines(keepends=True)
        return await asyncio.wait_for(self.proc.wait(), 30)

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()

    def stderr(self) -> str:
        return (self.tmp_path / "demo.stderr").read_text(errors="replace")[-3000:]


async def test_demo_pops_a_real_call_on_a_demo_agents_desktop_and_exits_0_on_ctrl_c(
    tmp_path: Path,
) -> None:
    demo = Demo(tmp_path, "--calls-per-minute", "90", "--seed", "3")
    try:
        await demo.start()
        banner = "".join(demo.output)
        assert demo.url == f"http://127.0.0.1:{demo.http_port}/"
        assert "token demo-tier1" in banner and "token demo-supervisor" in banner
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{demo.url}api/login", json={"token": "demo-tier1"}) as resp:
                assert resp.status == 200, await resp.text()
                assert (await resp.json())["agent"]["name"] == "Agent 1001"
            async with http.ws_connect(f"{demo.url}ws") as ws:
                await ws.send_str(json.dumps({"type": "auth", "token": "demo-tier1"}))
                pop = None
                async with asyncio.timeout(45):
                    async for msg in ws:
                        data = json.loads(msg.data)
                        if data["type"] == "pop":
                            pop = data
                            break
                assert pop is not None, demo.stderr()
                assert pop["agent"] == "Agent 1001"
                assert pop["call_id"]
        assert await demo.interrupt() == 0, demo.stderr()
        assert "cti demo: stopped\n" in demo.output
    finally:
        demo.kill()


async def test_a_second_demo_reuses_the_customers_seeded_by_the_first(tmp_path: Path) -> None:
    first = Demo(tmp_path, "--calls-per-minute", "0")
    try:
        await first.start()
        assert any("seeded" in line for line in first.output)
        assert await first.interrupt() == 0, first.stderr()
    finally:
        first.kill()
    second = Demo(tmp_path, "--calls-per-minute", "0")
    try:
        await second.start()
        assert any("reusing" in line for line in second.output), second.output
        assert await second.interrupt() == 0, second.stderr()
    finally:
        second.kill()
