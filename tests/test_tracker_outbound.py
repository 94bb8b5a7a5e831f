"""Click-to-dial is an outbound call: direction, the agent who dialled, the number, its outcome.

Real recordings: cacofonisk's ``originate/`` traces are click-to-dial calls on a production-like
Asterisk (the Originate rings the agent's phone through a Local channel, then dials the number).
The Asterisk 22 shape of our own Originate (``POST /api/calls/originate``: the agent's
interface, then ``[from-internal]`` dials the number) comes from the simulator, whose prologue
is checked here against the Originate recorded in ``protocol/actions_call_control.events.ami``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fakes.ami_server import read_ami_events

from crm_core.types import Candidate, CustomerView, InteractionRecord, Resolution
from cti.calls import LiveCalls
from cti.config import AgentConfig
from cti.hub import PopHub
from cti.replay import read_events
from cti.sim.pbx import Event
from cti.sim.scenarios import AgentBehaviour, Dialplan
from cti.sim.simulator import AgentSpec, SimSettings, Simulator
from cti.tracker import CallTracker
from cti.tracker.events import CallEvent

CTD = Path(__file__).resolve().parent.parent.parent / "shared" / "ami-traces" / "cacofonisk"
NUMBER = "+442079460652"  # Paula Grant in the demo CRM
A2001 = AgentConfig(name="Agent 2001", member="Agent 2001", interface="Local/2001@agents/n")


def track(events: list[dict[str, str]]) -> list[CallEvent]:
    tracker = CallTracker(region="GB")
    return [o for e in events for o in tracker.feed(e) if o.event != "agent_state"]


def recorded(name: str) -> list[CallEvent]:
    return track(list(read_events(CTD / "originate" / f"{name}.json")))


# ---- real click-to-dial recordings ---------------------------------------------------------


def test_a_recorded_click_to_dial_is_outbound_by_the_agent_to_the_number() -> None:
    out = recorded("ctd-account-world")
    (outbound,) = [e for e in out if e.event == "outbound"]
    assert outbound.data["agent"] == "SIP/150010001"
    assert outbound.data["number"] == outbound.data["number_e164"] == "+31260010001"
    ended = out[-1]
    assert ended.event == "ended" and ended.data["direction"] == "outbound"
    assert ended.data["outbound"]["outcome"] == "answered"
    assert ended.data["summary"]["abandoned"] is False
    assert "abandoned" not in [e.event for e in out]


def test_a_recorded_click_to_dial_to_a_number_that_rejects_is_busy_not_abandoned() -> None:
    out = recorded("ctd-account-world-deny-b")
    ended = out[-1]
    assert ended.data["direction"] == "outbound"
    assert ended.data["outbound"]["outcome"] == "busy"
    assert ended.data["summary"]["agents"] == []  # nobody talked to the number
    assert "abandoned" not in [e.event for e in out]


def test_a_recorded_inbound_call_placed_by_the_labs_originate_stays_inbound(
    traces_dir: Path,
) -> None:
    # The Asterisk 22 lab plays its callers with Originate too; they queue: inbound.
    out = track(list(read_events(traces_dir / "asterisk22" / "abandoned_in_queue.ami")))
    assert "outbound" not in [e.event for e in out]
    assert out[-1].data["direction"] == "inbound"
    assert out[-1].data["summary"]["abandoned"] is True


# ---- our own Originate on a real Asterisk 22.10.1 (tests/recordings/asterisk22) ------------
# The lab's number is a Local pipe into ``[outside]``, whose far half answers in the dialplan:
# the pipe itself is the party the agent talks to.

LAB = Path(__file__).resolve().parent / "recordings" / "asterisk22"


def lab_recording(name: str) -> list[CallEvent]:
    return track(list(read_ami_events(LAB / f"{name}.ami")))


def test_a_real_click_to_dial_answered_by_the_number_is_an_answered_outbound_call() -> None:
    out = lab_recording("click_to_dial_answered")
    assert [e.event for e in out] == ["outbound", "answered", "ended"]
    answered, ended = out[1], out[2]
    assert answered.data["agent"] == "Agent 1001" and answered.data["direction"] == "outbound"
    assert answered.data["customer_channel"].startswith("Local/02079460000@outside-")
    assert ended.data["direction"] == "outbound"
    assert ended.data["outbound"]["outcome"] == "answered"
    assert ended.data["outbound"]["number_e164"] == "+442079460000"
    assert ended.data["summary"]["agents"] == ["Agent 1001"]
    assert ended.data["summary"]["hangup_by"] == "customer"  # the number hung up at +7.52
    assert ended.data["talk_s"] == pytest.approx(4.5, abs=0.1)  # bridged +3.02 .. +7.52
    assert ended.data["outbound"]["ring_s"] == pytest.approx(2.0, abs=0.05)


@pytest.mark.parametrize(
    ("name", "outcome", "ring_s"),
    [("click_to_dial_no_answer", "no_answer", 60.0), ("click_to_dial_busy", "busy", 0.0)],
)
def test_a_real_click_to_dial_the_number_does_not_take_ends_with_why_and_is_not_abandoned(
    name: str, outcome: str, ring_s: float
) -> None:
    out = lab_recording(name)
    assert [e.event for e in out] == ["outbound", "ended"]
    ended = out[-1]
    assert ended.data["direction"] == "outbound"
    assert ended.data["outbound"]["outcome"] == outcome
    assert ended.data["outbound"]["ring_s"] == pytest.approx(ring_s, abs=0.1)
    assert ended.data["summary"]["agents"] == [] and ended.data["talk_s"] is None
    assert ended.data["summary"]["abandoned"] is False


def test_a_real_ringall_call_withdraws_the_other_phone_as_answered_elsewhere() -> None:
    out = lab_recording("ringall_tier2_answered")
    stopped = [e for e in out if e.event == "ring_stopped"]
    assert [(e.data["member"], e.data["reason"], e.data["answered_by"]) for e in stopped] == [
        ("Agent 2002", "answered_elsewhere", "Agent 2001")
    ]
    ended = out[-1]
    assert ended.data["direction"] == "inbound" and "outbound" not in ended.data
    assert ended.data["summary"]["agents"] == ["Agent 2001"]
    assert ended.data["summary"]["abandoned"] is False
    assert "abandoned" not in [e.event for e in out]


# ---- the Asterisk 22 shape of our own Originate (simulator) --------------------------------


class Collected:
    """Every event the simulated PBX sends; ``over`` is set by the last channel's Hangup."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.events: list[dict[str, str]] = []
        self.over = asyncio.Event()

    def __call__(self, event: Event) -> None:
        self.events.append(dict(event.message()))
        if event.name == "Hangup" and len(self.sim.pbx.channels) <= 1:
            self.over.set()  # the PBX forgets the channel right after its Hangup


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    settings = SimSettings(
        dialplan=Dialplan(agi_host=None),
        behaviour=AgentBehaviour(miss_rate=0.0, endings={"caller": 1.0}),
        agents=[AgentSpec("Agent 2001", "Local/2001@agents/n", ("tier2",))],
        time_scale=0.02,
        seed=5,
    )
    simulator = Simulator(settings)
    simulator.actions.originate_hold_s = 0.3
    await simulator.start()
    yield simulator
    await simulator.stop()


async def click_to_dial(sim: Simulator, number: str = NUMBER) -> list[dict[str, str]]:
    """``POST /api/calls/originate``'s action, over AMI, until the call is over."""
    seen = Collected(sim)
    sim.pbx.subscribe(seen)
    reader, writer = await asyncio.open_connection("127.0.0.1", sim.ami_port)
    await reader.readline()
    writer.write(
        b"Action: Login\r\nUsername: cti\r\nSecret: cti-secret\r\nEvents: off\r\n\r\n"
        b"Action: Originate\r\nActionID: ctd\r\nChannel: Local/2001@agents/n\r\n"
        b"Context: from-internal\r\nExten: " + number.encode() + b"\r\nPriority: 1\r\n"
        b"Async: true\r\n\r\n"
    )
    await writer.drain()
    await asyncio.wait_for(seen.over.wait(), 10)
    writer.close()
    return seen.events


async def test_the_simulated_originate_opens_as_asterisk_22_recorded_it(
    sim: Simulator, protocol_dir: Path
) -> None:
    events = await click_to_dial(sim)
    keep = {"Newchannel", "LocalBridge", "DialBegin", "OriginateResponse", "DialEnd"}
    recording = list(read_events(protocol_dir / "actions_call_control.events.ami"))
    first = recording.index(next(e for e in recording if e.get("Event") == "Newchannel"))
    end = next(
        i for i, e in enumerate(recording) if e.get("Event") == "DialEnd" and "Channel" not in e
    )
    expected = [e for e in recording[first : end + 1] if e["Event"] in keep]
    got = [e for e in events if e["Event"] in keep][: len(expected)]
    assert [e["Event"] for e in got] == [e["Event"] for e in expected]
    for mine, theirs in zip(got, expected, strict=True):
        assert list(mine) == list(theirs)  # the same headers in the same order
    assert "Channel" not in got[3] and got[3]["DestChannel"].startswith("Local/2001@agents-")


async def test_our_click_to_dial_is_an_outbound_call_answered_by_the_number(
    sim: Simulator,
) -> None:
    out = track(await click_to_dial(sim))
    names = [e.event for e in out]
    assert "offered" not in names and "ringing" not in names  # not an inbound pop
    assert "abandoned" not in names
    (outbound,) = [e for e in out if e.event == "outbound"]
    assert outbound.data["agent"] == "Local/2001@agents"  # no queue member event seen
    assert outbound.data["number"] == NUMBER
    (answered,) = [e for e in out if e.event == "answered"]
    assert answered.data["direction"] == "outbound" and answered.data["ring_s"] > 0
    ended = out[-1].data
    assert ended["direction"] == "outbound" and ended["outbound"]["outcome"] == "answered"
    assert ended["talk_s"] > 0 and ended["wait_s"] is None
    assert ended["hangup_by"] in ("agent", "customer")
    assert ended["summary"]["abandoned"] is False


@pytest.mark.parametrize(
    ("answer", "outcome", "hangup_by"),
    [("busy", "busy", "customer"), ("noanswer", "no_answer", "system")],
)
async def test_a_number_that_does_not_answer_ends_the_outbound_call_with_why(
    sim: Simulator, answer: str, outcome: str, hangup_by: str
) -> None:
    sim.actions.number_outcomes[NUMBER] = answer
    out = track(await click_to_dial(sim))
    assert "abandoned" not in [e.event for e in out]
    ended = out[-1].data
    assert ended["outbound"]["outcome"] == outcome
    assert ended["hangup_by"] == hangup_by
    assert ended["talk_s"] is None and ended["summary"]["agents"] == []


# ---- the desktop and the record -------------------------------------------------------------


def paula() -> CustomerView:
    return CustomerView(
        customer_id=652,
        external_id="CUST-000652",
        name="Paula Grant",
        kind="person",
        organisation=None,
        language="en",
        email=None,
        address=None,
        phones=(),
        flags=("payment_arrears",),
        highlights=("payment_arrears",),
        open_cases=(),
        orders=(),
        products=(),
        interactions=(),
    )


class Directory:
    async def resolve(self, caller_id: str | None) -> Resolution:
        if caller_id == NUMBER:
            return Resolution("match", NUMBER, NUMBER, (Candidate(652, None, "Paula Grant"),))
        return Resolution("unknown", caller_id, caller_id or "")

    async def view(self, customer_id: int) -> CustomerView | None:
        return paula() if customer_id == 652 else None


class Sink:
    def __init__(self) -> None:
        self.records: list[InteractionRecord] = []

    def submit(self, record: InteractionRecord) -> None:
        self.records.append(record)


async def test_the_agent_sees_the_customer_being_called_and_the_record_is_outbound(
    sim: Simulator,
) -> None:
    import json

    events = await click_to_dial(sim)
    sink = Sink()
    calls = LiveCalls(directory=Directory(), recorder=sink)  # type: ignore[arg-type]
    hub = PopHub([A2001])
    desk = hub.subscribe(A2001)
    tracker = CallTracker(region="GB")
    for event in events:
        for out in tracker.feed(event):
            hub.publish(out, await calls.apply(out))
    await calls.close()
    messages: list[dict[str, Any]] = []
    while desk.pending():
        messages.append(json.loads((await desk.next()).text))  # type: ignore[union-attr]
    assert [m["type"] for m in messages] == ["pop", "answered", "ended"]
    pop = messages[0]
    assert pop["direction"] == "outbound" and pop["number"] == NUMBER
    assert pop["call"]["view"]["name"] == "Paula Grant"
    (record,) = sink.records
    assert record.direction == "outbound"
    assert record.customer_id == 652 and record.caller == NUMBER
    assert record.agents == ("Local/2001@agents",)
    assert record.outcome == "answered"
    assert record.talk_s is not None and record.talk_s > 0 and record.wait_s is None
    assert record.extra["ring_s"] is not None and record.extra["number"] == NUMBER


async def test_a_click_to_dial_the_agent_does_not_pick_up_is_outbound_and_not_abandoned(
    sim: Simulator,
) -> None:
    sim.actions.unanswered_phones.add("Local/2001@agents/n")
    events = await click_to_dial(sim)
    out = track(events)
    assert [e.event for e in out] == ["ended"]  # no offer, no pop, no abandon
    ended = out[0].data
    assert ended["direction"] == "outbound"
    assert ended["outbound"]["outcome"] == "agent_no_answer"
    assert ended["outbound"]["agent"] == "Local/2001@agents" and ended["outbound"]["number"] is None
    sink = Sink()
    calls = LiveCalls(recorder=sink)
    for event in out:
        await calls.apply(event)
    await calls.close()
    (record,) = sink.records
    assert record.direction == "outbound" and record.outcome == "agent_no_answer"
    assert record.agents == ("Local/2001@agents",)
