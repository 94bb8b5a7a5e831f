"""Listen, whisper, barge and recordings over a real AMI connection to the fake Asterisk:
the actions sent, what is refused before the PBX, the audit log, playback with ranges."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fakes.ami_server import FakeAmiServer
from http_world import headers
from supervisor_world import SUPERVISOR_PHONE, T0, SupervisorWorld, running_console

from cti.ami.client import AmiClient
from cti.config import AmiConfig, SupervisorConfig
from cti.stats.legs import Leg
from cti.stats.store import write_legs

SUP, A1, A2 = "Supervisor", "Agent 1001", "Agent 1002"
AGENT_CHANNEL = "PJSIP/1001-0000002a"
CALLER_CHANNEL = "Local/08005550100@from-pstn-0000001a;2"


@pytest.fixture
async def pbx() -> AsyncIterator[FakeAmiServer]:
    async with FakeAmiServer() as server:
        yield server


@pytest.fixture
async def world(pbx: FakeAmiServer, tmp_path: Path) -> AsyncIterator[SupervisorWorld]:
    client = AmiClient(AmiConfig(host=pbx.host, port=pbx.port, username="cti", secret="cti-secret"))
    await client.start()
    limits = SupervisorConfig(
        refresh_s=3600, record_queues=["tier1"], recordings_dir=str(tmp_path / "rec")
    )
    try:
        await client.wait_connected(5)
        async with running_console(tmp_path, supervisor=limits, pbx=client) as w:
            yield w
    finally:
        await client.stop()


async def talking_call(world: SupervisorWorld, pbx: FakeAmiServer, call: str = "c1") -> None:
    pbx.state.add_channel(CALLER_CHANNEL)
    member = {"member": A1, "interface": "Local/1001@agents"}
    await world.event("offered", call, 0, caller="+442071234567", channel=CALLER_CHANNEL)
    await world.event("queued", call, 0, queue="tier1", channel=CALLER_CHANNEL)
    await world.event("ringing", call, 1, queue="tier1", agent_channel=AGENT_CHANNEL, **member)
    answered = {"agent": A1, "queue": "tier1", "agent_channel": AGENT_CHANNEL, **member}
    await world.event("answered", call, 5, **answered)
    assert world.supervision.supervise is not None
    await world.supervision.supervise.settled()


def sent(pbx: FakeAmiServer, name: str) -> list[dict[str, str]]:
    return [dict(a.headers) for a in pbx.actions_named(name)]


@pytest.mark.parametrize(
    ("mode", "options"), [("listen", "qE"), ("whisper", "qEw"), ("barge", "qEB")]
)
async def test_the_supervisors_phone_is_originated_into_chanspy_on_the_agents_channel(
    world: SupervisorWorld, pbx: FakeAmiServer, mode: str, options: str
) -> None:
    await talking_call(world, pbx)
    response = await world.client.post(
        "/api/calls/c1/spy", json={"mode": mode}, headers=headers(SUP)
    )
    assert response.status == 201, await response.text()
    [originate] = sent(pbx, "Originate")
    assert originate["channel"] == SUPERVISOR_PHONE
    assert originate["application"] == "ChanSpy"
    assert originate["data"] == f"{AGENT_CHANNEL},{options}"
    entries = await world.client.get("/api/supervisor/audit", headers=headers(SUP))
    [entry] = [e for e in (await entries.json())["entries"] if e["action"] == mode]
    assert (entry["supervisor"], entry["call_id"], entry["target"]) == (SUP, "c1", AGENT_CHANNEL)
    assert entry["ended_at"] is None
    world.now[0] = T0 + 65
    await world.event("ended", "c1", 65, hangup_by="caller")
    await world.supervision.supervise.settled()  # type: ignore[union-attr]
    entries = await world.client.get("/api/supervisor/audit", headers=headers(SUP))
    [entry] = [e for e in (await entries.json())["entries"] if e["action"] == mode]
    assert entry["duration_s"] == 65.0 - (entry["at"] - T0)


@pytest.mark.parametrize(
    ("who", "call", "body", "status"),
    [
        (A1, "c1", {"mode": "listen"}, 403),  # an agent
        (SUP, "c1", {"mode": "eavesdrop"}, 400),
        (SUP, "nope", {"mode": "listen"}, 409),  # no such call
        (SUP, "waiting", {"mode": "listen"}, 409),  # nobody talking yet
    ],
)
async def test_a_spy_request_is_refused_before_the_pbx(
    world: SupervisorWorld, pbx: FakeAmiServer, who: str, call: str, body: Any, status: int
) -> None:
    await talking_call(world, pbx)
    await world.event("offered", "waiting", 10, caller="+441632960001")
    await world.event("queued", "waiting", 10, queue="tier1")
    response = await world.client.post(f"/api/calls/{call}/spy", json=body, headers=headers(who))
    assert response.status == status, await response.text()
    assert sent(pbx, "Originate") == []


async def test_a_call_answered_in_a_recorded_queue_is_recorded_and_can_be_paused(
    world: SupervisorWorld, pbx: FakeAmiServer, tmp_path: Path
) -> None:
    await talking_call(world, pbx)
    [mix] = sent(pbx, "MixMonitor")
    assert mix["channel"] == CALLER_CHANNEL
    assert mix["file"] == str(tmp_path / "rec" / "c1.wav")
    refused = await world.client.post(
        "/api/calls/c1/recording", json={"paused": True}, headers=headers(A2)
    )
    assert refused.status == 403  # not on that call
    for paused, state in ((True, "1"), (False, "0")):
        response = await world.client.post(
            "/api/calls/c1/recording", json={"paused": paused}, headers=headers(A1)
        )
        assert response.status == 200, await response.text()
        mute = sent(pbx, "MixMonitorMute")[-1]
        assert (mute["channel"], mute["direction"], mute["state"]) == (
            CALLER_CHANNEL,
            "both",
            state,
        )


async def test_a_call_in_a_queue_not_recorded_is_not(
    world: SupervisorWorld, pbx: FakeAmiServer
) -> None:
    member = {"member": A1, "interface": "Local/1001@agents", "agent_channel": AGENT_CHANNEL}
    await world.event("offered", "t2", 0, caller="+442071234567", channel=CALLER_CHANNEL)
    await world.event("queued", "t2", 0, queue="tier2")
    await world.event("answered", "t2", 5, agent=A1, queue="tier2", **member)
    await world.supervision.supervise.settled()  # type: ignore[union-attr]
    assert sent(pbx, "MixMonitor") == []
    response = await world.client.post(
        "/api/calls/t2/recording", json={"paused": True}, headers=headers(A1)
    )
    assert response.status == 409 and sent(pbx, "MixMonitorMute") == []


async def test_playback_serves_ranges_to_the_agent_who_took_it_and_is_audited(
    world: SupervisorWorld, pbx: FakeAmiServer, tmp_path: Path
) -> None:
    await talking_call(world, pbx)
    await world.event("ended", "c1", 65, hangup_by="caller")
    recording = tmp_path / "rec" / "c1.wav"
    recording.parent.mkdir(parents=True, exist_ok=True)
    recording.write_bytes(b"RIFF" + bytes(range(256)) * 4)
    assert (await world.client.get("/api/recordings/c1")).status == 401
    denied = await world.client.get("/api/recordings/c1", headers=headers(A2))
    assert denied.status == 403
    whole = await world.client.get("/api/recordings/c1", headers=headers(A1))
    assert whole.status == 200 and await whole.read() == recording.read_bytes()
    part = await world.client.get(
        "/api/recordings/c1", headers={**headers(SUP), "Range": "bytes=4-11"}
    )
    assert part.status == 206
    assert await part.read() == bytes(range(8))
    assert part.headers["Content-Range"] == f"bytes 4-11/{recording.stat().st_size}"
    entries = await world.client.get("/api/supervisor/audit", headers=headers(SUP))
    plays = [e for e in (await entries.json())["entries"] if e["action"] == "playback"]
    assert [(e["supervisor"], e["detail"]["range"]) for e in plays] == [
        (A1, None),
        (SUP, "bytes=4-11"),
    ]
    missing = await world.client.get("/api/recordings/c9", headers=headers(SUP))
    assert missing.status == 404


async def test_an_agent_plays_back_an_old_call_of_theirs_found_in_the_statistics(
    world: SupervisorWorld, tmp_path: Path
) -> None:
    old = Leg("old", 0, "tier1", "tier1", T0 - 86400, agent=A2, answered_at=T0 - 86390)
    old.ended_at, old.outcome = T0 - 86300, "answered"
    await write_legs(world.store.engine, [old])
    (tmp_path / "rec").mkdir(parents=True, exist_ok=True)
    (tmp_path / "rec" / "old.wav").write_bytes(b"RIFF....")
    assert (await world.client.get("/api/recordings/old", headers=headers(A2))).status == 200
    assert (await world.client.get("/api/recordings/old", headers=headers(A1))).status == 403


async def test_recordings_past_the_retention_are_deleted(
    world: SupervisorWorld, tmp_path: Path
) -> None:
    supervise = world.supervision.supervise
    assert supervise is not None
    folder = tmp_path / "rec"
    folder.mkdir(parents=True, exist_ok=True)
    old, new = folder / "old.wav", folder / "new.wav"
    for path in (old, new):
        path.write_bytes(b"RIFF")
    now = T0 + 100 * 86400
    os.utime(old, (now - 91 * 86400, now - 91 * 86400))
    os.utime(new, (now - 89 * 86400, now - 89 * 86400))
    assert supervise.purge(now) == 1
    assert not old.exists() and new.exists()


async def test_a_recorded_calls_interaction_names_its_file_and_plays_to_who_took_it(
    world: SupervisorWorld, pbx: FakeAmiServer, tmp_path: Path
) -> None:
    await talking_call(world, pbx)
    await world.event("ended", "c1", 65, hangup_by="caller")
    record = world.interactions["c1"]
    assert record.extra["recording"] == "c1.wav"
    recording = tmp_path / "rec" / record.extra["recording"]
    recording.parent.mkdir(parents=True, exist_ok=True)
    recording.write_bytes(b"RIFF" + bytes(range(100)))
    url = "/api/recordings/c1"
    assert (await world.client.get(url)).status == 401
    assert (await world.client.get(url, headers=headers(A2))).status == 403
    whole = await world.client.get(url, headers=headers(A1))
    assert whole.status == 200 and await whole.read() == recording.read_bytes()
    part = await world.client.get(url, headers={**headers(A1), "Range": "bytes=4-7"})
    assert part.status == 206 and await part.read() == bytes(range(4))


async def test_a_call_asterisk_refused_to_record_names_no_file(
    world: SupervisorWorld, pbx: FakeAmiServer
) -> None:
    # The caller's channel is gone from Asterisk by the time MixMonitor arrives: refused.
    await world.event("offered", "c1", 0, caller="+442071234567", channel=CALLER_CHANNEL)
    await world.event("queued", "c1", 0, queue="tier1", channel=CALLER_CHANNEL)
    await world.event("answered", "c1", 5, agent=A1, queue="tier1", agent_channel=AGENT_CHANNEL)
    await world.supervision.supervise.settled()  # type: ignore[union-attr]
    assert len(sent(pbx, "MixMonitor")) == 1
    await world.event("ended", "c1", 65, hangup_by="caller")
    assert "recording" not in world.interactions["c1"].extra


async def test_an_audited_session_never_ends_before_it_began(tmp_path: Path) -> None:
    """Its start may be this host's clock (no ChanSpyStart seen), its end Asterisk's."""
    from crm_core.store import CrmStore
    from cti.supervisor.audit import AuditLog

    store = await CrmStore.open(f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}")
    try:
        audit = AuditLog(store.engine)
        one = await audit.add(at=1000.0, supervisor="S", action="listen", call_id="c1")
        two = await audit.add(at=1000.0, supervisor="S", action="barge", call_id="c2")
        assert await audit.close(one, 990.0)
        assert await audit.close_for_call("c2", 995.0, ("barge",)) == 1
        three = await audit.add(at=1000.0, supervisor="S", action="whisper", call_id="c3")
        await audit.started(three, 1002.0)
        assert await audit.close(three, 1004.5)
        ends = {e["id"]: (e["at"], e["ended_at"]) for e in await audit.entries(0, 2000)}
        assert ends == {one: (1000.0, 1000.0), two: (1000.0, 1000.0), three: (1002.0, 1004.5)}
    finally:
        await store.close()
