"""The call tracker as the rest of the service sees it: the call events it emits."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from cti.tracker import SUMMARY_KEYS, CallTracker
from cti.tracker.events import CallEvent


def load(traces_dir: Path, name: str) -> list[dict[str, str]]:
    events: list[dict[str, str]] = json.loads(
        (traces_dir / "asterisk22" / f"{name}.json").read_text()
    )
    return events


def run(tracker: CallTracker, events: list[dict[str, str]]) -> list[CallEvent]:
    return [out for event in events for out in tracker.feed(event)]


def calls_only(events: list[CallEvent]) -> list[CallEvent]:
    return [e for e in events if e.event != "agent_state"]


def test_an_answered_queue_call_is_offered_queued_rung_answered_and_ended(
    traces_dir: Path,
) -> None:
    out = calls_only(run(CallTracker(), load(traces_dir, "answered_tier1")))
    assert [e.event for e in out] == ["offered", "queued", "ringing", "answered", "ended"]
    assert {e.call for e in out} == {"1795394556.0"}
    offered, queued, ringing, answered, ended = out
    assert offered.data["caller"] == "+442071234567"
    assert offered.data["channel"] == "Local/08005550100@from-pstn-00000000;1"
    assert offered.data["uniqueid"] == "1795394556.0"
    assert queued.data["queue"] == "tier1" and queued.data["position"] == 1
    assert ringing.data == {
        "member": "Agent 1001",
        "interface": "Local/1001@agents/n",
        "agent_channel": "Local/1001@agents-00000001;1",
        "queue": "tier1",
    }
    assert answered.data["agent"] == "Agent 1001"
    assert answered.data["queue"] == "tier1"
    assert answered.data["wait_s"] == pytest.approx(2.0, abs=0.1)
    assert ended.data["hangup_by"] == "caller"
    assert ended.ts == pytest.approx(1795394562.302, abs=0.01)  # from Timestamp, not a clock
    summary = ended.data["summary"]
    assert tuple(summary) == SUMMARY_KEYS
    assert summary["duration_s"] == pytest.approx(5.5, abs=0.1)


def test_lookups_follow_the_call_while_it_lives_and_forget_it_after(traces_dir: Path) -> None:
    events = load(traces_dir, "answered_tier1")
    tracker = CallTracker()
    answered_at = next(i for i, e in enumerate(events) if e["Event"] == "AgentConnect")
    run(tracker, events[:answered_at])
    assert tracker.call_id_for_uniqueid("1795394557.2") == "1795394556.0"
    assert tracker.call_id_for_channel("Local/1001@agents-00000001;1") == "1795394556.0"
    assert tracker.live_calls() == ["1795394556.0"]
    run(tracker, events[answered_at:])
    assert tracker.call_id_for_uniqueid("1795394557.2") is None
    assert tracker.live_calls() == []
    assert tracker.sizes == {"channels": 0, "bridges": 0, "calls": 0, "ended_ids": 1}


def test_a_caller_giving_up_in_the_queue_is_abandoned(traces_dir: Path) -> None:
    out = calls_only(run(CallTracker(), load(traces_dir, "abandoned_in_queue")))
    assert [e.event for e in out] == ["offered", "queued", "left_queue", "abandoned", "ended"]
    assert out[2].data["reason"] == "abandon"
    assert out[3].data["queue"] == "tier1"
    assert out[3].data["wait_s"] == pytest.approx(4.0, abs=0.2)
    assert out[-1].data["summary"]["abandoned"] is True


def test_a_redirect_out_of_the_queue_is_not_an_abandon(traces_dir: Path) -> None:
    out = calls_only(run(CallTracker(), load(traces_dir, "redirect_escalation")))
    left = [e for e in out if e.event == "left_queue"]
    assert [(e.data["queue"], e.data["reason"]) for e in left] == [("tier1", "redirect")]
    assert not [e for e in out if e.event == "abandoned"]
    assert [e.data["queue"] for e in out if e.event == "queued"] == ["tier1", "tier3"]


def test_a_phone_left_ringing_stops_with_ring_no_answer_in_seconds(traces_dir: Path) -> None:
    out = run(CallTracker(), load(traces_dir, "ring_no_answer_then_next"))
    stopped = [e for e in out if e.event == "ring_stopped"]
    assert [(e.data["member"], e.data["reason"]) for e in stopped] == [
        ("Agent 1003", "ring_no_answer")
    ]
    assert stopped[0].data["ring_s"] == pytest.approx(10.0, abs=1.0)  # RingTime was in ms
    rna = [e for e in out if e.event == "agent_state" and e.data["change"] == "ring_no_answer"]
    assert rna and rna[0].data["ring_no_answer"] == 1


def test_phones_still_ringing_when_another_answers_stop_once(traces_dir: Path) -> None:
    out = run(CallTracker(), load(traces_dir, "blind_transfer_tier1_to_tier2"))
    stopped = [e for e in out if e.event == "ring_stopped"]
    assert [(e.data["member"], e.data["reason"], e.data["answered_by"]) for e in stopped] == [
        ("Agent 2002", "answered_elsewhere", "Agent 2001")
    ]


def test_blind_transfer_names_the_agent_and_the_call_keeps_its_identity(
    traces_dir: Path,
) -> None:
    out = calls_only(run(CallTracker(), load(traces_dir, "blind_transfer_tier1_to_tier2")))
    (transfer,) = [e for e in out if e.event == "transferred"]
    assert transfer.data["kind"] == "blind"
    assert transfer.data["from"] == transfer.data["from_agent"] == "Agent 1002"
    assert transfer.data["to"] == "8002"
    answered = [e.data["agent"] for e in out if e.event == "answered"]
    assert answered == ["Agent 1002", "Agent 2001"]
    assert {e.call for e in out} == {"1795394598.16"}


def test_attended_transfer_finds_the_consulted_agent_through_the_bridges(
    traces_dir: Path,
) -> None:
    out = calls_only(run(CallTracker(), load(traces_dir, "attended_transfer_tier1_to_tier2")))
    (transfer,) = [e for e in out if e.event == "transferred"]
    assert transfer.data["kind"] == "attended"
    assert transfer.data["from"] == "Agent 1003"
    assert transfer.data["to"] == "Agent 2001"
    assert transfer.data["to_queue"] == "tier2"
    assert out[-1].data["summary"]["queues"] == ["tier1", "tier2"]


def test_agent_login_pause_and_logout_are_reported_as_they_change(traces_dir: Path) -> None:
    out = run(CallTracker(), load(traces_dir, "agent_login_pause"))
    agent_1004 = [e.data for e in out if e.data.get("member") == "Agent 1004"]
    assert [(d["change"], d["logged_in"], d["paused"], d["reason"]) for d in agent_1004] == [
        ("added", True, False, ""),
        ("pause", True, True, "lunch"),
        ("pause", True, False, ""),
        ("penalty", True, False, ""),
        ("removed", False, False, ""),
    ]
    assert agent_1004[3]["penalty"] == 2
    paused_1002 = [e.data for e in out if e.data.get("member") == "Agent 1002"]
    assert paused_1002[0]["reason"] == "training"
    assert calls_only(out) == []


def test_the_same_member_state_twice_is_reported_once() -> None:
    tracker = CallTracker()
    event = {
        "Event": "QueueMemberStatus",
        "Queue": "tier1",
        "MemberName": "Agent 1001",
        "Interface": "Local/1001@agents/n",
        "Status": "1",
        "Paused": "0",
    }
    assert len(tracker.feed(event)) == 1
    assert tracker.feed(event) == []
    assert tracker.feed({**event, "Status": "6"})[0].data["status"] == "ringing"


def test_caller_e164_comes_from_the_normaliser_given() -> None:
    seen: list[str] = []

    def normalise(number: str) -> str | None:
        seen.append(number)
        return "+44" + number.lstrip("0")

    tracker = CallTracker(normalise=normalise)
    out = run(tracker, _simple_call("02071234567"))
    assert out[0].event == "offered"
    assert out[0].data["caller_e164"] == "+442071234567"
    assert out[-1].data["summary"]["caller_e164"] == "+442071234567"


def test_a_normaliser_that_fails_gives_null_not_a_crash() -> None:
    def broken(number: str) -> str | None:
        raise ValueError("no region")

    out = run(CallTracker(normalise=broken), _simple_call("02071234567"))
    assert out[-1].data["summary"]["caller_e164"] is None


def test_region_uses_the_project_phone_normaliser() -> None:
    out = run(CallTracker(region="GB"), _simple_call("02071234567"))
    assert out[-1].data["summary"]["caller_e164"] == "+442071234567"


def _simple_call(number: str) -> list[dict[str, str]]:
    """SIP caller rings a SIP phone, which answers; the shape of cacofonisk's ab_success."""
    a = {"Channel": "SIP/trunk-00000001", "Uniqueid": "10.1", "Linkedid": "10.1"}
    b = {"Channel": "SIP/201-00000002", "Uniqueid": "10.2", "Linkedid": "10.1"}
    dest = {"DestChannel": b["Channel"], "DestUniqueid": "10.2", "DestLinkedid": "10.1"}
    return [
        {"Event": "Newchannel", **a, "CallerIDNum": number, "Timestamp": "100.0"},
        {"Event": "Newchannel", **b, "CallerIDNum": "<unknown>", "Timestamp": "100.1"},
        {"Event": "DialBegin", **a, **dest, "CallerIDNum": number, "Timestamp": "100.2"},
        {"Event": "DialEnd", **a, **dest, "DialStatus": "ANSWER", "Timestamp": "103.0"},
        {"Event": "BridgeEnter", **b, "BridgeUniqueid": "br-1", "Timestamp": "103.1"},
        {"Event": "BridgeEnter", **a, "BridgeUniqueid": "br-1", "Timestamp": "103.1"},
        {"Event": "BridgeLeave", **b, "BridgeUniqueid": "br-1", "Timestamp": "110.0"},
        {"Event": "BridgeLeave", **a, "BridgeUniqueid": "br-1", "Timestamp": "110.0"},
        {"Event": "Hangup", **a, "Cause": "16", "Timestamp": "110.1"},
        {"Event": "Hangup", **b, "Cause": "16", "Timestamp": "110.1"},
    ]


def test_a_direct_call_names_the_device_and_who_hung_up_by_bridge_order() -> None:
    out = calls_only(run(CallTracker(), _simple_call("+31260010001")))
    assert [e.event for e in out] == ["offered", "ringing", "answered", "ended"]
    assert out[1].data["interface"] == "SIP/201"
    summary = out[-1].data["summary"]
    assert summary["agents"] == ["SIP/201"]
    assert summary["hangup_by"] == "agent"  # B left the bridge first
    assert summary["wait_s"] == pytest.approx(2.9)
    assert summary["duration_s"] == pytest.approx(10.1)


@pytest.mark.parametrize(
    "event",
    [
        {},
        {"Event": "VarSet", "Variable": "X", "Value": "1"},
        {"Event": "Newexten"},
        {"Event": "SomethingNew", "Channel": "SIP/x-1"},
        {"Event": "Hangup"},
        {"Event": "Hangup", "Uniqueid": "nope", "Channel": "SIP/nope-1"},
        {"Event": "BridgeEnter", "Uniqueid": "nope"},
        {"Event": "BridgeLeave", "BridgeUniqueid": "b"},
        {"Event": "DialBegin", "DestUniqueid": "x"},
        {"Event": "DialEnd"},
        {"Event": "Newchannel", "Channel": "SIP/a-1"},  # no Uniqueid
        {"Event": "QueueCallerJoin", "Queue": "tier1"},
        {"Event": "QueueCallerAbandon"},
        {"Event": "AgentCalled", "MemberName": "x"},
        {"Event": "AgentComplete", "Queue": "tier1"},  # lacks channel fields under load
        {"Event": "AgentRingNoAnswer", "RingTime": "abc"},
        {"Event": "BlindTransfer", "Result": "Success"},
        {"Event": "AttendedTransfer", "Result": "Success"},
        {"Event": "QueueMemberPause", "Interface": "Local/1@a/n", "Penalty": "x"},
        {"Event": "NewCallerid", "Uniqueid": "x", "Timestamp": "not-a-number"},
    ],
)
def test_unknown_events_and_missing_headers_are_tolerated(event: dict[str, str]) -> None:
    tracker = CallTracker()
    assert [e for e in tracker.feed(event) if e.event != "agent_state"] == []
    assert tracker.live_calls() == []


def test_an_unknown_channel_is_logged_at_debug() -> None:
    with capture_logs() as logs:
        CallTracker().feed({"Event": "Hangup", "Uniqueid": "9.9", "Channel": "SIP/x-1"})
    assert [(log["event"], log["log_level"]) for log in logs] == [
        ("tracker.hangup_unknown_channel", "debug")
    ]


def test_events_shuffled_a_little_never_crash_and_calls_still_end(traces_dir: Path) -> None:
    events = load(traces_dir, "burst_50_calls")
    rng = random.Random(7)
    for i in range(0, len(events) - 1, 5):  # swap neighbours: out-of-order delivery
        if rng.random() < 0.3:
            events[i], events[i + 1] = events[i + 1], events[i]
    tracker = CallTracker()
    with capture_logs() as logs:
        out = run(tracker, events)
    assert not [log for log in logs if log["log_level"] != "debug"]
    ended = {e.call for e in out if e.event == "ended"}
    assert len(ended) >= 45
    assert tracker.sizes["channels"] <= 4


def test_memory_stays_flat_over_thousands_of_calls(traces_dir: Path) -> None:
    events = load(traces_dir, "answered_tier1")
    tracker = CallTracker(remember_ended=50)
    for rep in range(300):
        run(tracker, [_retag(e, rep) for e in events])
    assert tracker.sizes == {"channels": 0, "bridges": 0, "calls": 0, "ended_ids": 50}


def _retag(event: dict[str, str], rep: int) -> dict[str, Any]:
    return {
        k: (f"{rep}-{v}" if k.endswith(("Uniqueid", "Linkedid")) and v else v)
        for k, v in event.items()
    }


def test_late_events_of_an_ended_call_do_not_bring_it_back(traces_dir: Path) -> None:
    events = load(traces_dir, "answered_tier1")
    tracker = CallTracker()
    run(tracker, events)
    first = events[0]
    assert tracker.feed(first) == []
    assert tracker.live_calls() == []


def test_open_calls_are_summarised_at_the_end_of_a_cut_trace(traces_dir: Path) -> None:
    events = load(traces_dir, "answered_tier1")
    tracker = CallTracker()
    run(tracker, events[:140])
    (summary,) = tracker.open_summaries()
    assert tuple(summary) == SUMMARY_KEYS
    assert summary["agents"] == ["Agent 1001"]
    assert summary["duration_s"] is None


def _queue_call_with_local_optimisation() -> list[dict[str, str]]:
    """A queue member reached as Local/1001@agents (optimisable) dialling PJSIP/1001; the
    Local pair then optimises itself away (shape of cacofonisk's LocalOptimization traces)."""

    def chan(name: str, uid: str) -> dict[str, str]:
        return {"Channel": name, "Uniqueid": uid, "Linkedid": "20.1"}

    def dest(name: str, uid: str) -> dict[str, str]:
        return {"DestChannel": name, "DestUniqueid": uid, "DestLinkedid": "20.1"}

    trunk = chan("PJSIP/trunk-00000001", "20.1")
    l1 = chan("Local/1001@agents-00000001;1", "20.2")
    l2 = chan("Local/1001@agents-00000001;2", "20.3")
    phone = chan("PJSIP/1001-00000002", "20.4")
    member = {"Queue": "tier1", "MemberName": "Agent 1001", "Interface": "Local/1001@agents"}
    return [
        {"Event": "Newchannel", **trunk, "CallerIDNum": "+442071234567"},
        {"Event": "QueueCallerJoin", **trunk, "Queue": "tier1", "Position": "1"},
        {"Event": "Newchannel", **l1},
        {"Event": "Newchannel", **l2},
        {"Event": "AgentCalled", **trunk, **dest(l1["Channel"], "20.2"), **member},
        {"Event": "DialBegin", **trunk, **dest(l1["Channel"], "20.2")},
        {"Event": "Newchannel", **phone},
        {"Event": "DialBegin", **l2, **dest(phone["Channel"], "20.4")},
        {"Event": "DialEnd", **l2, **dest(phone["Channel"], "20.4"), "DialStatus": "ANSWER"},
        {"Event": "DialEnd", **trunk, **dest(l1["Channel"], "20.2"), "DialStatus": "ANSWER"},
        {"Event": "AgentConnect", **trunk, **dest(l1["Channel"], "20.2"), **member},
        {"Event": "BridgeEnter", **l1, "BridgeUniqueid": "b1"},
        {"Event": "BridgeEnter", **trunk, "BridgeUniqueid": "b1"},
        {"Event": "BridgeEnter", **phone, "BridgeUniqueid": "b2"},
        {"Event": "BridgeEnter", **l2, "BridgeUniqueid": "b2"},
        {"Event": "LocalBridge", "LocalOneChannel": l1["Channel"], "LocalOptimization": "Yes"},
        {"Event": "BridgeLeave", **phone, "BridgeUniqueid": "b2"},
        {"Event": "BridgeEnter", **phone, "BridgeUniqueid": "b1"},
        {"Event": "BridgeLeave", **l1, "BridgeUniqueid": "b1"},
        {"Event": "BridgeLeave", **l2, "BridgeUniqueid": "b2"},
        {"Event": "Hangup", **l1, "Cause": "16"},
        {"Event": "Hangup", **l2, "Cause": "16"},
        {"Event": "BridgeLeave", **phone, "BridgeUniqueid": "b1"},  # the agent hangs up
        {"Event": "BridgeLeave", **trunk, "BridgeUniqueid": "b1"},
        {"Event": "Hangup", **phone, "Cause": "16"},
        {"Event": "Hangup", **trunk, "Cause": "16"},
    ]


def test_local_channel_optimisation_keeps_the_member_as_one_agent() -> None:
    out = calls_only(run(CallTracker(), _queue_call_with_local_optimisation()))
    assert [e.event for e in out] == ["offered", "queued", "ringing", "answered", "ended"]
    summary = out[-1].data["summary"]
    assert summary["agents"] == ["Agent 1001"]
    assert summary["hangup_by"] == "agent"
    assert summary["queues"] == ["tier1"]
