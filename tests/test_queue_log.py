"""Asterisk's queue_log read as calls (``cti.queuelog.model``), and the simulator writing it.

The row shapes are those of ``apps/app_queue.c`` in Asterisk 22.10.1 (each ``ast_queue_log``
call) and of ``main/logger.c`` (the file's ``epoch|callid|queue|agent|event|data`` line, the
realtime table's data split over data1..data5).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from crm_core.types import InteractionRecord
from cti.calls import LiveCalls
from cti.queuelog.model import QueueLogRow, calls_from_rows, parse_line, settled
from cti.queuelog.sources import FileSource
from cti.replay import read_events
from cti.sim.queue_log import QueueLogFile
from cti.sim.scenarios import AgentBehaviour, CallerProfile, Dialplan
from cti.sim.simulator import AgentSpec, SimSettings, Simulator
from cti.tracker import CallTracker

RECORDINGS = Path(__file__).resolve().parent / "recordings" / "asterisk22"

# One answered call and one abandoned call as Asterisk 22 writes them (queue_log file),
# the first with the shipped dialplan's Linkedid row before Queue().
ANSWERED = """\
1795394556|1795394556.1|tier1|NONE|CTI_LINKEDID|1795394556.0
1795394556|1795394556.1|tier1|NONE|ENTERQUEUE||+442071234567|1
1795394557|1795394556.1|tier1|Agent 1001|RINGNOANSWER|1000
1795394559|1795394556.1|tier1|Agent 1002|CONNECT|3|1795394558.4|1
1795394583|1795394556.1|tier1|Agent 1002|COMPLETECALLER|3|24|1
"""
ABANDONED = """\
1795394572|1795394572.9|tier1|NONE|ENTERQUEUE||+442071234567|1
1795394576|1795394572.9|tier1|NONE|ABANDON|1|1|4
"""


def rows(text: str) -> list[QueueLogRow]:
    return [r for r in map(parse_line, text.splitlines()) if r is not None]


def test_an_answered_call_has_asterisks_hold_and_talk_time_and_the_agent_who_took_it() -> None:
    (call,) = calls_from_rows(rows(ANSWERED))
    assert call.call_id == "1795394556.0" and call.linked  # keyed as the interaction log is
    assert call.callids == ["1795394556.1"]
    assert call.caller == "+442071234567"
    assert (call.outcome, call.agents, call.queues) == ("answered", ["Agent 1002"], ["tier1"])
    assert (call.wait_s, call.talk_s) == (3.0, 24.0)
    assert (call.answered_at, call.ended_at, call.hangup_by) == (
        1795394559,
        1795394583,
        "caller",
    )
    assert call.legs[0].rung == ["Agent 1001"]


def test_an_abandoned_call_without_the_linkedid_row_stands_under_its_queue_callid() -> None:
    (call,) = calls_from_rows(rows(ABANDONED))
    assert (call.call_id, call.linked) == ("1795394572.9", False)
    assert (call.outcome, call.wait_s, call.talk_s, call.agents) == ("abandoned", 4.0, None, [])
    assert call.ended_at == 1795394576 and call.hangup_by == "caller"


def test_an_abandon_followed_by_another_queue_is_a_redirect_not_an_abandon() -> None:
    text = """\
100|1.1|tier1|NONE|ENTERQUEUE||+441|1
103|1.1|tier1|NONE|ABANDON|1|1|3
103|1.1|tier3|NONE|ENTERQUEUE||+441|1
105|1.1|tier3|Agent 3001|CONNECT|2|1.7|1
111|1.1|tier3|Agent 3001|COMPLETEAGENT|2|6|1
"""
    (call,) = calls_from_rows(rows(text))
    assert [leg.result for leg in call.legs] == ["redirect", "answered"]
    assert (call.outcome, call.agents, call.queues) == (
        "answered",
        ["Agent 3001"],
        ["tier1", "tier3"],
    )
    assert (call.wait_s, call.talk_s, call.hangup_by) == (5.0, 6.0, "agent")


def test_a_call_is_settled_only_when_nothing_was_logged_for_a_while_after_its_end() -> None:
    text = "100|1.1|tier1|NONE|ENTERQUEUE||+441|1\n103|1.1|tier1|NONE|ABANDON|1|1|3\n"
    (call,) = calls_from_rows(rows(text))
    assert not settled(call, 104.0, 3.0)  # a Redirect logs ABANDON, then ENTERQUEUE
    assert settled(call, 106.0, 3.0)
    (waiting,) = calls_from_rows(rows(text.splitlines()[0]))
    assert waiting.open and not settled(waiting, 1e10, 3.0)


def test_an_attended_transfers_consultation_is_one_call_with_the_caller() -> None:
    """The consultation is a Local channel of its own in tier2 (its own callid), grouped by
    the Linkedid row; its wait (the caller on hold with an agent) is not the caller's."""
    text = """\
100|1.1|tier1|NONE|CTI_LINKEDID|1.0
100|1.1|tier1|NONE|ENTERQUEUE||+441|1
102|1.1|tier1|Agent 1001|CONNECT|2|1.3|1
110|1.5|tier2|NONE|CTI_LINKEDID|1.0
110|1.5|tier2|NONE|ENTERQUEUE||+441|1
112|1.5|tier2|Agent 2001|CONNECT|2|1.7|1
114|1.1|tier1|Agent 1001|ATTENDEDTRANSFER|BRIDGE|b-1|2|12|1
130|1.5|tier2|Agent 2001|COMPLETECALLER|2|18|1
"""
    (call,) = calls_from_rows(rows(text))
    assert call.call_id == "1.0" and call.callids == ["1.1", "1.5"]
    assert call.agents == ["Agent 1001", "Agent 2001"]
    assert call.wait_s == 2.0
    assert call.talk_s == 30.0
    assert call.transfers == [{"kind": "attended", "from": "Agent 1001"}]
    assert call.ended_at == 130


def test_a_realtime_tables_rows_give_spans_to_the_microsecond() -> None:
    """The table's data split over data1..data5; its times finer than Asterisk's seconds."""
    table = [
        QueueLogRow(100.2, "1.1", "tier1", "NONE", "ENTERQUEUE", ("", "+441", "1", "", "")),
        QueueLogRow(102.9, "1.1", "tier1", "Agent 1", "CONNECT", ("2", "1.3", "1", "", "")),
        QueueLogRow(110.1, "1.1", "tier1", "Agent 1", "COMPLETEAGENT", ("2", "7", "1", "", "")),
    ]
    (call,) = calls_from_rows(table, fine=True)
    assert call.wait_s == pytest.approx(2.7) and call.talk_s == pytest.approx(7.2)


async def test_the_simulator_writes_the_queue_log_asterisk_would_for_its_calls(
    tmp_path: Path,
) -> None:
    """Calls answered, abandoned, escalated by a Redirect: read back from the simulator's
    queue_log, each has the outcome, queues, agent, wait and talk the simulator knows."""
    path = tmp_path / "queue_log"
    sim = Simulator(
        SimSettings(
            dialplan=Dialplan(agi_host=None),
            behaviour=AgentBehaviour(
                ring_s=(1.0, 3.0),
                miss_rate=0.2,
                talk_s=(5.0, 15.0),
                endings={"caller": 0.5, "agent": 0.5},
            ),
            agents=[
                AgentSpec(f"Agent {n}", f"Local/{n}@agents/n", ("tier1",)) for n in (1001, 1002)
            ],
            time_scale=0.05,
            seed=3,
            queue_log=QueueLogFile(path),
        )
    )
    await sim.start()
    try:
        patient = CallerProfile("known", ("+442071234567",), patience_s=(60.0, 60.0))
        impatient = CallerProfile("known", ("+447700900456",), patience_s=(2.0, 6.0))
        tasks = [
            sim.place_call(patient, "+442071234567")
            if i % 3
            else sim.place_call(impatient, "+447700900456")
            for i in range(12)
        ]
        await asyncio.gather(*tasks)
    finally:
        await sim.stop()
    source = FileSource(path)
    written = await source.read(0.0)
    # Each row shaped as Asterisk 22.10.1 wrote the same event (tests/recordings/asterisk22):
    # as many data fields, the agent field NONE or the member's name alike.
    real = {
        r.event: (len(r.data), r.agent == "NONE")
        for name in ("queue_log_answered", "queue_log_abandoned")
        for r in rows((RECORDINGS / f"{name}.queue_log").read_text())
    }
    real["COMPLETECALLER"] = real["COMPLETEAGENT"]
    shaped = [r for r in written if r.event in real]
    assert {r.event for r in shaped} >= {"ENTERQUEUE", "CONNECT", "ABANDON", "COMPLETECALLER"}
    for r in shaped:
        assert (len(r.data), r.agent == "NONE") == real[r.event], r
    calls = {c.call_id: c for c in calls_from_rows(written)}
    assert len(calls) == len(sim.summaries) == 12
    for truth in sim.summaries:
        call = calls[truth.call_id]
        assert call.linked
        assert call.outcome == ("answered" if truth.agents else "abandoned"), truth
        assert (call.agents, call.queues) == (truth.agents, truth.queues)
        # Whole seconds: each figure within 1 s (2 s of simulated time at this scale: 0.1 s).
        assert call.wait_s == pytest.approx(truth.queued_s, abs=1.0)
        if truth.agents:
            assert call.talk_s == pytest.approx(truth.talk_s, abs=1.0)


class _Sink:
    def __init__(self) -> None:
        self.records: list[InteractionRecord] = []

    def submit(self, record: InteractionRecord) -> None:
        self.records.append(record)


async def _tracker_record(trace: Path) -> InteractionRecord:
    sink = _Sink()
    calls = LiveCalls(recorder=sink, tiers_by_queue={"tier1": "T1"})
    tracker = CallTracker()
    for event in read_events(trace):
        for out in tracker.feed(event):
            await calls.apply(out)
    await calls.close()
    (record,) = sink.records
    return record


@pytest.mark.parametrize("name", ["queue_log_answered", "queue_log_abandoned"])
async def test_asterisk_22s_own_queue_log_tells_the_call_as_the_tracker_saw_it(name: str) -> None:
    """Recorded on Asterisk 22.10.1 with the shipped dialplan: the queue_log lines of a call
    answered by an agent who hangs up, and of a caller who gives up while a phone rings, say
    what the tracker, fed every AMI event of the same call, recorded (whole seconds: 1 s)."""
    text = (RECORDINGS / f"{name}.queue_log").read_text()
    events = [r.event for r in rows(text)]
    (call,) = calls_from_rows(rows(text))
    record = await _tracker_record(RECORDINGS / f"{name}.ami")
    assert call.linked and call.call_id == record.call_id  # the dialplan's Linkedid row
    assert call.caller == record.caller == "+442071234567"
    assert (call.outcome, call.agents, call.queues) == (
        record.outcome,
        list(record.agents),
        list(record.queues),
    )
    assert call.wait_s == pytest.approx(record.wait_s, abs=1.0)
    assert record.ended_at is not None and call.ended_at is not None
    assert call.ended_at == pytest.approx(record.ended_at.timestamp(), abs=1.0)
    if name == "queue_log_answered":
        assert events == ["CTI_LINKEDID", "ENTERQUEUE", "CONNECT", "COMPLETEAGENT"]
        assert call.talk_s == pytest.approx(record.talk_s, abs=1.0)
        assert call.hangup_by == "agent"
    else:
        assert events == ["CTI_LINKEDID", "ENTERQUEUE", "RINGCANCELED", "ABANDON"]
        assert call.talk_s is None and record.talk_s is None
        assert call.hangup_by == "caller"


async def test_a_large_queue_log_file_is_read_from_the_moment_asked_not_from_its_start(
    tmp_path: Path,
) -> None:
    """Years of queue_log on disk: a daemon starting reads from ``since`` on (a bisection
    over the time-ordered lines), then only what is appended."""
    path = tmp_path / "queue_log"
    lines = [f"{1_700_000_000 + i}|{i}.1|tier1|NONE|ENTERQUEUE||+441|1" for i in range(20000)]
    path.write_text("\n".join(lines) + "\n")
    source = FileSource(path)
    got = await source.read(1_700_019_990.0)
    assert [r.callid for r in got] == [f"{i}.1" for i in range(19990, 20000)]
    assert source.bytes_read < path.stat().st_size / 10  # not the whole file
    with path.open("a") as f:
        f.write("1700020000|20000.1|tier1|NONE|ENTERQUEUE||+441|1\n1700020001|20000.1|tier1")
    got = await source.read(1_700_019_990.0)
    assert got[-1].callid == "20000.1" and len(got) == 11  # the half-written line waits
