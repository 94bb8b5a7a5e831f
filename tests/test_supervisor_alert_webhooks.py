"""Alerts go to the webhooks as events (issue 15, "Alerts"): the daemon built from a config with
a webhook endpoint, an agent paused longer than allowed and a queue below its service-level
target; a refresh raises them, the endpoint receives each one, signed, in the events' one
envelope (``connectors.events``), and again when it clears."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cti.config import Config
from cti.daemon import Daemon, build_daemon
from cti.tracker.events import CallEvent

AGENT = {"member": "Agent 1001", "interface": "Local/1001@agents"}


@pytest.fixture
async def daemon(tmp_path: Path, hook: tuple[int, list[dict[str, Any]]]) -> AsyncIterator[Daemon]:
    port, _ = hook
    config = Config.model_validate({
        "ami": {"enabled": False},
        "agi": {"host": "127.0.0.1", "port": 0},
        "http": {"host": "127.0.0.1", "port": 0},
        "database": {"url": f"sqlite:///{tmp_path / 'crm.db'}"},
        "agents": [{"name": "Agent 1001", "member": "Agent 1001",
                    "interface": "Local/1001@agents", "tiers": ["tier1"]}],
        "supervisor": {"max_pause_s": 60, "max_wait_s": 0, "refresh_s": 3600},
        "webhooks": {"retry_initial_s": 0.05, "endpoints": [
            {"name": "ops", "url": f"http://127.0.0.1:{port}/hook", "secret": "hook-secret",
             "events": ["alert"]}]},
    })  # fmt: skip
    d = await build_daemon(config)
    await d.start()
    try:
        yield d
    finally:
        await d.stop()


async def until(test: Any, within_s: float = 10.0) -> None:
    for _ in range(int(within_s / 0.05)):
        if test():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("not within time")


async def test_alerts_raised_and_cleared_reach_the_webhooks_as_events(
    daemon: Daemon, hook: tuple[int, list[dict[str, Any]]]
) -> None:
    _, received = hook
    # The call below lies in the last 80 s: today's, unless the day began less than 80 s ago
    # (the live figures count today's calls only), so wait for that. A pause spans midnight.
    await asyncio.sleep(max(0.0, 81.0 - time.time() % 86400))
    t0 = time.time()
    state = {"queue": "tier1", "logged_in": True, **AGENT}
    await daemon.handle(CallEvent("", "agent_state", t0 - 600, {**state, "paused": True,
                                                                 "reason": "coffee"}))  # fmt: skip
    # One call answered after 45 s: tier 1's service level is 0 (target 0.8).
    call = "1795392000.7"
    for event in (
        CallEvent(call, "offered", t0 - 80, {"caller": "+442071234567"}),
        CallEvent(call, "queued", t0 - 80, {"queue": "tier1"}),
        CallEvent(call, "answered", t0 - 35, {"agent": "Agent 1001", "queue": "tier1", **AGENT}),
        CallEvent(call, "ended", t0 - 20, {"hangup_by": "caller"}),
    ):
        await daemon.handle(event)
    supervision = daemon.parts.supervision
    assert supervision is not None
    raised = supervision.refresh()
    assert sorted(a.key for a in raised) == ["long_pause:Agent 1001", "service_level:tier1"]
    await until(lambda: len({p["id"] for p in received}) >= 2)
    by_kind = {p["data"]["kind"]: p for p in received}
    pause = by_kind["long_pause"]
    assert (pause["event"], pause["call_id"], pause["agent"]) == ("alert", None, "Agent 1001")
    assert pause["data"]["subject"] == "Agent 1001" and pause["data"]["raised"] is True
    assert pause["data"]["limit"] == 60 and pause["data"]["value"] >= 600
    assert pause["occurred_at"] is not None and pause["id"]
    level = by_kind["service_level"]
    assert (level["queue"], level["data"]["value"], level["data"]["limit"]) == ("tier1", 0.0, 0.8)

    # Unpaused: the pause alert clears, and the webhook hears it.
    await daemon.handle(CallEvent("", "agent_state", time.time(), {**state, "paused": False}))
    cleared = supervision.refresh()
    assert [(a.key, a.raised) for a in cleared] == [("long_pause:Agent 1001", False)]
    await until(lambda: any(p["data"]["raised"] is False for p in received))
    (gone,) = [p for p in received if p["data"]["raised"] is False]
    assert (gone["data"]["kind"], gone["agent"]) == ("long_pause", "Agent 1001")
    assert all(p["event"] == "alert" for p in received)  # the endpoint takes alerts only
