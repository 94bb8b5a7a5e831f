"""A resync Asterisk refuses, or cannot answer yet, over real sockets (the fake AMI server
answers as the recorded Asterisk 22 did: permission_denied, restart_mid_call)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from fakes.ami_server import AmiUser, FakeAmiServer
from structlog.testing import capture_logs
from test_e2e_calls import (
    KNOWN_CALLER,
    Harness,
    call_id_of,
    daemon_config,
    harness,
    trace,
    wait_until,
)

from crm_core.store import CrmStore

# The shipped user of issue 12: it may not run CoreShowChannels (write system or reporting).
__all__ = ["harness"]  # the fixture, shared with test_e2e_calls

SHIPPED = AmiUser("cti-secret", read="call,agent", write="call,originate,agent")


@pytest.fixture
async def shipped(tmp_path: Path) -> AsyncIterator[Harness]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}"
    store = await CrmStore.open(url)
    await store.upsert_customer(name="Grace Hopper", external_id="C-1", phones=[KNOWN_CALLER])
    ami = FakeAmiServer(users={"cti": SHIPPED})
    await ami.start()
    session = aiohttp.ClientSession()
    h = Harness(ami=ami, store=store, config=daemon_config(url, ami.port), session=session)
    try:
        yield h
    finally:
        await h.stop_daemon()
        await session.close()
        await ami.stop()
        await store.close()


async def test_a_refused_resync_is_an_error_at_start_in_healthz_and_in_metrics(
    shipped: Harness,
) -> None:
    with capture_logs() as logs:
        await shipped.start_daemon()
    refused = [e for e in logs if e["event"] == "ami.resync_refused"]
    assert refused and refused[0]["log_level"] == "error"
    assert refused[0]["action"] == "CoreShowChannels"
    assert refused[0]["message"] == "Permission denied"
    assert "system or reporting" in refused[0]["needs"]

    async with shipped.session.get(f"{shipped.base}/healthz") as resp:
        assert resp.status == 503
        body = await resp.json()
    assert body["ok"] is False and body["ami"] is True
    assert "CoreShowChannels" in body["reason"]
    assert body["resync"]["refused"] == {"CoreShowChannels": "Permission denied"}
    async with shipped.session.get(f"{shipped.base}/metrics") as resp:
        text = await resp.text()
    assert 'cti_ami_resync_refused{action="CoreShowChannels"} 1.0' in text


async def test_a_call_first_seen_mid_way_is_recorded_when_it_ends_saying_what_is_unknown(
    shipped: Harness, traces_dir: Path
) -> None:
    events = trace(traces_dir, "answered_tier1")
    call_id = call_id_of(events)
    cut = next(i for i, e in enumerate(events) if e.get("Event") == "AgentConnect") + 1
    for event in events[:cut]:  # the call started before the daemon
        shipped.ami.state.apply_event(event)
    daemon = await shipped.start_daemon()
    assert daemon.resync_refused  # so the resync could adopt nothing
    await shipped.ami.play(events[cut:])
    await wait_until(
        lambda: (c := daemon.parts.calls.get(call_id)) is not None and c.state == "ended"
    )
    row = await shipped.interaction(call_id)
    assert row is not None and await shipped.interaction_rows(call_id) == 1
    assert row["extra"]["midway"] is True
    assert "started_at" in row["extra"]["not_known"]
    assert row["wait_s"] is None  # not known, not 0
    assert row["outcome"] in ("answered", "unknown")


async def test_a_resync_right_after_asterisk_restarted_waits_for_its_queues_and_retries(
    harness: Harness,
) -> None:
    daemon = await harness.start_daemon()
    with capture_logs() as logs:
        await harness.ami.restart(down_s=0.2, loading_s=0.6)
        await wait_until(lambda: daemon.resyncs >= 2, within_s=10)
    assert daemon.resync_refused == {}
    retries = [e for e in logs if e["event"] == "ami.resync_retry"]
    assert retries and retries[0]["actions"] == ["QueueStatus"]
    queue_status = harness.ami.actions_named("QueueStatus")
    assert len(queue_status) >= 3  # first connect, refused while loading, then answered
    async with harness.session.get(f"{harness.base}/healthz") as resp:
        assert resp.status == 200
