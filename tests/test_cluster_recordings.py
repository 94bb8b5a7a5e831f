"""Several instances (real Redis): a call's recording is played back from any instance.

Asterisk writes a recording where the ingester told it (``MixMonitor`` into
``[supervisor] recordings_dir``) and every instance reads that same directory (shared with
the PBXs: a recording made under one ingester is played back after it is gone). So a standby
serves the file itself, Range requests included, and writes the one audit entry. Who may hear
it is not in the standby's memory: the agent who took the call is found in the statistics'
legs once the call ended, and asked of the ingester while it is still in its memory.

Two daemons in this process (``test_cluster_forward``): A ingests the PBX, B stands by."""

from __future__ import annotations

import asyncio
import json
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from fakes.ami_server import FakeAmiServer
from test_cluster_actions import Api, eventually, ingesting, started, token
from test_cluster_forward import AGENT, answered_call, config, forward_of, prefix, scenario

from cti.cluster.forward import TOOK_CALL
from cti.config import Config
from cti.daemon import Daemon
from cti.supervisor.listen import recording_file

__all__ = ["prefix"]  # the fixture, used by name

AUDIO = b"RIFF" + bytes(range(256)) * 64


def recorded(c: Config, directory: Path) -> Config:
    supervisor = c.supervisor.model_copy(
        update={"record_queues": ["tier1"], "recordings_dir": str(directory)}
    )
    return c.model_copy(update={"supervisor": supervisor})


async def get(
    session: aiohttp.ClientSession, via: Daemon, path: str, who: str, rng: str | None = None
) -> tuple[int, bytes, dict[str, str]]:
    headers = {"Authorization": f"Bearer {token(who)}"} | ({"Range": rng} if rng else {})
    url = f"http://127.0.0.1:{via.http_port}{path}"
    async with session.get(url, headers=headers) as r:
        return r.status, await r.read(), dict(r.headers)


async def playbacks(session: aiohttp.ClientSession, via: Daemon) -> list[tuple[str, str | None]]:
    status, body, _ = await get(session, via, "/api/supervisor/audit", "Boss")
    assert status == 200, body
    entries = json.loads(body)["entries"]
    return [(e["supervisor"], e["detail"]["range"]) for e in entries if e["action"] == "playback"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_standby_plays_a_recording_back_with_ranges_to_the_agent_who_took_the_call(
    db_url: str, prefix: str, traces_dir: Path, tmp_path: Path
) -> None:
    shared = tmp_path / "recordings"  # the same directory on every instance and the PBX
    async with (
        AsyncExitStack() as stack,
        FakeAmiServer(queues={"tier1": ["PJSIP/1001"]}) as pbx,
        aiohttp.ClientSession() as session,
    ):

        async def holds_it(d: Daemon) -> None:
            await eventually(ingesting(d, "pbx1"))

        async def nothing(_d: Daemon) -> None:
            return None

        a = await started(
            stack, recorded(config("A", db_url, prefix, pbx, []), shared), db_url, holds_it
        )
        b = await started(
            stack,
            recorded(config("B", db_url, prefix, pbx, ["elsewhere"]), shared),
            db_url,
            nothing,
        )
        await eventually(lambda: bool(getattr(a.parts.ami, "connected", False)))
        call_id, rest = await answered_call(a, pbx, traces_dir)
        action = await pbx.wait_for_action("MixMonitor")
        path = recording_file(shared, call_id)
        assert action.headers["file"] == str(path)  # A told Asterisk where to write it
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(AUDIO)  # what Asterisk has written so far
        url = f"/api/recordings/{call_id}"

        # The call is in A's memory only, its legs not written yet: A says whose it is.
        status, body, headers = await get(session, b, url, AGENT, "bytes=4-11")
        assert status == 206, body
        assert body == bytes(range(8))
        assert headers["Content-Range"] == f"bytes 4-11/{len(AUDIO)}"
        assert headers["Accept-Ranges"] == "bytes"
        status, body, _ = await get(session, b, url, "Other Agent")
        assert status == 403, body
        status, body, _ = await get(session, b, url, "Boss")
        assert status == 200 and body == AUDIO

        await pbx.play(rest)  # the call ends; its legs are written, A forgets it
        await eventually(lambda: (c := a.parts.calls.get(call_id)) is None or c.state == "ended")
        assert a.parts.supervision is not None and a.parts.supervision.recorder is not None
        assert await a.parts.supervision.recorder.flush(10.0)  # type: ignore[attr-defined]
        await a.stop()  # the ingester is gone: the legs alone say who took the call
        status, body, headers = await get(session, b, url, AGENT, "bytes=0-3")
        assert status == 206 and body == b"RIFF", body

        assert await playbacks(session, b) == [  # one entry per playback, by B
            (AGENT, "bytes=4-11"),
            ("Boss", None),
            (AGENT, "bytes=0-3"),
        ]
        assert forward_of(a).replayed == 0  # served by B, not replayed on A


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_an_agent_is_told_503_not_403_when_the_ingester_does_not_say_whose_call_it_is(
    db_url: str, prefix: str, traces_dir: Path
) -> None:
    async def body(api: Api, a: Daemon, b: Daemon, pbx: FakeAmiServer, call_id: str) -> None:
        assert a.parts.cluster is not None and b.parts.cluster is not None
        assert a.parts.cluster.relay is not None and b.parts.cluster.relay is not None
        done = asyncio.Event()

        async def stuck(_payload: Any) -> Any:
            await done.wait()

        a.parts.cluster.relay.handle(TOOK_CALL, stuck)
        b.parts.cluster.relay.timeout_s = 0.5
        status, got = await api(b, "GET", f"/api/recordings/{call_id}", AGENT)
        done.set()
        assert status == 503, got
        assert "instance A" in got["error"] and call_id in got["error"]

    await scenario(db_url, prefix, traces_dir, body)
