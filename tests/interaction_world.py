"""A daemon on a real store (SQLite file or PostgreSQL) fed recorded calls by the fake AMI server,
for the interaction-log tests: each call is a recorded trace given fresh ids."""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from fakes.ami_server import FakeAmiServer, read_ami_events

from crm_core.store import CrmStore
from cti.config import Config
from cti.daemon import Daemon, build_daemon

TRACE_CALLER = "+442071234567"
_ID = re.compile(r"^(\d{10})\.(\d+)$")


def recorded(traces_dir: Path, name: str = "answered_tier1") -> list[dict[str, str]]:
    return read_ami_events(traces_dir / "asterisk22" / f"{name}.ami")


def renumbered(
    events: list[dict[str, str]], shift: int, caller: str | None = None
) -> list[dict[str, str]]:
    """The trace with every Uniqueid/Linkedid moved by ``shift`` (a new call each time) and the
    caller's number replaced by ``caller`` wherever it appears."""
    out = []
    for event in events:
        copy = {}
        for key, value in event.items():
            match = _ID.match(value)
            if match:
                value = f"{int(match.group(1)) + shift}.{match.group(2)}"
            elif caller is not None and value == TRACE_CALLER:
                value = caller
            copy[key] = value
        out.append(copy)
    return out


def call_id_of(events: list[dict[str, str]]) -> str:
    return next(e["Linkedid"] for e in events if e.get("Event") == "Newchannel")


def unique_shift() -> int:
    """A shift no other test of the session uses (PostgreSQL keeps rows across tests)."""
    return secrets.randbelow(10**6) * 10_000 + 10_000


def config_for(db_url: str, ami_port: int, dead_letter_path: Path, **sections: Any) -> Config:
    data: dict[str, Any] = {
        "ami": {
            "host": "127.0.0.1",
            "port": ami_port,
            "username": "cti",
            "secret": "cti-secret",
            "reconnect_initial_s": 0.05,
            "reconnect_max_s": 0.2,
            # A PBX of its own: the database is shared by the session's tests, and another
            # world's calls still in their grace at its stop would be restored and closed here.
            "pbx_id": f"pbx-{dead_letter_path.parent.name}"[:64],
        },
        "agi": {"host": "127.0.0.1", "port": 0},
        "http": {"host": "127.0.0.1", "port": 0},
        "database": {"url": db_url},
        "crm": {"dead_letter_path": str(dead_letter_path)},
        "routing": {"default": {"tier": "tier1", "reason": "default route"}},
    }
    data.update(sections)
    return Config.model_validate(data)


async def wait_until(condition: Callable[[], bool], within_s: float = 10.0) -> None:
    async with asyncio.timeout(within_s):
        while not condition():  # noqa: ASYNC110 - polls state another task updates
            await asyncio.sleep(0.01)


class World:
    def __init__(self, ami: FakeAmiServer, store: CrmStore, config: Config) -> None:
        self.ami = ami
        self.store = store
        self.config = config
        self.daemon: Daemon | None = None

    @property
    def running(self) -> Daemon:
        assert self.daemon is not None
        return self.daemon

    async def start(self, **options: Any) -> Daemon:
        self.daemon = await build_daemon(self.config, store=self.store, **options)
        await self.daemon.start()
        await wait_until(lambda: self.running.resyncs >= 1)
        return self.daemon

    async def stop(self) -> None:
        if self.daemon is not None:
            await self.daemon.stop()
            self.daemon = None

    async def call(self, events: list[dict[str, str]]) -> str:
        """Play one call to its end; its call id."""
        call_id = call_id_of(events)
        await self.ami.play(events)
        calls = self.running.parts.calls
        await wait_until(lambda: (c := calls.get(call_id)) is not None and c.state == "ended")
        await calls.lookup_settled(call_id)
        return call_id

    async def get(self, path: str) -> tuple[int, Any]:
        url = f"http://127.0.0.1:{self.running.http_port}{path}"
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            if response.content_type == "application/json":
                return response.status, await response.json()
            return response.status, await response.text()


@asynccontextmanager
async def world(db_url: str, tmp_path: Path, **sections: Any) -> AsyncIterator[World]:
    store = await CrmStore.open(db_url)
    ami = FakeAmiServer()
    await ami.start()
    w = World(ami, store, config_for(db_url, ami.port, tmp_path / "dead.jsonl", **sections))
    try:
        yield w
    finally:
        await w.stop()
        await ami.stop()
        await store.close()


def metric(text: str, name: str, labels: Mapping[str, str] | None = None) -> float | None:
    """The value of one sample in a Prometheus text exposition."""
    want = name
    if labels:
        want += "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
    for line in text.splitlines():
        if line.startswith(want + " "):
            return float(line.rsplit(" ", 1)[1])
    return None
