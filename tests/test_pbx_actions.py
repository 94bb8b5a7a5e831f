"""One daemon, two PBXs (``[[pbx]]``): every action from the API reaches the PBX it is for
(the call's PBX, or the PBX of the agent's phone), and nothing reaches the other one.

Two fake Asterisks record every action they receive; the two PBXs play the same recorded
call with the same ids (``paris:<id>`` and ``lyon:<id>`` to the daemon), and the same phone
interface exists on both."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from fakes.ami_server import FakeAmiServer, read_ami_events

from crm_core.store import CrmStore
from cti.commands import check_config
from cti.config import Config
from cti.daemon import Daemon, build_daemon
from cti.pbx_actions import PbxLinks, PbxRefused

SENT_BY_API = {"setvar", "redirect", "blindtransfer", "originate", "queueadd", "queueremove"}
SENT_BY_API |= {"queuepause", "mixmonitor", "mixmonitormute"}


def token(name: str) -> str:
    return "tok-" + name.replace(" ", "-").lower()


def agent(name: str, interface: str, pbx: str, role: str = "agent") -> dict[str, Any]:
    return {
        "name": name,
        "member": name,
        "interface": interface,
        "pbx": pbx,
        "role": role,
        "tiers": ["tier1"],
        "token_sha256": hashlib.sha256(token(name).encode()).hexdigest(),
    }


def two_pbx_config(db_url: str, paris: int, lyon: int, recordings: Path) -> Config:
    return Config.model_validate(
        {
            "ami": {"secret": "cti-secret", "reconnect_initial_s": 0.05, "reconnect_max_s": 0.2},
            "pbx": [{"id": "paris", "port": paris}, {"id": "lyon", "port": lyon}],
            "agi": {"host": "127.0.0.1", "port": 0},
            "http": {"host": "127.0.0.1", "port": 0, "originate_context": "dial-out"},
            "database": {"url": db_url},
            "supervisor": {"record_queues": ["tier1"], "recordings_dir": str(recordings)},
            "agents": [
                agent("Paris Agent", "PJSIP/1001", "paris"),
                agent("Lyon Agent", "PJSIP/1001", "lyon"),  # the same phone name, other PBX
                agent("Nowhere Agent", "PJSIP/1002", ""),  # no PBX: refused with two
                agent("Lyon Supervisor", "PJSIP/9000", "lyon", "supervisor"),
            ],
        }
    )


@dataclass
class TwoPbxs:
    daemon: Daemon
    paris: FakeAmiServer
    lyon: FakeAmiServer
    session: aiohttp.ClientSession

    async def api(self, method: str, path: str, who: str, **kw: Any) -> tuple[int, Any]:
        url = f"http://127.0.0.1:{self.daemon.http_port}{path}"
        headers = {"Authorization": f"Bearer {token(who)}"}
        async with self.session.request(method, url, headers=headers, **kw) as r:
            return r.status, await r.json()

    def sent(self, pbx: FakeAmiServer) -> list[str]:
        return [a.name.lower() for a in pbx.actions if a.name.lower() in SENT_BY_API]


@pytest.fixture
async def two_pbxs(tmp_path: Path) -> AsyncIterator[TwoPbxs]:
    store = await CrmStore.open(f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}")
    async with (
        FakeAmiServer(queues={"tier1": ["PJSIP/1001"]}) as paris,
        FakeAmiServer(queues={"tier1": []}) as lyon,
    ):
        config = two_pbx_config(
            f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}", paris.port, lyon.port, tmp_path
        )
        daemon = await build_daemon(config, store=store, http_port=0, agi_port=0)
        session = aiohttp.ClientSession()
        try:
            await daemon.start()
            await paris.wait_for_logins(1)
            await lyon.wait_for_logins(1)
            yield TwoPbxs(daemon, paris, lyon, session)
        finally:
            await session.close()
            await daemon.stop()
            await store.close()


def answered_call(traces_dir: Path) -> tuple[str, list[dict[str, str]]]:
    """A recorded answered call, cut before its first hangup (still answered)."""
    events = read_ami_events(traces_dir / "asterisk22" / "answered_tier1.ami")
    call_id = next(e["Linkedid"] for e in events if e.get("Event") == "Newchannel")
    cut = next(
        i
        for i, e in enumerate(events)
        if e.get("Event") == "Hangup"
        and i > 0
        and any(x.get("Event") == "AgentConnect" for x in events[:i])
    )
    return call_id, events[:cut]


async def both_answered(w: TwoPbxs, traces_dir: Path) -> str:
    call_id, events = answered_call(traces_dir)
    await w.paris.play(events)
    await w.lyon.play(events)
    calls = w.daemon.parts.calls
    async with asyncio.timeout(5):
        while not all(  # noqa: ASYNC110 - the daemon's pump updates them
            (c := calls.get(f"{p}:{call_id}")) is not None and c.state == "answered"
            for p in ("paris", "lyon")
        ):
            await asyncio.sleep(0.02)
    return call_id


async def test_an_agents_click_to_dial_pause_and_queue_login_reach_only_the_pbx_of_their_phone(
    two_pbxs: TwoPbxs,
) -> None:
    w = two_pbxs
    status, body = await w.api(
        "POST", "/api/calls/originate", "Lyon Agent", json={"number": "+442071234567"}
    )
    assert status == 202, body
    originate = await w.lyon.wait_for_action("Originate")
    assert originate.headers["channel"] == "PJSIP/1001"
    status, body = await w.api("POST", "/api/agent/pause", "Paris Agent", json={"paused": True})
    assert status == 200, body
    await w.paris.wait_for_action("QueuePause")
    status, body = await w.api(
        "POST", "/api/agent/queues", "Lyon Agent", json={"queue": "tier1", "action": "login"}
    )
    assert status == 200, body
    await w.lyon.wait_for_action("QueueAdd")
    status, body = await w.api(
        "POST",
        "/api/supervisor/agent",
        "Lyon Supervisor",
        json={"agent": "Paris Agent", "action": "unpause"},
    )
    assert status == 200, body
    await w.paris.wait_for_action("QueuePause", 2)

    # With two PBXs, a phone that names none is refused: PJSIP/1002 may exist on both.
    status, body = await w.api("POST", "/api/agent/pause", "Nowhere Agent", json={"paused": True})
    assert status == 409 and "PBX" in body["error"] and "paris, lyon" in body["error"]
    status, body = await w.api(
        "POST", "/api/calls/originate", "Nowhere Agent", json={"number": "+442071234567"}
    )
    assert status == 409, body
    await asyncio.sleep(0.2)
    assert w.sent(w.lyon) == ["originate", "queueadd"]
    assert w.sent(w.paris) == ["queuepause", "queuepause"]


async def test_actions_on_a_call_reach_the_pbx_of_the_call_not_the_one_with_the_same_call_id(
    two_pbxs: TwoPbxs, traces_dir: Path
) -> None:
    w = two_pbxs
    call_id = await both_answered(w, traces_dir)
    lyon_call = f"lyon:{call_id}"
    # Each PBX records its own call (tier1 is recorded): MixMonitor on its own link.
    for name, pbx in (("paris", w.paris), ("lyon", w.lyon)):
        mixmonitor = await pbx.wait_for_action("MixMonitor")
        assert Path(mixmonitor.headers["file"]).name == f"{name}_{call_id}.wav"

    status, body = await w.api(
        "POST", f"/api/calls/{lyon_call}/spy", "Lyon Supervisor", json={"mode": "listen"}
    )
    assert status == 201, body
    spy = await w.lyon.wait_for_action("Originate")
    assert spy.headers["channel"] == "PJSIP/9000" and spy.headers["application"] == "ChanSpy"
    # The supervisor's phone is on Lyon: a Paris call cannot be listened to from it.
    status, body = await w.api(
        "POST", f"/api/calls/paris:{call_id}/spy", "Lyon Supervisor", json={"mode": "listen"}
    )
    assert status == 409 and "paris" in body["error"] and "lyon" in body["error"], body

    grace = await w.daemon.parts.store.upsert_customer(name="Grace Hopper", phones=[])
    status, body = await w.api(
        "POST",
        f"/api/calls/{lyon_call}/customer",
        "Lyon Supervisor",
        json={"customer_id": grace.customer_id, "method": "search"},
    )
    assert status == 200 and body["pbx"] == "CTI_CUSTOMER_ID set on the caller's channel", body
    setvar = await w.lyon.wait_for_action("Setvar")
    assert setvar.headers["variable"] == "CTI_CUSTOMER_ID"

    status, body = await w.api(
        "POST", f"/api/calls/{lyon_call}/recording", "Lyon Supervisor", json={"paused": True}
    )
    assert status == 200, body
    await w.lyon.wait_for_action("MixMonitorMute")

    status, body = await w.api(
        "POST",
        f"/api/calls/{lyon_call}/escalate",
        "Lyon Supervisor",
        json={"tier": "tier2", "reason": "line down", "note": ""},
    )
    assert status == 200, body
    await w.lyon.wait_for_action("BlindTransfer")
    await asyncio.sleep(0.2)
    sent = ["mixmonitor", "originate", "setvar", "mixmonitormute", "setvar", "setvar"]
    sent.append("blindtransfer")
    assert w.sent(w.lyon) == sent
    assert w.sent(w.paris) == ["mixmonitor"]


def test_a_call_on_no_configured_pbx_is_refused_before_anything_is_chosen() -> None:
    links = PbxLinks(["paris", "lyon"], several=True)
    with pytest.raises(PbxRefused) as refused:
        links.of_call("1700000000.1")  # not qualified: which PBX is unknown
    assert refused.value.status == 409
    with pytest.raises(PbxRefused):
        links.of_call("marseille:1700000000.1")
    assert PbxLinks(["default"], several=False).of_call("1700000000.1") == "default"


async def test_healthz_reports_every_pbx_and_one_pbx_down_leaves_the_daemon_degraded(
    two_pbxs: TwoPbxs,
) -> None:
    w = two_pbxs
    lyon_link = w.daemon.others[0].parts.ami
    async with asyncio.timeout(5):
        while not getattr(lyon_link, "connected", False):  # noqa: ASYNC110 - the link's task
            await asyncio.sleep(0.02)
    status, body = await w.api("GET", "/healthz", "Lyon Agent")
    assert status == 200 and body["status"] == "ok", body
    assert [(p["pbx"], p["ami"], p["lease"]) for p in body["pbxs"]] == [
        ("paris", True, None),
        ("lyon", True, None),
    ]

    await w.lyon.refuse_connections(30)
    await w.lyon.drop_connections()
    async with asyncio.timeout(5):
        while getattr(lyon_link, "connected", True):  # noqa: ASYNC110 - the link's task
            await asyncio.sleep(0.02)
    status, body = await w.api("GET", "/healthz", "Lyon Agent")
    assert status == 200 and body["status"] == "degraded", body
    assert body["problems"] == ["AMI link to PBX lyon is down"]
    assert {p["pbx"]: p["ami"] for p in body["pbxs"]} == {"paris": True, "lyon": False}
    async with w.session.get(f"http://127.0.0.1:{w.daemon.http_port}/metrics") as r:
        metrics = await r.text()
    assert 'cti_pbx_ami_connected{pbx="lyon"} 0.0' in metrics
    assert 'cti_pbx_ami_connected{pbx="paris"} 1.0' in metrics


def test_check_config_warns_of_agents_whose_phone_is_on_no_pbx_when_there_are_several(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = two_pbx_config(f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}", 5038, 5039, tmp_path)
    assert check_config.run(argparse.Namespace(), config) == 0
    out = capsys.readouterr().out
    assert "warning: several PBXs and no pbx for Nowhere Agent:" in out
    assert "Lyon Agent" not in out.partition("warning")[2]
    with pytest.raises(ValueError, match="pbx 'marseille' is not a PBX of the config"):
        Config.model_validate(
            {"pbx": [{"id": "paris"}], "agents": [{"name": "x", "pbx": "marseille"}]}
        )
