"""The whole daemon with recorded Asterisk traffic: the supervisor console gets a snapshot,
rows as the call goes, a fresh snapshot after an AMI resync, and the call's legs reach the
period statistics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientWebSocketResponse, WSMsgType
from test_e2e_calls import SUPERVISOR, Harness, harness, token_of, wait_until
from test_e2e_resync import answered_half

__all__ = ["harness"]


async def next_of(ws: ClientWebSocketResponse, kind: str, **match: Any) -> dict[str, Any]:
    while True:
        msg = await ws.receive(timeout=10)
        assert msg.type == WSMsgType.TEXT, (msg.type, msg.data)
        data: dict[str, Any] = json.loads(msg.data)
        row = data.get("row") or {}
        if data["type"] == kind and all(row.get(k, data.get(k)) == v for k, v in match.items()):
            return data


async def test_the_console_follows_a_recorded_call_and_starts_again_after_a_resync(
    harness: Harness, traces_dir: Path
) -> None:
    daemon = await harness.start_daemon()
    ws = await harness.session.ws_connect(f"{harness.base}/ws/supervisor")
    await ws.send_json({"type": "auth", "token": token_of(SUPERVISOR)})
    await next_of(ws, "snapshot")
    call_id, first, rest = answered_half(traces_dir)
    await harness.ami.play(first)
    # Rows are coalesced per call: a console that keeps up sees the latest state of each.
    talking = await next_of(ws, "call_row", call_id=call_id, state="talking")
    assert talking["row"]["queue"] == "tier1" and talking["row"]["agent"] == "Agent 1001"
    await harness.ami.play(rest)
    await next_of(ws, "call_gone", call_id=call_id)

    resyncs = daemon.resyncs
    await harness.ami.drop_connections()
    await wait_until(lambda: daemon.resyncs > resyncs)
    snapshot = await next_of(ws, "snapshot")
    assert snapshot["board"]["calls"] == []
    await ws.close()

    supervision = daemon.parts.supervision
    assert supervision is not None and supervision.recorder is not None
    assert await supervision.recorder.flush(5.0)  # type: ignore[attr-defined]
    status, report = await harness.api(
        "GET", "/api/stats?from=2026-11-01&to=2026-12-31&group_by=agent", SUPERVISOR
    )
    assert status == 200, report
    assert report["groups"]["Agent 1001"]["answered"] == 1
    # The truth file says 2.003 s from the offer; the leg's wait runs from joining the queue.
    assert report["groups"]["Agent 1001"]["asa_s"] == pytest.approx(2.0, abs=0.01)
