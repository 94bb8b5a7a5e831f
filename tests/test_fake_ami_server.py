"""The fake AMI server answers like the recorded Asterisk 22: the client side of each
transcript is replayed against it and its answers compared, block by block, modulo the
values that change from run to run (timestamps, uniqueids, durations, challenges)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fakes.ami_server import BANNER, FakeAmiServer, parse_blocks, read_ami_events

Block = list[tuple[str, str]]

VOLATILE = {
    "Timestamp",
    "Uniqueid",
    "Linkedid",
    "Uptime",
    "LastReload",
    "Duration",
    "Wait",
    "Seconds",
    "LoginTime",
    "LastPause",
    "LastCall",
    "CallsTaken",
    "Holdtime",
    "HoldTime",
    "TalkTime",
    "LongestHoldTime",
    "Completed",
    "ServicelevelPerf",
    "ServicelevelPerf2",
    "CoreStartupDate",
    "CoreStartupTime",
    "CoreReloadDate",
    "CoreReloadTime",
    "Channel",  # only where the fake names a new channel (OriginateResponse)
}


@dataclass
class Step:
    send: bytes
    expected: bytes = b""
    eof: bool = False


@dataclass
class Conversation:
    banner: bytes = b""
    steps: list[Step] = field(default_factory=list)


def conversations(path: Path) -> dict[str, Conversation]:
    """Per connection: the bytes the client sent, each with what Asterisk answered before
    the next send, and whether Asterisk then closed the connection."""
    convs: dict[str, Conversation] = {}
    for entry in json.loads(path.read_text()):
        conv = convs.setdefault(entry["conn"], Conversation())
        data = entry["data"].encode()
        if entry["dir"] == "send":
            conv.steps.append(Step(data))
        elif entry["dir"] == "recv":
            if conv.steps:
                conv.steps[-1].expected += data
            else:
                conv.banner += data
        elif "EOF" in entry["data"] and conv.steps:
            conv.steps[-1].eof = True
    return {name: conv for name, conv in convs.items() if conv.banner}


def _normal(block: Block, *, loose_channel: bool = False) -> Block:
    volatile = VOLATILE if loose_channel else VOLATILE - {"Channel"}
    return [(k, "<varies>" if k in volatile else v) for k, v in block]


def _is_security(block: Block) -> bool:
    return ("Event", "SuccessfulAuth") in block


async def replay(
    server: FakeAmiServer,
    conv: Conversation,
    *,
    keep: Callable[[Block], bool] = lambda b: not _is_security(b),
    skip: Callable[[Step], bool] = lambda s: False,
) -> None:
    reader, writer = await asyncio.open_connection(server.host, server.port)
    assert await reader.readline() == conv.banner == BANNER
    pending = b""
    try:
        for step in conv.steps:
            writer.write(step.send)
            expected = [b for b in parse_blocks(step.expected) if keep(b)]
            got: list[Block] = []
            async with asyncio.timeout(3):  # (a timeout here: the fake did not answer step.send)
                while len(got) < len(expected):
                    chunk = await reader.read(65536)
                    assert chunk, f"EOF while waiting for {expected[len(got)]}"
                    pending += chunk
                    cut = pending.rfind(b"\r\n\r\n")
                    if cut >= 0:
                        got += [b for b in parse_blocks(pending[: cut + 4]) if keep(b)]
                        pending = pending[cut + 4 :]
            if skip(step):
                continue
            loose = b"OriginateResponse" in step.expected
            assert [_normal(b, loose_channel=loose) for b in got] == [
                _normal(b, loose_channel=loose) for b in expected
            ], step.send.decode()
            if step.eof:
                async with asyncio.timeout(3):
                    assert await reader.read() == b""
                return
    finally:
        writer.close()


@pytest.fixture
async def server() -> FakeAmiServer:
    ami = FakeAmiServer(auth_fail_delay_s=0.05)
    await ami.start()
    yield ami  # type: ignore[misc]
    await ami.stop()


async def test_login_ping_logoff_match_the_recording(server, protocol_dir):
    for conv in conversations(protocol_dir / "login_ok.json").values():
        await replay(server, conv)


async def test_bad_secret_and_unknown_user_fail_after_a_delay_then_close(protocol_dir):
    async with FakeAmiServer(auth_fail_delay_s=0.2) as ami:
        loop = asyncio.get_running_loop()
        for conv in conversations(protocol_dir / "login_bad_secret.json").values():
            start = loop.time()
            await replay(ami, conv)
            assert loop.time() - start >= 0.2


async def test_md5_challenge_login_matches_the_recording(protocol_dir):
    challenges = iter(["109329223", "179876770"])
    async with FakeAmiServer(auth_fail_delay_s=0.05, challenge=lambda: next(challenges)) as ami:
        for conv in conversations(protocol_dir / "login_md5.json").values():
            await replay(ami, conv)


async def test_fully_booted_after_login_and_events_toggle(server, protocol_dir):
    for conv in conversations(protocol_dir / "login_events_on.json").values():
        await replay(server, conv)


async def test_framing_corner_cases_and_small_actions(protocol_dir):
    uptime = ["System uptime: 5 seconds", "Last reload: 5 seconds"]
    async with FakeAmiServer(cli={"core show uptime": uptime}) as ami:
        ami.state.add_member("tier3", "Local/3001@agents/n", "Agent 3001")
        ami.state.variables[""]["CTI_AGI_URL"] = "agi://127.0.0.1:4573/route"
        for conv in conversations(protocol_dir / "actions_misc.json").values():
            await replay(ami, conv)


def _load_recorded_state(ami: FakeAmiServer, path: Path) -> None:
    """Teach the fake the PBX state the recording shows (channels, queues, bridges, vars)."""
    state = ami.state
    for conv in conversations(path).values():
        for step in conv.steps:
            sent = dict(parse_blocks(step.send)[0])
            for block in parse_blocks(step.expected):
                b = dict(block)
                event = b.get("Event")
                if event == "CoreShowChannel":
                    fields = {k: v for k, v in b.items() if k not in ("Event", "ActionID")}
                    state.add_channel(b["Channel"], **fields)
                elif event == "QueueParams":
                    state.add_queue(b["Queue"], b["Strategy"], int(b["Weight"]))
                elif event == "QueueMember" and sent.get("ActionID") == "queuestatus-all":
                    member = state.add_member(b["Queue"], b["Location"], b["Name"])
                    copied = ("StateInterface", "Membership", "Status", "Paused", "InCall")
                    member.update({k: b[k] for k in (*copied, "PausedReason")})
                elif event == "QueueEntry" and sent.get("ActionID") == "queuestatus-all":
                    state.add_caller(b["Queue"], b["Channel"], int(b["Priority"]))
                elif event == "BridgeInfoChannel":
                    bridge = state.bridges.get(sent["BridgeUniqueid"])
                    bridge = bridge or state.add_bridge(sent["BridgeUniqueid"])
                    bridge.channels.append(b["Channel"])
                elif event == "Status" and any(k == "Variable" for k, _ in block):
                    for _, value in [kv for kv in block if kv[0] == "Variable"]:
                        name, _, val = value.partition("=")
                        state.variables.setdefault(b["Channel"], {})[name] = val
                elif (
                    b.get("Response") == "Success"
                    and sent.get("Action") == "Getvar"
                    and "(" not in b["Variable"]  # functions such as CALLERID(num) are computed
                ):
                    state.variables.setdefault(sent["Channel"], {})[b["Variable"]] = b["Value"]


async def test_resync_lists_and_status_match_the_recording(server, protocol_dir):
    path = protocol_dir / "resync_mid_call.json"
    _load_recorded_state(server, path)
    for conv in conversations(path).values():
        await replay(server, conv)


def _setup_call3(block: Block) -> bool:
    return ("ActionID", "setup-call3") in block


def _responses_only(block: Block) -> bool:
    return any(k == "Response" for k, _ in block)


async def test_call_control_answers_match_the_recording(protocol_dir):
    async with FakeAmiServer(queues={"tier1": []}, unreachable=["Local/99999@nowhere"]) as ami:
        state = ami.state
        for n in ("1001", "1002", "1003"):
            state.add_member("tier1", f"Local/{n}@agents/n", f"Agent {n}")
        call1 = "Local/08005550100@from-pstn-00000004"
        for name in (f"{call1};1", f"{call1};2", "Local/1002@agents-00000005;1"):
            state.add_channel(name)
        state.add_channel("Local/2002@agents-00000007;1")
        state.add_channel("Local/2002@agents-00000007;2")
        state.add_channel("Local/08005550100@from-pstn-0000000a;2")
        state.add_channel("Local/08005550100@from-pstn-0000000d;1")
        state.add_bridge(channels=[f"{call1};2", "Local/1002@agents-00000005;1"])
        for conv in conversations(protocol_dir / "actions_call_control.json").values():
            # setup-call3 was originated by a connection not in the recording
            await replay(ami, conv, keep=lambda b: _responses_only(b) and not _setup_call3(b))


async def test_read_only_user_is_denied_write_actions(protocol_dir):
    async with FakeAmiServer() as ami:
        member = ami.state.add_member("tier3", "Local/3001@agents/n", "Agent 3001")
        member["StateInterface"] = "Custom:agent3001"
        ami.state.queues["tier3"].strategy = "rrmemory"
        ami.state.queues["tier3"].weight = 2
        for conv in conversations(protocol_dir / "permission_denied.json").values():
            await replay(ami, conv)


async def test_async_originate_reports_to_every_events_on_connection_not_events_off(server):
    async def login(events: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        await reader.readline()
        login = f"Action: Login\r\nUsername: cti\r\nSecret: cti-secret\r\nEvents: {events}\r\n"
        writer.write(login.encode() + b"\r\n")
        await reader.readuntil(b"Authentication accepted\r\n\r\n")
        return reader, writer

    (r_on, w_on), (r_off, w_off) = await login("call"), await login("off")
    w_off.write(
        b"Action: Originate\r\nActionID: o-1\r\nChannel: Local/1@x\r\nContext: c\r\n"
        b"Exten: e\r\nPriority: 1\r\nAsync: true\r\n\r\n"
    )
    assert b"Originate successfully queued" in await r_off.readuntil(b"\r\n\r\n")
    event = await asyncio.wait_for(r_on.readuntil(b"\r\n\r\n"), 2)
    assert event.startswith(b"Event: OriginateResponse\r\n") and b"ActionID: o-1\r\n" in event
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(r_off.readuntil(b"\r\n\r\n"), 0.2)
    w_on.close()
    w_off.close()


async def test_played_events_build_the_state_list_actions_answer_from(server, protocol_dir):
    played = await server.play_ami_file(protocol_dir / "actions_call_control.events.ami", 40)
    assert played == 40
    assert "Local/08005550100@from-pstn-00000004;1" in server.state.channels


async def test_unauthenticated_connection_is_closed_after_authtimeout_without_a_word():
    async with FakeAmiServer(auth_timeout_s=0.1) as ami:
        reader, writer = await asyncio.open_connection(ami.host, ami.port)
        assert await reader.readline() == BANNER
        async with asyncio.timeout(2):
            assert await reader.read() == b""
        writer.close()


async def test_core_restart_command_is_never_answered_and_restarts_the_fake(server):
    reader, writer = await asyncio.open_connection(server.host, server.port)
    await reader.readline()
    writer.write(b"Action: Login\r\nUsername: cti\r\nSecret: cti-secret\r\n\r\n")
    await reader.readuntil(b"Status: Fully Booted\r\n\r\n")
    writer.write(b"Action: Command\r\nActionID: restart\r\nCommand: core restart now\r\n\r\n")
    async with asyncio.timeout(3):
        rest = await reader.read()  # until the FIN
    blocks = [dict(b) for b in parse_blocks(rest)]
    assert [b.get("Event") for b in blocks if "Event" in b][-1] == "Shutdown"
    assert not any("Response" in b for b in blocks)
    writer.close()
    await server.wait_for_logins(1)
    async with asyncio.timeout(3):
        while True:  # refused for a while, then back
            try:
                reader, writer = await asyncio.open_connection(server.host, server.port)
                break
            except ConnectionRefusedError:
                await asyncio.sleep(0.05)
    assert await reader.readline() == BANNER
    writer.close()


async def test_state_follows_a_whole_played_trace_back_to_idle(server, protocol_dir):
    events = read_ami_events(protocol_dir.parent / "answered_tier1.ami")
    bridged_at = next(i for i, e in enumerate(events) if e["Event"] == "BridgeEnter") + 2
    await server.play(events[:bridged_at])
    (bridge,) = server.state.bridges.values()
    assert len(bridge.channels) == 2
    channels = server.state.channels
    assert all(channels[name]["BridgeId"] == bridge.uniqueid for name in bridge.channels)
    await server.play(events[bridged_at:])
    assert server.state.channels == {} and server.state.bridges == {}
    assert all(not q.callers for q in server.state.queues.values())
