"""Talk and wait times, checked against what Asterisk itself reports.

Talk is time bridged with an agent (one leg per agent, summed); wait is time in queues (one leg
per queue, summed). Asterisk states both per queue leg: AgentComplete ``HoldTime``/``TalkTime``
and QueueCallerAbandon ``HoldTime``, in whole seconds, so they agree within 1 s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from crm_core.types import InteractionRecord
from cti.calls import LiveCalls
from cti.replay import read_events
from cti.tracker import CallTracker

ASTERISK22 = Path(__file__).resolve().parent.parent.parent / "shared" / "ami-traces" / "asterisk22"
FIGURED = sorted(
    p
    for p in [*ASTERISK22.glob("*.ami"), *ASTERISK22.glob("protocol/*.ami")]
    if b"Event: AgentComplete" in p.read_bytes() or b"Event: QueueCallerAbandon" in p.read_bytes()
)


Figures = list[tuple[str, dict[str, str], bool]]


def _replay(trace: Path) -> tuple[dict[str, dict[str, Any]], Figures]:
    """The ``ended`` data of each call, and Asterisk's own figures with the call they are for.

    Only the figures of a customer's own queue leg count (the channel of the call's first
    QueueCallerJoin), not those of a consultation leg queued by an agent. The flag says the
    call was put on hold: Asterisk's TalkTime runs on while the caller waits on hold alone in
    the bridge, which is not time bridged with an agent."""
    tracker = CallTracker()
    ended: dict[str, dict[str, Any]] = {}
    customer: dict[str, str] = {}
    held: set[str] = set()
    figures: list[tuple[str, dict[str, str]]] = []
    for event in read_events(trace):
        name = event.get("Event")
        linkedid = event.get("Linkedid", "")
        if name == "QueueCallerJoin":
            customer.setdefault(linkedid, event["Channel"])
        elif name == "Hold":
            held.add(tracker.call_id_for_uniqueid(event["Uniqueid"]) or linkedid)
        elif name in ("AgentComplete", "QueueCallerAbandon"):
            call = tracker.call_id_for_uniqueid(event["Uniqueid"])
            if call is not None and event["Channel"] == customer.get(linkedid):
                figures.append((call, event))
        for out in tracker.feed(event):
            if out.event == "ended":
                ended[out.call] = out.data
    return ended, [(call, ev, call in held) for call, ev in figures]


@pytest.mark.parametrize("trace", FIGURED, ids=lambda p: p.name)
def test_talk_and_wait_of_each_leg_agree_with_asterisks_own_figures(trace: Path) -> None:
    ended, figures = _replay(trace)
    assert figures, "no figures to compare with"
    answered: dict[tuple[str, str], int] = {}
    for call, event, held in figures:
        data = ended[call]
        queue = event["Queue"]
        if event["Event"] == "AgentComplete":
            talk = [leg for leg in data["talk_legs"] if leg["agent"] == event["MemberName"]]
            assert talk, f"{call}: no talk leg for {event['MemberName']}"
            talked = sum(leg["talk_s"] for leg in talk)
            if held:
                assert talked <= int(event["TalkTime"]) + 1.0, call
            else:
                assert talked == pytest.approx(int(event["TalkTime"]), abs=1.0), call
            legs = [
                leg
                for leg in data["queue_legs"]
                if leg["queue"] == queue and leg["result"] == "answered"
            ]
            nth = answered.get((call, queue), 0)
            answered[(call, queue)] = nth + 1
            assert legs[nth]["wait_s"] == pytest.approx(int(event["HoldTime"]), abs=1.0), call
        else:
            legs = [
                leg
                for leg in data["queue_legs"]
                if leg["queue"] == queue and leg["result"] in ("abandon", "redirect")
            ]
            assert len(legs) == 1, call
            assert legs[0]["wait_s"] == pytest.approx(int(event["HoldTime"]), abs=1.0), call


def test_the_burst_trace_compares_every_answered_and_abandoned_call() -> None:
    _, figures = _replay(ASTERISK22 / "burst_50_calls.ami")
    kinds = [event["Event"] for _, event, _ in figures]
    assert kinds.count("AgentComplete") == 37
    assert kinds.count("QueueCallerAbandon") == 13


def test_an_escalated_calls_talk_leaves_out_the_wait_in_the_next_tier() -> None:
    # Agent 1002 answers in tier1 and blind-transfers to tier2, where the caller waits 2 s for
    # Agent 2001: talk is the two bridged spells, the wait is both queues.
    ended, figures = _replay(ASTERISK22 / "blind_transfer_tier1_to_tier2.ami")
    (data,) = ended.values()
    talk_times = [int(ev["TalkTime"]) for _, ev, _ in figures if ev["Event"] == "AgentComplete"]
    assert [leg["agent"] for leg in data["talk_legs"]] == ["Agent 1002", "Agent 2001"]
    assert data["talk_s"] == pytest.approx(2.019 + 4.505, abs=0.01)
    assert data["talk_s"] == pytest.approx(sum(talk_times), abs=1.0)
    assert [leg["queue"] for leg in data["queue_legs"]] == ["tier1", "tier2"]
    assert data["wait_s"] == pytest.approx(2.004 + 2.021, abs=0.01)
    assert data["talk_s"] + data["wait_s"] < data["duration_s"]


class Sink:
    def __init__(self) -> None:
        self.records: list[InteractionRecord] = []

    def submit(self, record: InteractionRecord) -> None:
        self.records.append(record)


async def _record(trace: Path) -> tuple[InteractionRecord, list[Any]]:
    sink = Sink()
    calls = LiveCalls(recorder=sink, tiers_by_queue={"tier1": "T1", "tier2": "T2", "tier3": "T3"})
    tracker = CallTracker()
    seen = []
    for event in read_events(trace):
        for out in tracker.feed(event):
            seen.append(out)
            await calls.apply(out)
    await calls.close()
    (record,) = sink.records
    return record, seen


async def test_an_abandoned_calls_record_has_the_wait_the_abandoned_event_carried() -> None:
    record, seen = await _record(ASTERISK22 / "abandoned_in_queue.ami")
    (abandoned,) = [e for e in seen if e.event == "abandoned"]
    assert record.outcome == "abandoned"
    assert record.wait_s is not None
    assert record.wait_s == abandoned.data["wait_s"] == pytest.approx(4.0, abs=0.01)
    assert record.talk_s is None
    assert record.extra["queue_legs"] == [
        {
            "queue": "tier1",
            "tier": "T1",
            "wait_s": pytest.approx(4.0, abs=0.01),
            "result": "abandon",
            "uniqueid": "1795394572.9",  # the waiting channel: queue_log's callid
        }
    ]


async def test_an_escalated_calls_record_has_talk_and_wait_per_leg() -> None:
    record, _ = await _record(ASTERISK22 / "redirect_escalation.ami")
    assert record.talk_s == pytest.approx(5.49, abs=0.01)  # Asterisk's TalkTime: 6
    assert record.wait_s == pytest.approx(3.01 + 2.005, abs=0.01)
    assert [(leg["tier"], leg["result"]) for leg in record.extra["queue_legs"]] == [
        ("T1", "redirect"),
        ("T3", "answered"),
    ]
    assert record.extra["talk_legs"] == [
        {"agent": "Agent 3001", "queue": "tier3", "talk_s": pytest.approx(5.49, abs=0.01)}
    ]
