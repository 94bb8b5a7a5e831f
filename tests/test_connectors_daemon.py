"""The daemon built from a config with connectors: the pop from the CRM the site already has,
the events out by webhook, and the finished call written back to that CRM."""

from __future__ import annotations

import asyncio
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
from fakes.crm_servers import FakeHubSpot

from cti.config import Config
from cti.daemon import build_daemon
from cti.tracker.events import CallEvent

EXAMPLES = Path(__file__).resolve().parent.parent / "config" / "connectors"


async def test_a_call_from_a_hubspot_contact_pops_goes_out_signed_and_is_logged_in_hubspot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hook: tuple[int, list[dict[str, Any]]]
) -> None:
    monkeypatch.setenv("HUBSPOT_TOKEN", FakeHubSpot.TOKEN)
    hook_port, received = hook

    async with FakeHubSpot().running() as hubspot:
        hubspot_entry = tomllib.loads((EXAMPLES / "hubspot.toml").read_text())["directories"][0]
        hubspot_entry.update(base_url=hubspot.base_url, timeout_ms=1500)
        config = Config.model_validate({
            "ami": {"enabled": False},
            "agi": {"host": "127.0.0.1", "port": 0},
            "http": {"host": "127.0.0.1", "port": 0},
            "database": {"url": f"sqlite:///{tmp_path / 'crm.db'}"},
            "directories": [{"type": "store", "timeout_ms": 1500}, hubspot_entry],
            "webhooks": {"retry_initial_s": 0.05, "endpoints": [
                {"name": "sync", "url": f"http://127.0.0.1:{hook_port}/hook",
                 "secret": "hook-secret", "events": ["offered", "answered", "ended"]}]},
        })  # fmt: skip
        daemon = await build_daemon(config)
        try:
            await daemon.start()
            t0 = time.time()
            call = "1764750000.1"
            events = [
                CallEvent(call, "offered", t0, {"caller": "+442071234567", "channel": "PJSIP/t-1"}),
                CallEvent(call, "queued", t0 + 1, {"queue": "tier1"}),
                CallEvent(call, "answered", t0 + 5, {"agent": "alice", "queue": "tier1"}),
                CallEvent(call, "ended", t0 + 65, {"hangup_by": "caller", "talk_s": 60.0}),
            ]
            for event in events:
                await daemon.handle(event)
            ctx = daemon.parts.calls.get(call)
            for _ in range(200):  # 10 s at most
                if len(received) >= 3 and hubspot.written:
                    break
                await asyncio.sleep(0.05)
        finally:
            await daemon.stop()

    assert ctx is not None and ctx.view is not None
    assert ctx.view["name"] == "Ada Lovelace" and ctx.view["sources"]["name"] == "hubspot"
    assert ctx.view["unavailable"] == []
    # At least once: a delivery in flight when the daemon stops may come again, with its key.
    unique = list({p["id"]: p for p in received}.values())
    assert [p["event"] for p in unique] == ["offered", "answered", "ended"]
    customer_id = ctx.customer_id
    assert customer_id is not None and all(p["customer_id"] == customer_id for p in received[1:])
    ended = received[-1]
    assert ended["interaction"]["talk_s"] == 60.0 and ended["interaction"]["agents"] == ["alice"]
    assert ended["customer_sources"] == ["hubspot"]
    # At least once here too: a write HubSpot answered after the outbox's timeout (a loaded
    # machine) is sent again, the same call logged with the same content.
    logged = hubspot.written[0]
    assert all(w == logged for w in hubspot.written)
    assert logged["associations"][0]["to"]["id"] == "101"
    assert logged["properties"]["hs_call_duration"] == 60000
