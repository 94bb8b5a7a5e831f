"""After a reconnect the tracker rebuilds its picture from Asterisk 22's own lists."""

from __future__ import annotations

import json
from pathlib import Path

from cti.ami.wire import AmiParser
from cti.tracker import CallTracker
from cti.tracker.events import CallEvent


def resync_items(protocol_dir: Path) -> list[dict[str, str]]:
    """The list items a CTI got on a second connection while three calls were up."""
    records = json.loads((protocol_dir / "resync_mid_call.json").read_text())
    parser = AmiParser()
    msgs: list[dict[str, str]] = []
    for rec in records:
        if rec["dir"] == "recv":
            msgs += parser.feed(rec["data"].encode())
    return [m for m in msgs if "Event" in m and not m["Event"].endswith("Complete")]


def by_call(events: list[CallEvent]) -> dict[str, list[CallEvent]]:
    out: dict[str, list[CallEvent]] = {}
    for ev in events:
        if ev.event != "agent_state":
            out.setdefault(ev.call, []).append(ev)
    return out


def test_a_fresh_tracker_adopts_every_call_as_the_lists_show_it(protocol_dir: Path) -> None:
    tracker = CallTracker()
    events = tracker.resync(resync_items(protocol_dir))
    calls = by_call(events)
    assert sorted(calls) == ["1795396314.0", "1795396316.4", "1795396316.6"]

    talking = calls["1795396314.0"]
    assert [e.event for e in talking] == ["offered", "answered"]
    assert talking[0].data["caller"] == "+442071234567"
    assert talking[1].data["agent"] == "Agent 1001"
    assert all(e.data["resynced"] is True for e in talking)

    waiting = calls["1795396316.4"]
    assert [e.event for e in waiting] == ["offered", "queued"]
    assert waiting[1].data["queue"] == "tier1"
    assert waiting[0].data["caller"] == "+441632960001"
    assert calls["1795396316.6"][1].data["queue"] == "tier2"

    assert tracker.call_id_for_channel("Local/1001@agents-00000001;1") == "1795396314.0"
    assert tracker.call_id_for_uniqueid("1795396316.7") == "1795396316.6"
    assert sorted(tracker.live_calls()) == sorted(calls)


def test_member_states_come_from_queue_status(protocol_dir: Path) -> None:
    tracker = CallTracker()
    events = tracker.resync(resync_items(protocol_dir))
    states = {
        (e.data["queue"], e.data["member"]): e.data for e in events if e.event == "agent_state"
    }
    assert states[("tier1", "Agent 1002")]["paused"] is True
    assert states[("tier1", "Agent 1002")]["reason"] == "break"
    assert states[("tier2", "Agent 2001")]["reason"] == "meeting"
    assert states[("tier1", "Agent 1001")]["in_call"] is True
    assert states[("tier3", "Agent 3001")]["paused"] is False


def test_the_same_lists_again_report_nothing(protocol_dir: Path) -> None:
    tracker = CallTracker()
    items = resync_items(protocol_dir)
    tracker.resync(items)
    assert tracker.resync(items) == []


def test_calls_whose_channels_vanished_end_by_system_and_say_so(protocol_dir: Path) -> None:
    tracker = CallTracker()
    tracker.resync(resync_items(protocol_dir))
    events = tracker.resync([])
    ended = {e.call: e.data for e in events if e.event == "ended"}
    assert sorted(ended) == ["1795396314.0", "1795396316.4", "1795396316.6"]
    for data in ended.values():
        assert data["resynced"] is True
        assert data["hangup_by"] == "system"
        assert data["summary"]["hangup_by"] == "system"
    assert ended["1795396314.0"]["summary"]["agents"] == ["Agent 1001"]
    assert tracker.live_calls() == []
    assert tracker.sizes["channels"] == 0


def test_a_call_followed_live_then_gone_after_reconnect_ends_once(traces_dir: Path) -> None:
    events = json.loads((traces_dir / "asterisk22" / "answered_tier1.json").read_text())
    answered_at = next(i for i, e in enumerate(events) if e["Event"] == "BridgeEnter") + 2
    tracker = CallTracker()
    for event in events[:answered_at]:
        tracker.feed(event)
    assert tracker.live_calls() == ["1795394556.0"]

    out = tracker.resync([])  # the call ended while the link was down
    ended = [e for e in out if e.event == "ended"]
    assert len(ended) == 1
    summary = ended[0].data["summary"]
    assert summary["agents"] == ["Agent 1001"]
    assert summary["hangup_by"] == "system"
    assert summary["duration_s"] is not None

    for event in events[answered_at:]:  # late events of the ended call resurrect nothing
        assert [e for e in tracker.feed(event) if e.event != "agent_state"] == []
    assert tracker.live_calls() == []


def test_a_call_still_up_after_reconnect_is_not_reported_again(traces_dir: Path) -> None:
    events = json.loads((traces_dir / "asterisk22" / "answered_tier1.json").read_text())
    answered_at = next(i for i, e in enumerate(events) if e["Event"] == "BridgeEnter") + 2
    tracker = CallTracker()
    for event in events[:answered_at]:
        tracker.feed(event)
    alive = [
        {
            "Event": "CoreShowChannel",
            "Channel": chan.name,
            "Uniqueid": uid,
            "Linkedid": chan.linkedid,
            "BridgeId": chan.bridge or "",
        }
        for uid, chan in tracker.channels.items()
    ]
    assert tracker.resync(alive) == []
    rest = [e for ev in events[answered_at:] for e in tracker.feed(ev)]
    assert [e.event for e in rest if e.event != "agent_state"] == ["ended"]


def test_queue_items_without_a_channel_list_end_nothing(traces_dir: Path) -> None:
    events = json.loads((traces_dir / "asterisk22" / "answered_tier1.json").read_text())
    tracker = CallTracker()
    for event in events[:60]:
        tracker.feed(event)
    entry = {"Event": "QueueEntry", "Queue": "tier1", "Uniqueid": "1795394556.1", "Position": "1"}
    bridged = {
        "Event": "BridgeInfoChannel",
        "BridgeUniqueid": "some-other-bridge",
        "Uniqueid": "1795394556.1",
    }
    assert [e for e in tracker.resync([entry, bridged]) if e.event == "ended"] == []
    assert tracker.live_calls() == ["1795394556.0"]
    assert tracker.channels["1795394556.1"].bridge is None  # partial lists move nothing


LISTED_AT = 1795396320.130229  # the wall clock of resync_mid_call's t=0: Asterisk's "now"


def test_an_adopted_call_is_dated_from_asterisks_durations_and_says_they_are_estimates(
    protocol_dir: Path,
) -> None:
    tracker = CallTracker()
    calls = by_call(tracker.resync(resync_items(protocol_dir), now=LISTED_AT))
    offered, answered = calls["1795396314.0"]
    assert offered.ts == LISTED_AT - 5  # the caller's channel: Duration 00:00:05
    assert answered.ts == LISTED_AT - 5  # no earlier than the AppQueue leg (00:00:05)
    assert set(answered.data["estimated"]) == {"started_at", "answered_at"}
    waiting = calls["1795396316.4"]
    assert waiting[0].ts == LISTED_AT - 4 and waiting[1].data["wait_s"] == 4.0


def test_what_was_known_before_wins_and_known_agents_are_not_answered_again(
    protocol_dir: Path,
) -> None:
    known = {
        "1795396314.0": {
            "started_at": LISTED_AT - 30.0,
            "offered_at": LISTED_AT - 29.0,
            "answered_at": LISTED_AT - 20.0,
            "queues": ["tier1"],
            "agents": ["Agent 1001"],
        }
    }
    tracker = CallTracker()
    talking = by_call(tracker.resync(resync_items(protocol_dir), now=LISTED_AT, known=known))[
        "1795396314.0"
    ]
    assert [e.event for e in talking] == ["offered"]
    assert talking[0].ts == LISTED_AT - 29.0
    ended = [e for e in tracker.resync([], now=LISTED_AT + 10) if e.call == "1795396314.0"]
    data = ended[-1].data
    assert data["talk_s"] == 30.0 and data["summary"]["wait_s"] == 9.0
    assert data["summary"]["queues"] == ["tier1"] and data["summary"]["agents"] == ["Agent 1001"]


def test_calls_gone_while_the_link_was_down_end_when_it_was_lost_marked_estimated(
    traces_dir: Path,
) -> None:
    events = json.loads((traces_dir / "asterisk22" / "answered_tier1.json").read_text())
    answered_at = next(i for i, e in enumerate(events) if e["Event"] == "BridgeEnter") + 2
    tracker = CallTracker()
    for event in events[:answered_at]:
        tracker.feed(event)
    assert tracker.last_ts is not None
    lost = tracker.last_ts + 3.0
    out = tracker.resync([], now=lost + 5.0, lost_at=lost)
    ended = next(e for e in out if e.event == "ended")
    assert ended.ts == lost and ended.data["end_estimated"] is True
    assert ended.data["talk_s"] is not None and ended.data["talk_s"] >= 3.0


def test_a_call_first_seen_mid_way_is_adopted_from_its_first_event_and_ends(
    traces_dir: Path,
) -> None:
    events = json.loads((traces_dir / "asterisk22" / "answered_tier1.json").read_text())
    cut = next(i for i, e in enumerate(events) if e["Event"] == "AgentConnect") + 1
    tracker = CallTracker()  # started after the call
    out = [ev for e in events[cut:] for ev in tracker.feed(e) if ev.event != "agent_state"]
    assert out[0].event == "offered" and out[0].data["midway"] is True
    ended = [e for e in out if e.event == "ended"]
    assert len(ended) == 1 and ended[0].data["midway"] is True
    assert tracker.live_calls() == []
