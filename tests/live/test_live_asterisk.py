"""The daemon against a real Asterisk 22, configured from docker/asterisk plus the lab overlay.

Callers are Local channels into the shipped ``[from-pstn]`` (which asks the daemon's FastAGI
router, then queues), agents' phones the lab's ``[agents]`` Local channels whose behaviour
(ring delay, no answer, busy, talk time) each test sets in AstDB, and the far end of a
click-to-dial ``[outside]``. Skipped unless CTI_TEST_ASTERISK names an install prefix.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import re
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import pytest
from daemon_world import DaemonWorld, Desktop, token_of, wait_until
from live.lab import (
    AGENTS,
    DOCKER_ASTERISK,
    LAB_SECRET,
    REC_SECRET,
    SUPERVISOR_PHONE,
    AsteriskLab,
    free_port,
    lab_config,
)
from sqlalchemy import text

from crm_core.store import CrmStore
from cti.ami.protocol import AmiProtocol
from cti.commands.doctor import diagnose
from cti.config import Config, QueueLogConfig, parse_config

pytestmark = pytest.mark.slow

KNOWN = "+442071234567"  # Grace Hopper, payment arrears -> billing
VIP = "+447700900456"  # Zoë Ward, VIP -> vip (ring-all 2001 + 2002)
DID = "08005550100"
QUEUES_CONF = DOCKER_ASTERISK / "queues.conf"
NUMBER = "02079460000"  # what the agent types for click-to-dial
DIALLED = "+442079460000"  # what the daemon dials: the number in E.164
SUPERVISOR = "Supervisor"
CALL_S = 30.0  # generous: the machine is shared
LIST_ACTIONS = {"QueueStatus", "CoreShowChannels"}
WRAPUP_S = max(
    int(w) for w in re.findall(r"^wrapuptime = (\d+)", QUEUES_CONF.read_text(), flags=re.M)
)


def live_config(lab: AsteriskLab, db_url: str, *, recordings: Path | None = None) -> Config:
    """The lab config; with ``recordings``, calls of the vip queue are recorded there (by
    the ``cti-rec`` user: MixMonitor needs write = system)."""
    user = {"username": "cti-rec", "secret": REC_SECRET} if recordings else {}
    text = lab_config(
        ami_port=lab.ami_port,
        agi_port=lab.agi_port,
        http_port=free_port(),
        database_url=db_url,
        **user,
    )
    text = text.replace(
        'name = "Supervisor"\n', f'name = "Supervisor"\ninterface = "{SUPERVISOR_PHONE}"\n'
    )
    if recordings is not None:
        text += f'\n[supervisor]\nrecord_queues = ["vip"]\nrecordings_dir = "{recordings}"\n'

    def with_token(match: re.Match[str]) -> str:
        sha = hashlib.sha256(token_of(match.group(1)).encode()).hexdigest()
        return match.group(0).replace('token_sha256 = ""', f'token_sha256 = "{sha}"')

    text = re.sub(r'name = "([^"]+)"(?:\n(?!\[).*)*?\ntoken_sha256 = ""', with_token, text)
    # every hour is a business hour, so that the "closed" rule does not depend on the clock
    text = re.sub(r"^(mon-fri|sat) = .*$", "", text, flags=re.M)
    text = text.replace(
        "[routing.business_hours]", '[routing.business_hours]\nmon-sun = "00:00-24:00"'
    )
    text = text.replace("[ami]\n", "[ami]\nreconnect_initial_s = 0.2\nreconnect_max_s = 1.0\n", 1)
    return parse_config(text, "live.toml", env={})


class LabAmi:
    """The test's own AMI connection (user ``lab``, everything allowed, no events)."""

    def __init__(self, port: int, events: str = "off") -> None:
        self.port = port
        self.mask = events
        self.events: list[dict[str, str]] = []
        self.protocol = AmiProtocol(self.events.append, id_prefix="lab")
        self._ids = itertools.count(1)

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_connection(lambda: self.protocol, "127.0.0.1", self.port)
        await self.protocol.banner
        await self.action(Action="Login", Username="lab", Secret=LAB_SECRET, Events=self.mask)

    async def action(self, **fields: str) -> dict[str, str]:
        as_list = fields.get("Action") in LIST_ACTIONS
        pending = self.protocol.send(fields, as_list=as_list)
        async with asyncio.timeout(10):
            response = await pending.future
        if as_list:
            return {"_items": response.items}  # type: ignore[dict-item]
        return response.fields

    async def channels(self) -> list[dict[str, str]]:
        items: list[dict[str, str]] = (await self.action(Action="CoreShowChannels"))["_items"]  # type: ignore[assignment]
        return items

    async def db(self, family: str, key: str, value: str) -> None:
        await self.action(Action="DBPut", Family=family, Key=key, Val=value)

    async def reset(self) -> None:
        for family in ("agent", "outside"):
            await self.action(Action="DBDelTree", Family=family)
        await self.action(Action="Hangup", Channel="/^Local//")
        for agent in AGENTS:
            await self.action(
                Action="Setvar", Variable=f"DEVICE_STATE(Custom:agent{agent})", Value="NOT_INUSE"
            )
            await self.action(
                Action="QueuePause", Interface=f"Local/{agent}@agents/n", Paused="false"
            )
        # A member who took a call is not rung again for the queue's wrap-up time: wait it
        # out, or a test's ring-all call would depend on the test before it.
        answer = await self.action(Action="QueueStatus")
        items: list[dict[str, str]] = answer["_items"]  # type: ignore[assignment]
        last = max((float(i.get("LastCall") or 0) for i in items), default=0.0)
        left = last + WRAPUP_S + 0.5 - time.time()
        if left > 0:
            await asyncio.sleep(left)

    async def call_in(self, caller: str, *, hold_s: float = 0) -> None:
        """A caller dials the DID; they hang up ``hold_s`` after being answered (0: never)."""
        await self.action(
            Action="Originate",
            Channel=f"Local/{DID}@from-pstn",
            Context="caller-sim",
            Exten="talk",
            Priority="1",
            CallerID=f"<{caller}>",
            Variable=f"LAB_CALLER_HOLD={int(hold_s)}",
            Async="true",
        )

    async def members(self, queue: str) -> dict[str, Mapping[str, str]]:
        answer = await self.action(Action="QueueStatus", Queue=queue)
        items: list[dict[str, str]] = answer["_items"]  # type: ignore[assignment]
        return {i["Name"]: i for i in items if i.get("Event") == "QueueMember"}

    async def reconnect(self) -> None:
        self.close()
        self.protocol = AmiProtocol(self.events.append, id_prefix="lab")
        await self.connect()

    def close(self) -> None:
        self.protocol.abort("test done")


@dataclass(kw_only=True)
class Live(DaemonWorld):
    """The daemon against the lab's real Asterisk (slower to answer than the fake server)."""

    lab: AsteriskLab
    ami: LabAmi

    ready_within_s: ClassVar[float] = 20.0
    hello_within_s: ClassVar[float] = 10.0
    flush_within_s: ClassVar[float] = 10.0


@pytest.fixture
async def live(asterisk: AsteriskLab, tmp_path: Path) -> AsyncIterator[Live]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}"
    store = await CrmStore.open(url)
    await store.upsert_customer(
        name="Grace Hopper", external_id="CUST-000123", phones=[KNOWN], flags=["payment_arrears"]
    )
    await store.upsert_customer(
        name="Zoë Ward", external_id="CUST-000456", phones=[VIP], flags=["vip"]
    )
    if asterisk.proc is None or asterisk.proc.poll() is not None:
        asterisk.start()
    ami = LabAmi(asterisk.ami_port)
    await ami.connect()
    await ami.reset()
    session = aiohttp.ClientSession()
    h = Live(lab=asterisk, ami=ami, store=store, config=live_config(asterisk, url), session=session)
    try:
        yield h
    finally:
        await h.stop_daemon()
        await session.close()
        ami.close()
        if asterisk.proc is None or asterisk.proc.poll() is not None:
            asterisk.start()
        ami = LabAmi(asterisk.ami_port)  # the test may have restarted Asterisk
        await ami.connect()
        await ami.reset()
        ami.close()
        await store.close()


async def recorded(live: Live, call_id: str, within_s: float) -> dict[str, Any]:
    """The call's interaction record, once the daemon has written it."""
    deadline = time.monotonic() + within_s
    while True:
        row = await live.interaction(call_id)
        if row is not None or time.monotonic() > deadline:
            assert row is not None, f"no interaction recorded for {call_id} in {within_s} s"
            return row
        await asyncio.sleep(0.5)


async def first_pop(desk: Desktop, within_s: float = CALL_S) -> dict[str, Any]:
    return await desk.wait_for("pop", within_s=within_s)


# ---- the scenarios -----------------------------------------------------------------------


def test_the_shipped_config_loads_without_a_warning(asterisk: AsteriskLab) -> None:
    warnings = [
        line
        for line in asterisk.messages().splitlines()
        if ("WARNING" in line or "ERROR" in line)
        and "No channel type registered for 'CTIDoctor'" not in line  # cti doctor's probe
    ]
    assert warnings == []


async def test_doctor_prints_only_ok_lines_on_the_shipped_config(live: Live) -> None:
    report = await diagnose(live.config, step_s=10.0)
    assert report.failures == 0, report.lines
    assert {verdict for verdict, _, _ in report.lines} == {"OK"}, report.lines


async def test_a_vip_caller_is_routed_by_crm_data_and_pops_on_both_ringall_agents(
    live: Live,
) -> None:
    await live.ami.db("agent", "2001/ringdelay", "2")
    await live.ami.db("agent", "2002/ringdelay", "30")
    await live.start_daemon()
    sup, a2001, a2002 = [await live.desktop(n) for n in (SUPERVISOR, "Agent 2001", "Agent 2002")]
    await live.ami.call_in(VIP, hold_s=3)
    pop = await first_pop(a2001)
    call_id = pop["call_id"]
    assert pop["reason"] == "VIP customer"
    assert pop["call"]["view"]["name"] == "Zoë Ward"
    pop2 = await first_pop(a2002)
    assert pop2["call_id"] == call_id
    await a2001.wait_for("answered", call_id, within_s=CALL_S)
    await a2002.wait_for("withdrawn", call_id, within_s=CALL_S)
    await sup.wait_for("ended", call_id, within_s=CALL_S)
    row = await live.interaction(call_id)
    assert row is not None
    assert row["queues"] == ["vip"] and row["agents"] == ["Agent 2001"]
    assert row["routing_reason"] == "VIP customer" and row["outcome"] == "answered"


async def test_ringall_withdrawal_says_answered_elsewhere_and_by_whom(live: Live) -> None:
    await live.ami.db("agent", "2001/ringdelay", "2")
    await live.ami.db("agent", "2002/ringdelay", "30")
    await live.start_daemon()
    a2002 = await live.desktop("Agent 2002")
    # the caller's hold time runs from the IVR's answer: longer than the ring before 2001 answers
    await live.ami.call_in(VIP, hold_s=8)
    call_id = (await first_pop(a2002))["call_id"]
    withdrawn = await a2002.wait_for("withdrawn", call_id, within_s=CALL_S)
    assert withdrawn["reason"] == "answered_elsewhere"
    assert "Agent 2001" in str(withdrawn)


async def test_a_caller_in_arrears_goes_to_billing_and_the_agent_sees_who_calls(
    live: Live,
) -> None:
    await live.start_daemon()
    sup = await live.desktop(SUPERVISOR)
    a1001, a1003 = await live.desktop("Agent 1001"), await live.desktop("Agent 1003")
    await live.ami.call_in(KNOWN, hold_s=3)
    deadline = time.monotonic() + CALL_S
    while not (pops := a1001.of("pop") + a1003.of("pop")) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    assert pops, "no pop on the billing agents' desktops"
    pop = pops[0]
    assert pop["reason"] == "payment arrears"
    assert pop["call"]["view"]["name"] == "Grace Hopper"
    await sup.wait_for("ended", pop["call_id"], within_s=CALL_S)
    row = await live.interaction(pop["call_id"])
    assert row is not None and row["queues"] == ["billing"] and row["outcome"] == "answered"


async def test_escalating_a_waiting_caller_with_a_note_reaches_tier3_and_its_pop(
    live: Live,
) -> None:
    for agent in ("1001", "1002", "1003"):
        await live.ami.db("agent", f"{agent}/mode", "noanswer")
    await live.ami.db("agent", "3001/ringdelay", "1")
    await live.start_daemon()
    sup, a3001 = await live.desktop(SUPERVISOR), await live.desktop("Agent 3001")
    await live.ami.call_in("+441134960000")  # unknown caller: tier1, where nobody answers
    offered = await sup.wait_for("call", within_s=CALL_S)
    call_id = offered["call_id"]
    await wait_until(
        lambda: bool(live.daemon and (c := live.daemon.parts.calls.get(call_id)) and c.queue),
        CALL_S,
    )
    status, body = await live.api(
        "POST",
        f"/api/calls/{call_id}/escalate",
        SUPERVISOR,
        json={"tier": "tier3", "reason": "line down", "note": "outage since Monday"},
    )
    assert status == 200, body
    pop = await first_pop(a3001)
    assert pop["call_id"] == call_id
    assert pop["reason"] == "line down"
    assert pop["escalation"]["note"] == "outage since Monday"
    await a3001.wait_for("answered", call_id, within_s=CALL_S)
    await live.ami.action(Action="Hangup", Channel="/^Local/3001@agents/")
    await sup.wait_for("ended", call_id, within_s=CALL_S)
    row = await live.interaction(call_id)
    assert row is not None and row["queues"] == ["tier1", "tier3"]
    assert row["agents"] == ["Agent 3001"]
    assert row["extra"]["escalations"][0]["reason"] == "line down"


async def test_escalating_an_answered_call_pops_tier3_with_the_reason(live: Live) -> None:
    for agent in ("1001", "1002", "1003"):
        await live.ami.db("agent", f"{agent}/ringdelay", "1")
    await live.ami.db("agent", "3001/ringdelay", "1")
    await live.start_daemon()
    sup, a3001 = await live.desktop(SUPERVISOR), await live.desktop("Agent 3001")
    await live.ami.call_in("+441134960000")
    call_id = (await sup.wait_for("call", within_s=CALL_S))["call_id"]
    await wait_until(
        lambda: bool(live.daemon and (c := live.daemon.parts.calls.get(call_id)) and c.agent),
        CALL_S,
    )
    status, body = await live.api(
        "POST",
        f"/api/calls/{call_id}/escalate",
        SUPERVISOR,
        json={"tier": "tier3", "reason": "line down", "note": "outage since Monday"},
    )
    assert status == 200, body
    pop = await first_pop(a3001)
    assert pop["reason"] == "line down"
    assert pop["escalation"]["note"] == "outage since Monday"


async def test_pause_and_queue_login_from_the_desktop_reach_asterisk(live: Live) -> None:
    await live.start_daemon()
    desk = await live.desktop("Agent 1002")
    status, body = await live.api(
        "POST", "/api/agent/pause", "Agent 1002", json={"paused": True, "reason": "lunch"}
    )
    assert status == 200, body
    member = (await live.ami.members("tier1"))["Agent 1002"]
    assert member["Paused"] == "1" and member["PausedReason"] == "lunch"
    await desk.wait_for("agent_state", within_s=CALL_S)
    status, body = await live.api("POST", "/api/agent/pause", "Agent 1002", json={"paused": False})
    assert status == 200, body
    assert (await live.ami.members("tier1"))["Agent 1002"]["Paused"] == "0"
    # Agent 1002 is no member of tier2 in queues.conf: a supervisor logs them in and out.
    body_in = {"agent": "Agent 1002", "queue": "tier2", "action": "login"}
    status, body = await live.api("POST", "/api/agent/queues", SUPERVISOR, json=body_in)
    assert status == 200, body
    member = (await live.ami.members("tier2"))["Agent 1002"]
    assert member["Location"] == "Local/1002@agents/n" and member["Membership"] == "dynamic"
    body_out = {**body_in, "action": "logout"}
    status, body = await live.api("POST", "/api/agent/queues", SUPERVISOR, json=body_out)
    assert status == 200, body
    assert "Agent 1002" not in await live.ami.members("tier2")


async def test_click_to_dial_is_recorded_as_an_outbound_call(live: Live) -> None:
    await live.ami.db("agent", "1001/ringdelay", "1")
    await live.ami.db("outside", f"{DIALLED}/ringdelay", "1")
    await live.ami.db("outside", f"{DIALLED}/talk", "3")
    await live.start_daemon()
    sup = await live.desktop(SUPERVISOR)
    status, body = await live.api(
        "POST", "/api/calls/originate", "Agent 1001", json={"number": NUMBER}
    )
    assert status == 202, body
    assert body["number"] == DIALLED
    ended = await sup.wait_for("ended", within_s=CALL_S)
    row = await live.interaction(ended["call_id"])
    assert row is not None
    assert row["direction"] == "outbound" and row["agents"] == ["Agent 1001"]
    assert row["outcome"] == "answered"
    assert row["talk_s"] is not None and row["talk_s"] >= 2.5


async def test_click_to_dial_rings_the_agent_then_the_number(live: Live) -> None:
    await live.ami.db("agent", "1001/ringdelay", "1")
    await live.ami.db("outside", f"{DIALLED}/ringdelay", "1")
    await live.start_daemon()
    status, body = await live.api(
        "POST", "/api/calls/originate", "Agent 1001", json={"number": NUMBER}
    )
    assert status == 202, body
    # the agent's phone answers, then the number: both halves of each leg are Up
    deadline = time.monotonic() + CALL_S
    up: set[str] = set()
    while time.monotonic() < deadline and len(up) < 2:
        up = {
            c["Channel"].split("-")[0]
            for c in await live.ami.channels()
            if c.get("ChannelStateDesc") == "Up"
        } & {"Local/1001@agents", f"Local/{DIALLED}@outside"}
        await asyncio.sleep(0.2)
    assert up == {"Local/1001@agents", f"Local/{DIALLED}@outside"}


async def test_a_daemon_restart_mid_call_keeps_wait_talk_and_routing_reason(live: Live) -> None:
    await live.ami.db("agent", "2001/ringdelay", "2")
    await live.ami.db("agent", "2002/mode", "noanswer")
    await live.start_daemon()
    a2001 = await live.desktop("Agent 2001")
    # the caller hangs up 10 s after the IVR answered them (about 7.5 s after 2001 did)
    await live.ami.call_in(VIP, hold_s=10)
    pop = await first_pop(a2001)
    call_id = pop["call_id"]
    await a2001.wait_for("answered", call_id, within_s=CALL_S)
    answered_at = time.time()
    await asyncio.sleep(1.0)
    await live.stop_daemon()
    await asyncio.sleep(1.0)
    restarted_at = time.time()
    await live.start_daemon()
    row = await recorded(live, call_id, 30)
    assert row["routing_reason"] == "VIP customer"
    assert row["queues"] == ["vip"] and row["agents"] == ["Agent 2001"]
    assert row["outcome"] == "answered"
    assert row["wait_s"] is not None and row["wait_s"] >= 1.5
    # talk runs from the answer before the restart, not from the restart
    talk = row["ended_at"].timestamp() - answered_at
    assert row["talk_s"] == pytest.approx(talk, abs=1.0)
    assert row["talk_s"] > row["ended_at"].timestamp() - restarted_at + 1.5


async def test_a_call_that_came_and_went_while_the_daemon_was_down_is_read_from_queue_log(
    live: Live,
) -> None:
    """Asterisk's own queue_log file (the lab's logger.conf keeps it) read at the restart."""
    queue_log = live.lab.log_dir / "queue_log"
    live.config = live.config.model_copy(update={"queue_log": QueueLogConfig(file=str(queue_log))})
    for agent in ("1001", "1002", "1003"):
        await live.ami.db("agent", f"{agent}/ringdelay", "1")
        await live.ami.db("agent", f"{agent}/talk", "3")
    await live.start_daemon()
    await live.stop_daemon()
    # Nobody listens: FastAGI is refused, the dialplan falls back to tier1; the agent rung
    # answers after 1 s and hangs up 3 s later.
    # The lab's queue_log also holds this caller's calls from earlier tests (read back too,
    # within the look-back): this test's call is the one that entered after this moment.
    called_at = datetime.now(UTC).replace(microsecond=0, tzinfo=None)
    await live.ami.call_in(KNOWN)
    await asyncio.sleep(2.0)
    async with asyncio.timeout(CALL_S):
        while await live.ami.channels():  # noqa: ASYNC110 - Asterisk's state
            await asyncio.sleep(0.5)
    await live.start_daemon()
    deadline = time.monotonic() + CALL_S
    while True:
        async with live.store.engine.connect() as conn:
            query = text("SELECT call_id FROM interactions WHERE caller = :c AND started_at >= :t")
            rows = (await conn.execute(query, {"c": KNOWN, "t": called_at})).scalars().all()
        if rows or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert len(rows) == 1, rows
    row = await live.interaction(rows[0])
    assert row is not None
    assert row["extra"]["source"] == "queue_log"
    assert row["outcome"] == "answered" and row["queues"] == ["tier1"]
    assert row["agents"][0] in {"Agent 1001", "Agent 1002", "Agent 1003"}
    assert row["talk_s"] == pytest.approx(3.0, abs=1.0)
    assert row["wait_s"] is not None and row["wait_s"] <= 3.0
    assert row["customer_id"] is not None  # Grace Hopper, resolved from the caller ID
    assert "routing" in row["extra"]["not_known"]


async def test_asterisk_killed_mid_call_ends_the_call_when_the_link_dropped(live: Live) -> None:
    await live.ami.db("agent", "2001/ringdelay", "1")
    await live.ami.db("agent", "2002/mode", "noanswer")
    await live.start_daemon()
    a2001 = await live.desktop("Agent 2001")
    await live.ami.call_in(VIP)
    call_id = (await first_pop(a2001))["call_id"]
    await a2001.wait_for("answered", call_id, within_s=CALL_S)
    await asyncio.sleep(2.0)
    killed_at = time.time()
    live.lab.kill()
    await asyncio.sleep(3.0)
    live.lab.start()
    await live.ami.reconnect()
    await live.ami.action(Action="Hangup", Channel="/^Local//")  # nothing left: a fresh PBX
    row = await recorded(live, call_id, 60)
    assert row["outcome"] == "answered"
    assert row["talk_s"] is not None and row["talk_s"] >= 1.5
    assert abs(row["ended_at"].timestamp() - killed_at) < 1.0
    assert "ended_at" in row["extra"]["estimated"]  # README: extra.estimated names it


# ---- supervisor: listen / whisper / barge and recordings (issue 15) -----------------------


async def _answered_vip_call(live: Live) -> str:
    """A VIP call Agent 2001 is talking on (the caller stays until hung up): its id."""
    await live.ami.db("agent", "2001/ringdelay", "1")
    await live.ami.db("agent", "2002/mode", "noanswer")
    await live.ami.db("agent", "9000/ringdelay", "1")  # the supervisor's phone
    a2001 = await live.desktop("Agent 2001")
    await live.ami.call_in(VIP)
    call_id: str = (await first_pop(a2001))["call_id"]
    await a2001.wait_for("answered", call_id, within_s=CALL_S)
    return call_id


async def _event(ami: LabAmi, name: str, within_s: float = CALL_S, **match: str) -> dict[str, str]:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        for event in ami.events:
            if event.get("Event") == name and all(event.get(k) == v for k, v in match.items()):
                ami.events.remove(event)
                return event
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {name} {match} from Asterisk in {within_s} s")


async def test_listen_whisper_and_barge_are_chanspy_sessions_on_the_agents_channel(
    live: Live,
) -> None:
    events = LabAmi(live.lab.ami_port, events="call")
    await events.connect()
    try:
        daemon = await live.start_daemon()
        call_id = await _answered_vip_call(live)
        ctx = daemon.parts.calls.get(call_id)
        assert ctx is not None and ctx.agent_channel
        for mode in ("listen", "whisper", "barge"):
            status, body = await live.api(
                "POST", f"/api/calls/{call_id}/spy", SUPERVISOR, json={"mode": mode}
            )
            assert status == 201, body
            start = await _event(events, "ChanSpyStart", SpyeeChannel=ctx.agent_channel)
            assert start["SpyerChannel"].startswith("Local/9000@agents-")
            assert start["SpyerCallerIDName"] == f"{mode} Agent 2001"
        # ChanSpy's E option: every session ends with the call it spies on
        await live.ami.action(Action="Hangup", Channel=ctx.agent_channel)
        for _ in range(3):
            await _event(events, "ChanSpyStop", SpyeeChannel=ctx.agent_channel)
        status, audit = await live.api("GET", "/api/supervisor/audit", SUPERVISOR)
        assert status == 200, audit
        rows = audit["entries"] if isinstance(audit, dict) else audit
        assert [r["action"] for r in rows if r["call_id"] == call_id][:3] == [
            "listen",
            "whisper",
            "barge",
        ]
    finally:
        events.close()


async def test_a_recorded_queues_call_is_recorded_by_asterisk_and_paused_on_request(
    live: Live, tmp_path: Path
) -> None:
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    live.config = live_config(live.lab, live.config.database.url, recordings=recordings)
    events = LabAmi(live.lab.ami_port, events="call")
    await events.connect()
    try:
        daemon = await live.start_daemon()
        call_id = await _answered_vip_call(live)
        ctx = daemon.parts.calls.get(call_id)
        assert ctx is not None and ctx.caller_channel
        await _event(events, "MixMonitorStart", Channel=ctx.caller_channel)
        for paused, state in ((True, "1"), (False, "0")):
            status, body = await live.api(
                "POST", f"/api/calls/{call_id}/recording", SUPERVISOR, json={"paused": paused}
            )
            assert status == 200, body
            await _event(events, "MixMonitorMute", Channel=ctx.caller_channel, State=state)
        await asyncio.sleep(1.0)
        await live.ami.action(Action="Hangup", Channel=ctx.caller_channel)
        await recorded(live, call_id, CALL_S)
        wav = recordings / f"{call_id}.wav"
        # a WAV file, its header at least: the lab's Local phones send no audio to mix
        await wait_until(lambda: wav.exists() and wav.read_bytes()[:4] == b"RIFF", 10)
        headers = {"Authorization": f"Bearer {token_of(SUPERVISOR)}", "Range": "bytes=0-3"}
        async with live.session.get(f"{live.base}/api/recordings/{call_id}", headers=headers) as r:
            assert r.status == 206 and await r.read() == b"RIFF"
    finally:
        events.close()
