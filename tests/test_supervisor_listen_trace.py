"""Listening and recording on recorded Asterisk 22 traffic, through the whole daemon and the
fake AMI server: the attended transfer from tier 1 (Agent 1003) to tier 2 (Agent 2001).

The actions go where the tracker says the call is, in the form Asterisk's ChanSpy and
MixMonitor take: MixMonitor on the caller's queue channel once the call is answered in a
recorded queue (tier 1), ``ChanSpy`` on the channel of the agent talking now (2001's member
channel after the transfer, not 1003's), and the audit log has both until the call ends."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from daemon_world import token_of, wait_until
from fakes.ami_server import FakeAmiServer, read_ami_events

from crm_core.store import CrmStore
from cti.config import Config
from cti.daemon import Daemon, build_daemon

TRACE = (
    Path(__file__).resolve().parent.parent.parent
    / "shared/ami-traces/asterisk22/attended_transfer_tier1_to_tier2.ami"
)
CALLER = "Local/08005550100@from-pstn-0000000c;2"
AGENT_1003 = "Local/1003@agents-0000000d;1"
AGENT_2001 = "Local/2001@agents-0000000f;1"
PHONE = "PJSIP/9000"


def config_of(db: str, ami_port: int, rec: Path) -> Config:
    def person(name: str, **more: Any) -> dict[str, Any]:
        digest = hashlib.sha256(token_of(name).encode()).hexdigest()
        return {"name": name, "token_sha256": digest, **more}

    return Config.model_validate({
        "ami": {"host": "127.0.0.1", "port": ami_port, "username": "cti", "secret": "cti-secret",
                "reconnect_initial_s": 0.05},
        "agi": {"host": "127.0.0.1", "port": 0},
        "http": {"host": "127.0.0.1", "port": 0},
        "database": {"url": db},
        "supervisor": {"record_queues": ["tier1"], "recordings_dir": str(rec),
                       "refresh_s": 3600},
        "agents": [
            person("Agent 1003", member="Agent 1003", interface="Local/1003@agents",
                   tiers=["tier1"]),
            person("Agent 2001", member="Agent 2001", interface="Local/2001@agents",
                   tiers=["tier2"]),
            person("Supervisor", role="supervisor", interface=PHONE),
        ],
    })  # fmt: skip


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[tuple[Daemon, FakeAmiServer, Path]]:
    if not TRACE.exists():
        pytest.skip("recorded traffic not found beside the checkout")
    db = f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}"
    store = await CrmStore.open(db)
    ami = FakeAmiServer()
    await ami.start()
    daemon = await build_daemon(config_of(db, ami.port, tmp_path / "rec"), store=store)
    try:
        await daemon.start()
        await wait_until(lambda: daemon.resyncs >= 1)
        yield daemon, ami, tmp_path / "rec"
    finally:
        await daemon.stop()
        await ami.stop()
        await store.close()


async def api(daemon: Daemon, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    url = f"http://127.0.0.1:{daemon.http_port}{path}"
    headers = {"Authorization": f"Bearer {token_of('Supervisor')}"}
    async with aiohttp.ClientSession() as s, s.request(method, url, headers=headers, **kw) as r:
        return r.status, await r.json()


async def transferred(daemon: Daemon, ami: FakeAmiServer) -> tuple[list[dict[str, str]], int]:
    """The trace's events and the index of its AttendedTransfer, played up to it; returns
    once the daemon has the call with Agent 2001, who talks after the transfer."""
    events = [e for e in read_ami_events(TRACE) if "Event" in e]
    done = next(i for i, e in enumerate(events) if e["Event"] == "AttendedTransfer")
    await ami.play(events[: done + 1])
    call_id = events[0]["Linkedid"]
    calls = daemon.parts.calls
    await wait_until(lambda: (c := calls.get(call_id)) is not None and c.agent == "Agent 2001")
    return events, done


async def test_the_transferred_call_is_recorded_once_and_spied_on_at_its_current_agent(
    running: tuple[Daemon, FakeAmiServer, Path],
) -> None:
    daemon, ami, rec = running
    events, done = await transferred(daemon, ami)
    call_id = events[0]["Linkedid"]
    calls = daemon.parts.calls
    supervise = daemon.parts.supervision.supervise  # type: ignore[union-attr]
    assert supervise is not None
    await supervise.settled()

    [mix] = [dict(a.headers) for a in ami.actions_named("MixMonitor")]  # once, from tier 1
    assert (mix["channel"], mix["file"], mix["options"]) == (CALLER, str(rec / f"{call_id}.wav"),
                                                             "b")  # fmt: skip

    status, body = await api(daemon, "POST", f"/api/calls/{call_id}/spy", json={"mode": "whisper"})
    assert status == 201, body
    [originate] = [dict(a.headers) for a in ami.actions_named("Originate")]
    assert (originate["channel"], originate["application"]) == (PHONE, "ChanSpy")
    assert originate["data"] == f"{AGENT_2001},qEw"  # the agent talking now, not 1003
    assert originate["async"] == "true"

    # The supervisor's phone answers a second after the transfer: ChanSpy starts.
    began = float(events[done]["Timestamp"]) + 1
    await ami.play([spy_event("ChanSpyStart", began, f"{PHONE}-0000002a", AGENT_2001)])
    await ami.play(events[done + 1 :])
    await wait_until(lambda: (c := calls.get(call_id)) is None or c.ended_at is not None)
    await supervise.settled()
    status, audit = await api(daemon, "GET", "/api/supervisor/audit")
    assert status == 200
    by_action = {e["action"]: e for e in audit["entries"]}
    assert by_action["record"]["target"] == str(rec / f"{call_id}.wav")
    assert by_action["whisper"]["target"] == AGENT_2001
    assert by_action["whisper"]["supervisor"] == "Supervisor"
    assert by_action["whisper"]["ended_at"] == pytest.approx(float(events[-1]["Timestamp"]), abs=1)
    # From ChanSpyStart, on the same clock as its end (it was the request's time on this host:
    # a session replayed from a recording lasted less than nothing).
    assert by_action["whisper"]["at"] == pytest.approx(began, abs=1e-3)


def spy_event(name: str, at: float, spyer: str, spyee: str) -> dict[str, str]:
    """``ChanSpyStart``/``ChanSpyStop`` as Asterisk 22 sends them (``supervise.ami``; the
    ``Spyer*``/``Spyee*`` fields the code reads)."""
    return {"Event": name, "Privilege": "call,all", "Timestamp": f"{at:.6f}",
            "SpyerChannel": spyer, "SpyerChannelState": "6", "SpyerChannelStateDesc": "Up",
            "SpyerCallerIDNum": "spy", "SpyerUniqueid": "1796291999.1",
            "SpyeeChannel": spyee, "SpyeeChannelState": "6", "SpyeeChannelStateDesc": "Up",
            "SpyeeUniqueid": "1796291935.2"}  # fmt: skip


def hangup(at: float, channel: str) -> dict[str, str]:
    return {"Event": "Hangup", "Privilege": "call,all", "Timestamp": f"{at:.6f}",
            "Channel": channel, "Uniqueid": "1796291999.1", "Linkedid": "1796291999.1",
            "Cause": "16", "Cause-txt": "Normal Clearing"}  # fmt: skip


@pytest.mark.parametrize("how", ["ChanSpyStop", "Hangup"])
async def test_a_spy_session_ends_when_the_supervisor_stops_not_when_the_call_ends(
    running: tuple[Daemon, FakeAmiServer, Path], how: str
) -> None:
    """The supervisor whispers from 1 s after the transfer, then hangs up 1.5 s later while the
    call goes on for 3 s more: the session ends at ``ChanSpyStop`` (or at their phone
    channel's ``Hangup``), not when the call ended. Another phone's ``ChanSpyStop`` on the
    same agent ends nothing."""
    daemon, ami, _ = running
    events, done = await transferred(daemon, ami)
    call_id = events[0]["Linkedid"]
    calls = daemon.parts.calls
    status, body = await api(daemon, "POST", f"/api/calls/{call_id}/spy", json={"mode": "whisper"})
    assert status == 201, body

    at = float(events[done]["Timestamp"])
    mine, other = f"{PHONE}-0000002a", "PJSIP/9001-0000002b"
    stop = (spy_event("ChanSpyStop", at + 2.5, mine, AGENT_2001) if how == "ChanSpyStop"
            else hangup(at + 2.5, mine))  # fmt: skip
    await ami.play([
        spy_event("ChanSpyStart", at + 1, mine, AGENT_2001),
        spy_event("ChanSpyStop", at + 2, other, AGENT_2001),  # not this supervisor's
        stop,
    ])  # fmt: skip
    await ami.play(events[done + 1 :])
    await wait_until(lambda: (c := calls.get(call_id)) is None or c.ended_at is not None)
    supervise = daemon.parts.supervision.supervise  # type: ignore[union-attr]
    assert supervise is not None
    await supervise.settled()
    status, audit = await api(daemon, "GET", "/api/supervisor/audit")
    assert status == 200
    [whisper] = [e for e in audit["entries"] if e["action"] == "whisper"]
    assert whisper["ended_at"] == pytest.approx(at + 2.5, abs=1e-3)
    assert whisper["at"] == pytest.approx(at + 1, abs=1e-3)  # ChanSpyStart: 1.5 s of whisper
    assert whisper["ended_at"] < float(events[-1]["Timestamp"]) - 2  # before the call's end
