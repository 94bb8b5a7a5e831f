"""The real daemon seen from outside, for the end-to-end worlds that run it (the fake AMI
server's in ``test_e2e_calls``, a real Asterisk's in ``live``): agents' desktops over the
WebSocket, the HTTP API with an agent's token, the interaction records it writes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import aiohttp

from crm_core.store import CrmStore
from cti.config import Config
from cti.daemon import Daemon, build_daemon


def token_of(name: str) -> str:
    """The agent's token in the worlds' configurations."""
    return "tok-" + name.replace(" ", "-").lower()


async def wait_until(condition: Callable[[], bool], within_s: float = 5.0) -> None:
    async with asyncio.timeout(within_s):
        while not condition():  # noqa: ASYNC110 - polls state another task updates
            await asyncio.sleep(0.01)


class Desktop:
    """An agent's desktop: a WebSocket client that keeps every message it receives."""

    def __init__(self, name: str, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.name = name
        self.ws = ws
        self.messages: list[dict[str, Any]] = []
        self._arrived = asyncio.Event()
        self._reader = asyncio.create_task(self._read(), name=f"desktop-{name}")

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.messages.append(json.loads(msg.data))
                self._arrived.set()

    def of(self, kind: str, call_id: str | None = None) -> list[dict[str, Any]]:
        return [
            m
            for m in self.messages
            if m.get("type") == kind and (call_id is None or m.get("call_id") == call_id)
        ]

    def about(self, call_id: str) -> list[str]:
        """The call messages this desktop got for a call, in order (not queue member states)."""
        return [
            m["type"]
            for m in self.messages
            if m.get("call_id") == call_id and m.get("type") != "agent_state"
        ]

    async def wait_for(
        self, kind: str, call_id: str | None = None, within_s: float = 5.0
    ) -> dict[str, Any]:
        async with asyncio.timeout(within_s):
            while True:
                found = self.of(kind, call_id)
                if found:
                    return found[0]
                self._arrived.clear()
                await self._arrived.wait()

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)


@dataclass(kw_only=True)
class DaemonWorld:
    """The daemon built from ``config`` on ``store``, and the desktops connected to it."""

    store: CrmStore
    config: Config
    session: aiohttp.ClientSession
    daemon: Daemon | None = None
    desktops: dict[str, Desktop] = field(default_factory=dict)

    # How long the daemon may take to be ready (its first resync), to greet a desktop and to
    # write the records: a real Asterisk answers more slowly than the fake AMI server.
    ready_within_s: ClassVar[float] = 5.0
    hello_within_s: ClassVar[float] = 5.0
    flush_within_s: ClassVar[float] = 5.0

    @property
    def base(self) -> str:
        assert self.daemon is not None
        return f"http://127.0.0.1:{self.daemon.http_port}"

    async def start_daemon(self) -> Daemon:
        self.daemon = await build_daemon(self.config, store=self.store)
        await self.daemon.start()
        await wait_until(
            lambda: self.daemon is not None and self.daemon.resyncs >= 1, self.ready_within_s
        )
        return self.daemon

    async def stop_daemon(self) -> None:
        for desk in self.desktops.values():
            await desk.close()
        self.desktops.clear()
        if self.daemon is not None:
            await self.daemon.stop()
            self.daemon = None

    async def desktop(self, name: str) -> Desktop:
        ws = await self.session.ws_connect(f"{self.base}/ws?token={token_of(name)}")
        desk = self.desktops[name] = Desktop(name, ws)
        await desk.wait_for("hello", within_s=self.hello_within_s)
        return desk

    async def desktops_for(self, *names: str) -> list[Desktop]:
        return [await self.desktop(n) for n in names]

    async def api(self, method: str, path: str, who: str, **kwargs: Any) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token_of(who)}"}
        async with self.session.request(method, self.base + path, headers=headers, **kwargs) as r:
            return r.status, await r.json()

    async def interaction(self, call_id: str) -> dict[str, Any] | None:
        assert self.daemon is not None
        assert await self.daemon.parts.recorder.flush(self.flush_within_s)
        return await self.store.interaction(call_id)
