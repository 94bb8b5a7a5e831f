"""Ring-all on a real Asterisk 22: the phones that did not answer are told who did.

In ``agi_routed_vip_tier2`` tier2 rings 2001 and 2002 at once; 2001 answers. Asterisk sends
DialEnd ANSWER for 2001, DialEnd CANCEL (twice) for 2002, then AgentConnect: the CANCEL is
not the caller hanging up.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cti.calls import LiveCalls
from cti.config import AgentConfig
from cti.hub import PopHub, Subscription
from cti.replay import read_events
from cti.tracker import CallTracker

T21 = AgentConfig(name="Agent 2001", member="Agent 2001", interface="Local/2001@agents")
T22 = AgentConfig(name="Agent 2002", member="Agent 2002", interface="Local/2002@agents")


def drain(sub: Subscription) -> list[dict[str, Any]]:
    out = []
    while sub.pending():
        out.append(json.loads(sub._items.popleft().text))
    return out


def test_the_phone_cancelled_because_another_answered_stops_with_answered_elsewhere(
    traces_dir: Path,
) -> None:
    tracker = CallTracker()
    out = []
    for event in read_events(traces_dir / "asterisk22" / "agi_routed_vip_tier2.ami"):
        out.extend(e for e in tracker.feed(event) if e.event != "agent_state")
    stopped = [e for e in out if e.event == "ring_stopped"]
    assert len(stopped) == 1
    assert stopped[0].data["member"] == "Agent 2002"
    assert stopped[0].data["reason"] == "answered_elsewhere"
    assert stopped[0].data["answered_by"] == "Agent 2001"
    names = [e.event for e in out]
    assert names.index("ring_stopped") < names.index("answered")
    ended = out[-1]
    assert ended.data["summary"]["abandoned"] is False
    assert ended.data["hangup_by"] == "caller"


def test_a_caller_hanging_up_while_phones_ring_still_withdraws_with_cancel(
    traces_dir: Path,
) -> None:
    # The same recorded ring-all, cut where both phones ring; the caller hangs up instead.
    events = list(read_events(traces_dir / "asterisk22" / "agi_routed_vip_tier2.ami"))
    cut = next(
        i for i, e in enumerate(events) if e.get("DialStatus") == "ANSWER" and "Channel" in e
    )
    tracker = CallTracker()
    out = [o for e in events[:cut] for o in tracker.feed(e)]
    caller = next(e for e in events if e.get("Event") == "QueueCallerJoin")
    ts = float(events[cut]["Timestamp"])
    for dial in [e for e in events[:cut] if e.get("Event") == "DialBegin" and "Channel" in e]:
        end = {**dial, "Event": "DialEnd", "DialStatus": "CANCEL", "Timestamp": f"{ts:.6f}"}
        out.extend(tracker.feed(end))
    stopped = [e for e in out if e.event == "ring_stopped"]
    assert {e.data["member"] for e in stopped} == {"Agent 2001", "Agent 2002"}
    assert {e.data["reason"] for e in stopped} == {"cancel"}
    assert all("answered_by" not in e.data for e in stopped)
    assert caller["Queue"] == "tier2"


async def test_the_other_agents_desktop_says_who_answered_not_cancel(traces_dir: Path) -> None:
    hub = PopHub([T21, T22])
    first, second = hub.subscribe(T21), hub.subscribe(T22)
    calls = LiveCalls(tiers_by_queue={"tier2": "tier2"})
    tracker = CallTracker()
    for event in read_events(traces_dir / "asterisk22" / "agi_routed_vip_tier2.ami"):
        for out in tracker.feed(event):
            hub.publish(out, await calls.apply(out))
    await calls.close()
    withdrawn = [m for m in drain(second) if m["type"] == "withdrawn"]
    assert len(withdrawn) == 1
    assert withdrawn[0]["reason"] == "answered_elsewhere"
    assert withdrawn[0]["answered_by"] == "Agent 2001"
    assert "answered" in [m["type"] for m in drain(first)]
