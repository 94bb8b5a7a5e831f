"""The PBX simulator as the daemon meets it: a real AMI peer and a real FastAGI caller.

Its events are held to recorded Asterisk 22.10.1 traffic (``../shared/ami-traces/asterisk22``):
header names and order per event, Linkedid/Uniqueid rules, queue event order; and the call
tracker, fed the simulator's events, must report what the simulator knows happened.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cti.sim.actions import AmiUser
from cti.sim.scenarios import AgentBehaviour, CallerProfile, Dialplan
from cti.sim.simulator import AgentSpec, SimSettings, Simulator

KNOWN = CallerProfile("known", ("+442071234567",), patience_s=(60.0, 60.0))
ANON = CallerProfile("anonymous", (None,), patience_s=(60.0, 60.0))
PATIENT = CallerProfile("known", ("+447700900456",), patience_s=(600.0, 600.0))
IMPATIENT = CallerProfile("unknown", ("+442079460999",), patience_s=(1.0, 1.0))
SCALE = 0.02  # 1 simulated second = 20 ms
SEED = int(os.environ.get("CTI_SIM_TEST_SEED", "21"))
Message = list[tuple[str, str]]


def agents(*specs: tuple[str, str]) -> list[AgentSpec]:
    return [AgentSpec(f"Agent {ext}", f"Local/{ext}@agents/n", (queue,)) for ext, queue in specs]


def settings(**overrides: object) -> SimSettings:
    base = SimSettings(
        dialplan=Dialplan(agi_host=None),
        behaviour=AgentBehaviour(miss_rate=0.0, endings={"caller": 1.0}),
        agents=agents(("1001", "tier1"), ("2001", "tier2"), ("3001", "tier3")),
        time_scale=SCALE,
        seed=5,
    )
    for key, value in overrides.items():
        setattr(base, key, value)
    return base


class Ami:
    """A minimal AMI client: collects events, sends actions and reads their responses."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.events: list[Message] = []
        self.responses: asyncio.Queue[Message] = asyncio.Queue()
        self.banner = ""
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def connect(
        cls, port: int, user: str = "cti", secret: str = "cti-secret", events: str = "on"
    ) -> Ami:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        ami = cls(reader, writer)
        ami.banner = (await reader.readline()).decode()
        ami._task = asyncio.create_task(ami._read())
        login = await ami.action(Action="Login", Username=user, Secret=secret, Events=events)
        assert dict(login)["Response"] == "Success", login
        return ami

    async def _read(self) -> None:
        block: Message = []
        while line := await self.reader.readline():
            text = line.decode().rstrip("\r\n")
            if text:
                name, _, value = text.partition(": ")
                block.append((name, value))
                continue
            if block and block[0][0] == "Event" and ("EventList", "start") not in block:
                if not any(k == "ActionID" for k, _ in block) or block[0][1] in {
                    "OriginateResponse",
                }:
                    self.events.append(block)
                else:
                    await self.responses.put(block)
            elif block:
                await self.responses.put(block)
            block = []

    async def action(self, **headers: str) -> Message:
        self.writer.write("".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode() + b"\r\n")
        return await asyncio.wait_for(self.responses.get(), 5)

    def named(self, name: str) -> list[dict[str, str]]:
        return [dict(e) for e in self.events if e[0][1] == name]

    def names(self) -> list[str]:
        return [e[0][1] for e in self.events]

    async def close(self) -> None:
        self.writer.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


STAFF = agents(("1001", "tier1"), ("1002", "tier1"), ("1003", "tier1"), ("2001", "tier2"))
STAFF += agents(("2002", "tier2"), ("3001", "tier3"))


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(settings())
    await simulator.start()
    yield simulator
    await simulator.stop()


async def _run_call(sim: Simulator, profile: CallerProfile = KNOWN) -> Ami:
    ami = await Ami.connect(sim.ami_port)
    await sim.place_call(profile, profile.numbers[0])
    await asyncio.sleep(0.05)
    return ami


def _recorded_shapes(traces: Path) -> dict[str, set[tuple[str, ...]]]:
    shapes: dict[str, set[tuple[str, ...]]] = {}
    for path in sorted((traces / "asterisk22").glob("*.json")):
        if path.name.endswith(".truth.json"):
            continue
        for event in json.loads(path.read_text()):
            shapes.setdefault(event["Event"], set()).add(tuple(event))
    return shapes


async def test_every_simulated_event_has_asterisk_22s_headers_in_its_order(
    traces_dir: Path,
) -> None:
    shapes = _recorded_shapes(traces_dir)
    endings = {"caller": 1.0, "agent": 1.0, "blind": 1.0, "attended": 1.5}
    behaviour = AgentBehaviour(miss_rate=0.3, endings=endings)
    simulator = Simulator(settings(behaviour=behaviour, seed=SEED, agents=STAFF))
    await simulator.start()
    try:
        ami = await Ami.connect(simulator.ami_port)
        calls = [simulator.place_call(p, p.numbers[0]) for p in (KNOWN, ANON, KNOWN, IMPATIENT)]
        calls += [simulator.place_call(PATIENT, PATIENT.numbers[0]) for _ in range(10)]
        await asyncio.wait_for(asyncio.gather(*calls), 30)
        await asyncio.sleep(0.05)
        await ami.close()
    finally:
        await simulator.stop()
    seen = set(ami.names())
    assert {"QueueCallerAbandon", "BlindTransfer", "AgentRingNoAnswer", "AgentComplete"} <= seen
    assert {"AttendedTransfer", "BridgeMerge", "Hold"} <= seen
    for event in ami.events[1:]:  # [0] is the login's FullyBooted (protocol/login_events_on)
        name, keys = event[0][1], tuple(k for k, _ in event)
        assert name in shapes, f"{name} never appears in the Asterisk 22 recordings"
        assert keys in shapes[name], f"{name}: headers {keys} differ from the recordings"


async def test_an_answered_call_produces_the_recorded_sequence_of_call_and_queue_events(
    traces_dir: Path, sim: Simulator
) -> None:
    ignore = {"VarSet", "Newexten", "DeviceStateChange", "QueueMemberStatus", "AGIExecStart"}
    ignore |= {"AGIExecEnd", "MusicOnHoldStart", "MusicOnHoldStop", "FullyBooted"}
    recorded = [
        e["Event"]
        for e in json.loads((traces_dir / "asterisk22" / "answered_tier1.json").read_text())
        if e["Event"] not in ignore
    ]
    ami = await _run_call(sim)
    await ami.close()
    assert [n for n in ami.names() if n not in ignore] == recorded


async def test_an_abandoned_call_produces_the_recorded_sequence_of_events(
    traces_dir: Path, sim: Simulator
) -> None:
    ignore = {"VarSet", "Newexten", "DeviceStateChange", "QueueMemberStatus", "FullyBooted"}
    ignore |= {"QueueMemberPause", "MusicOnHoldStart", "MusicOnHoldStop"}
    ignore |= {"OriginateResponse"}  # comes from another thread: its place varies in recordings
    path = traces_dir / "asterisk22" / "abandoned_in_queue.json"
    recorded = [e["Event"] for e in json.loads(path.read_text()) if e["Event"] not in ignore]
    ami = await Ami.connect(sim.ami_port)
    await ami.action(Action="QueuePause", Interface="Local/1001@agents/n", Paused="true")
    await sim.place_call(IMPATIENT, IMPATIENT.numbers[0])
    await asyncio.sleep(0.05)
    await ami.close()
    assert [n for n in ami.names() if n not in ignore] == recorded


async def test_every_channel_of_a_call_carries_the_linkedid_of_the_callers_first_channel(
    sim: Simulator,
) -> None:
    ami = await _run_call(sim)
    await ami.close()
    channels = ami.named("Newchannel")
    first = channels[0]
    assert first["Channel"].startswith("Local/08005550100@from-pstn-")
    assert first["Channel"].endswith(";1")
    assert first["Uniqueid"] == first["Linkedid"]
    assert {c["Linkedid"] for c in channels} == {first["Uniqueid"]}
    assert len({c["Uniqueid"] for c in channels}) == len(channels)
    agent_legs = [c["Channel"] for c in channels if "@agents-" in c["Channel"]]
    assert agent_legs[0].startswith("Local/1001@agents-") and agent_legs[0].endswith(";1")
    assert agent_legs[1] == agent_legs[0][:-1] + "2"
    connect = ami.named("AgentConnect")[0]
    assert connect["MemberName"] == "Agent 1001"
    assert connect["Interface"] == "Local/1001@agents/n"
    assert connect["Channel"] == first["Channel"][:-1] + "2"


async def test_the_router_is_asked_over_fastagi_as_asterisk_asks_and_its_queue_is_used(
    protocol_dir: Path,
) -> None:
    recorded = (protocol_dir / "agi_route_ok.agi-session").read_text().splitlines()
    recorded_keys = [line.split(":")[0] for line in recorded if line.startswith("agi_")]
    heard: list[str] = []

    async def router(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (line := (await reader.readline()).decode()) not in ("\n", ""):
            heard.append(line.rstrip("\n"))
        for command in ('SET VARIABLE CTI_QUEUE "tier2"', "SET VARIABLE CTI_PRIORITY 7"):
            writer.write(f"{command}\n".encode())
            heard.append((await reader.readline()).decode().strip())
        writer.write(b"GET VARIABLE CALLERID(num)\n")
        heard.append((await reader.readline()).decode().strip())
        writer.write_eof()
        heard.append((await reader.readline()).decode().strip())
        writer.close()

    server = await asyncio.start_server(router, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    simulator = Simulator(settings(dialplan=Dialplan(agi_host="127.0.0.1", agi_port=port)))
    await simulator.start()
    try:
        ami = await Ami.connect(simulator.ami_port)
        summary = await simulator.place_call(KNOWN, KNOWN.numbers[0])
        await ami.close()
    finally:
        await simulator.stop()
        server.close()
    assert [h.split(":")[0] for h in heard[:23]] == recorded_keys
    assert "agi_callerid: +442071234567" in heard
    assert "agi_request: agi://127.0.0.1:" in heard[2] and heard[2].endswith("/route")
    assert heard[23:] == ["200 result=1", "200 result=1", "200 result=1 (+442071234567)", "HANGUP"]
    assert summary.agi_status == "SUCCESS"
    assert [q["Queue"] for q in ami.named("QueueCallerJoin")] == ["tier2"]
    assert summary.agents == ["Agent 2001"]


async def test_an_unreachable_router_leaves_the_call_in_tier1_like_the_dialplan_fallback() -> None:
    dead = Dialplan(agi_host="127.0.0.1", agi_port=1, agi_timeout_s=1.0)
    simulator = Simulator(settings(dialplan=dead))
    await simulator.start()
    try:
        ami = await Ami.connect(simulator.ami_port)
        summary = await simulator.place_call(KNOWN, KNOWN.numbers[0])
        await ami.close()
    finally:
        await simulator.stop()
    assert summary.agi_status == "FAILURE"
    assert summary.queues == ["tier1"]
    agi_status = [v for v in ami.named("VarSet") if v["Variable"] == "AGISTATUS"]
    assert agi_status[0]["Value"] == "FAILURE"


async def test_a_caller_nobody_answers_abandons_with_abandon_then_leave(sim: Simulator) -> None:
    ami = await Ami.connect(sim.ami_port)
    response = await ami.action(
        Action="QueuePause", Interface="Local/1001@agents/n", Paused="true", Reason="break"
    )
    assert dict(response)["Message"] == "Interface paused successfully"
    summary = await sim.place_call(IMPATIENT, IMPATIENT.numbers[0])
    await asyncio.sleep(0.05)
    await ami.close()
    assert summary.abandoned and summary.hangup_by == "caller"
    names = ami.names()
    assert names.index("QueueCallerAbandon") + 1 == names.index("QueueCallerLeave")
    assert ami.named("QueueMemberPause")[0]["PausedReason"] == "break"


async def test_a_redirect_escalates_a_waiting_caller_into_the_tier3_queue(sim: Simulator) -> None:
    ami = await Ami.connect(sim.ami_port)
    await ami.action(Action="QueuePause", Interface="Local/1001@agents/n", Paused="true")
    call = sim.place_call(KNOWN, KNOWN.numbers[0])
    for _ in range(100):
        if ami.named("QueueCallerJoin"):
            break
        await asyncio.sleep(0.01)
    channel = ami.named("QueueCallerJoin")[0]["Channel"]
    setvar = await ami.action(
        Action="Setvar", Channel=channel, Variable="CTI_ESCALATION_REASON", Value="outage"
    )
    assert dict(setvar)["Message"] == "Variable Set"
    redirect = await ami.action(
        Action="Redirect", Channel=channel, Context="transfer", Exten="8003", Priority="1"
    )
    assert dict(redirect)["Message"] == "Redirect successful"
    summary = await asyncio.wait_for(call, 10)
    await asyncio.sleep(0.05)
    await ami.close()
    assert summary.queues == ["tier1", "tier3"]
    assert summary.agents == ["Agent 3001"]
    assert not summary.abandoned
    joins = [q["Queue"] for q in ami.named("QueueCallerJoin")]
    assert joins == ["tier1", "tier3"]
    names = ami.names()
    abandon = names.index("QueueCallerAbandon")
    assert names[abandon + 1] == "QueueCallerLeave"


async def test_a_blind_transfer_action_on_the_agents_channel_requeues_the_caller_in_tier2() -> None:
    talkative = AgentBehaviour(miss_rate=0.0, talk_s=(200.0, 200.0), endings={"caller": 1.0})
    simulator = Simulator(settings(behaviour=talkative))
    await simulator.start()
    try:
        ami = await Ami.connect(simulator.ami_port)
        call = simulator.place_call(KNOWN, KNOWN.numbers[0])
        for _ in range(200):
            if ami.named("AgentConnect"):
                break
            await asyncio.sleep(0.01)
        agent_channel = ami.named("AgentConnect")[0]["DestChannel"]
        refused = await ami.action(Action="BlindTransfer", Channel="Local/none-1;1", Exten="8002")
        assert dict(refused)["Message"] == "Channel specified does not exist"
        done = await ami.action(
            Action="BlindTransfer", Channel=agent_channel, Exten="8002", Context="transfer"
        )
        assert dict(done)["Message"] == "Transfer succeeded"
        for _ in range(300):
            if len(ami.named("AgentConnect")) == 2:
                break
            await asyncio.sleep(0.01)
        hangup = await ami.action(Action="Hangup", Channel=ami.named("Newchannel")[0]["Channel"])
        assert dict(hangup)["Message"] == "Channel Hungup"
        summary = await asyncio.wait_for(call, 10)
        await asyncio.sleep(0.05)
        await ami.close()
    finally:
        await simulator.stop()
    transfer = ami.named("BlindTransfer")[0]
    assert transfer["Result"] == "Success" and transfer["Extension"] == "8002"
    assert transfer["TransfererChannel"] == agent_channel
    assert summary.agents == ["Agent 1001", "Agent 2001"]
    assert summary.transfers == [{"kind": "blind", "from": "Agent 1001", "to": "8002"}]
    assert summary.hangup_by == "caller"


async def test_ami_logins_and_permissions_answer_like_asterisk() -> None:
    users = {"cti": AmiUser("cti-secret"), "ro": AmiUser("ro", write=frozenset())}
    simulator = Simulator(settings(users=users))
    await simulator.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", simulator.ami_port)
        assert await reader.readline() == b"Asterisk Call Manager/11.0.0\r\n"
        writer.write(b"Action: Ping\r\nActionID: early\r\n\r\n")
        early = await reader.readuntil(b"\r\n\r\n")
        assert early == b"Response: Error\r\nActionID: early\r\nMessage: Permission denied\r\n\r\n"
        writer.write(b"Action: Login\r\nActionID: 1\r\nUsername: cti\r\nSecret: nope\r\n\r\n")
        failed = await asyncio.wait_for(reader.read(), 5)
        assert failed == b"Response: Error\r\nActionID: 1\r\nMessage: Authentication failed\r\n\r\n"
        writer.close()
        readonly = await Ami.connect(simulator.ami_port, "ro", "ro", events="off")
        denied = await readonly.action(Action="Originate", Channel="Local/1001@agents")
        assert dict(denied)["Message"] == "Permission denied"
        status = await readonly.action(Action="QueueStatus", Queue="tier1")
        assert dict(status)["EventList"] == "start"
        await readonly.close()
    finally:
        await simulator.stop()


async def test_the_call_tracker_reports_what_the_simulator_knows_happened(tmp_path: Path) -> None:
    from cti.replay import summaries
    from cti.tracker import CallTracker

    endings = {"caller": 1.0, "agent": 1.0, "blind": 1.0, "attended": 1.0}
    behaviour = AgentBehaviour(miss_rate=0.2, endings=endings)
    simulator = Simulator(settings(behaviour=behaviour, seed=SEED, agents=STAFF))
    await simulator.start()
    try:
        ami = await Ami.connect(simulator.ami_port)
        profiles = [KNOWN, ANON, IMPATIENT] + [PATIENT] * 11
        calls = [simulator.place_call(p, p.numbers[0]) for p in profiles]
        truth = await asyncio.wait_for(asyncio.gather(*calls), 30)
        await asyncio.sleep(0.05)
        await ami.close()
    finally:
        await simulator.stop()
    trace = tmp_path / "sim.ami"
    trace.write_bytes(
        b"".join(
            "".join(f"{k}: {v}\r\n" for k, v in event).encode() + b"\r\n" for event in ami.events
        )
    )
    kinds = {t["kind"] for call in truth for t in call.transfers}
    assert kinds == {"blind", "attended"}, "the run should exercise both kinds of transfer"
    reported = {s["call_id"]: s for s in summaries(trace, CallTracker(region="GB"))}
    for call in truth:
        got = reported[call.call_id]
        assert got["agents"] == call.agents, (call, got)
        assert got["abandoned"] == call.abandoned, (call, got)
        assert [t["kind"] for t in got["transfers"]] == [t["kind"] for t in call.transfers]
        assert got["hangup_by"] == call.hangup_by, (call, got)
        assert got["queues"] == call.queues, (call, got)


async def _until_event(ami: Ami, name: str, count: int = 1) -> dict[str, str]:
    async with asyncio.timeout(10):
        while True:
            if len(found := ami.named(name)) >= count:
                return found[count - 1]
            await asyncio.sleep(0.01)


async def test_an_atxfer_action_consults_tier2_then_hands_the_caller_over() -> None:
    talkative = AgentBehaviour(miss_rate=0.0, talk_s=(200.0, 200.0), endings={"caller": 1.0})
    simulator = Simulator(settings(behaviour=talkative))
    await simulator.start()
    try:
        ami = await Ami.connect(simulator.ami_port)
        call = simulator.place_call(KNOWN, KNOWN.numbers[0])
        agent_channel = (await _until_event(ami, "AgentConnect"))["DestChannel"]
        queued = await ami.action(
            Action="Atxfer", Channel=agent_channel, Exten="8002", Context="transfer"
        )
        assert dict(queued)["Message"] == "Atxfer successfully queued"
        transfer = await _until_event(ami, "AttendedTransfer")
        caller = ami.named("Newchannel")[0]["Channel"]
        await ami.action(Action="Hangup", Channel=caller)
        summary = await asyncio.wait_for(call, 10)
        await asyncio.sleep(0.05)
        await ami.close()
    finally:
        await simulator.stop()
    assert transfer["Result"] == "Success"
    assert transfer["OrigTransfererChannel"] == agent_channel
    assert transfer["TransfereeChannel"] == caller[:-1] + "2"
    assert ami.named("QueueCallerJoin")[1]["Channel"].startswith("Local/8002@transfer-")
    assert summary.agents == ["Agent 1001", "Agent 2001"]
    assert [t["kind"] for t in summary.transfers] == ["attended"]
    assert summary.queues == ["tier1", "tier2"]


async def test_click_to_dial_originate_rings_the_agents_phone_and_reports_it(
    sim: Simulator,
) -> None:
    ami = await Ami.connect(sim.ami_port)
    queued = await ami.action(
        Action="Originate",
        ActionID="ctd-1",
        Channel="Local/1001@agents/n",
        Context="from-internal",
        Exten="02079460000",
        Priority="1",
        Async="true",
    )
    assert dict(queued)["Message"] == "Originate successfully queued"
    response = await _until_event(ami, "OriginateResponse")
    refused = await ami.action(Action="Originate", Channel="Nope/x", Exten="1", Async="true")
    failure = await _until_event(ami, "OriginateResponse", 2)
    await ami.close()
    assert response["ActionID"] == "ctd-1" and response["Response"] == "Success"
    assert response["Channel"].startswith("Local/1001@agents-")
    assert response["Channel"].endswith(";1")
    assert dict(refused)["Message"] == "Originate successfully queued"
    assert failure["Response"] == "Failure" and failure["Reason"] == "0"
