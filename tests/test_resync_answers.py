"""The resync answers of the fake AMI server and of the simulator are Asterisk 22's: the same
CoreShowChannel fields in the same order, and the same Application per kind of channel of a
call talking to a queue member (recorded in ``resync_mid_call``). Restart tests adopt calls
from these answers: an answer Asterisk would not give proves nothing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from fakes.ami_server import FakeAmiServer
from test_e2e_calls import trace
from test_sim import KNOWN, settings

from cti.ami.client import AmiClient
from cti.ami.wire import AmiParser
from cti.config import AmiConfig
from cti.sim.scenarios import AgentBehaviour
from cti.sim.simulator import Simulator
from cti.tracker.tracker import CallTracker

Item = dict[str, str]


def recorded(protocol_dir: Path) -> list[Item]:
    parser = AmiParser()
    msgs: list[Item] = []
    for rec in json.loads((protocol_dir / "resync_mid_call.json").read_text()):
        if rec["dir"] == "recv":
            msgs += parser.feed(rec["data"].encode())
    return [m for m in msgs if m.get("Event") == "CoreShowChannel"]


def fields(item: Item) -> tuple[str, ...]:
    return tuple(k for k in item if k != "ActionID")


def roles(items: list[Item], call_id: str) -> dict[str, tuple[str, str, bool]]:
    """Per kind of channel of the call (``from-pstn;1``...): its Application, data, bridged."""
    out = {}
    for item in items:
        if item["Linkedid"] != call_id:
            continue
        name = item["Channel"]
        kind = name.split("@", 1)[1].rsplit("-", 1)[0] + name[-2:]
        out[kind] = (item["Application"], item["ApplicationData"], bool(item["BridgeId"]))
    return out


def talking_call(items: list[Item]) -> str:
    return next(i["Linkedid"] for i in items if i["Application"] == "AppQueue" and i["BridgeId"])


async def core_show_channels(port: int) -> list[Item]:
    client = AmiClient(AmiConfig(port=port, secret="cti-secret", events="off"))
    await client.start()
    try:
        await client.wait_connected(5)
        _, items = await client.send_list_action({"Action": "CoreShowChannels"})
        return items
    finally:
        await client.stop()


def expected(protocol_dir: Path) -> tuple[tuple[str, ...], dict[str, tuple[str, str, bool]]]:
    items = recorded(protocol_dir)
    shapes = {fields(i) for i in items}
    assert len(shapes) == 1
    return shapes.pop(), roles(items, talking_call(items))


async def test_the_fake_servers_channel_list_is_asterisk_22s(
    protocol_dir: Path, traces_dir: Path
) -> None:
    shape, want = expected(protocol_dir)
    events = trace(traces_dir, "answered_tier1")
    tracker = CallTracker()
    cut = 1 + next(
        i for i, e in enumerate(events) if any(c.event == "answered" for c in tracker.feed(e))
    )
    async with FakeAmiServer() as ami:
        await ami.play(events[:cut])
        items = await core_show_channels(ami.port)
    assert {fields(i) for i in items} == {shape}
    got = roles(items, talking_call(items))
    assert got["agents;1"] == want["agents;1"]  # AppQueue (Outgoing Line), bridged
    assert got["from-pstn;2"][0] == want["from-pstn;2"][0] == "Queue"
    assert got["from-pstn;2"][2] is True


async def test_the_simulators_channel_list_is_asterisk_22s(protocol_dir: Path) -> None:
    shape, want = expected(protocol_dir)
    behaviour = AgentBehaviour(miss_rate=0.0, endings={"caller": 1.0}, talk_s=(600.0, 600.0))
    sim = Simulator(settings(behaviour=behaviour))
    await sim.start()
    try:
        call = sim.place_call(KNOWN, KNOWN.numbers[0])
        async with asyncio.timeout(10):
            while True:
                items = await core_show_channels(sim.ami_port)
                if any(i["Application"] == "AppQueue" and i["BridgeId"] for i in items):
                    break
                await asyncio.sleep(0.02)
        call.cancel()
    finally:
        await sim.stop()
    assert {fields(i) for i in items} == {shape}
    assert roles(items, talking_call(items)) == want
