"""Statistics on recorded real Asterisk 22 traffic agree with what Asterisk itself counts.

Asterisk's own per-queue accounting (what it writes to ``queue_log``) is in the traces as AMI
events: ``QueueCallerJoin`` (ENTERQUEUE: offered), ``AgentConnect`` (CONNECT, with
``HoldTime``), ``AgentComplete`` (COMPLETEAGENT/COMPLETECALLER, with ``HoldTime`` and
``TalkTime``) and ``QueueCallerAbandon`` (ABANDON). Asterisk counts whole seconds of its
clock: a hold time is ``int(connect) - int(join)``, and so is ours to compare.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from cti.replay import read_events, replay
from cti.stats.figures import Thresholds, grouped
from cti.stats.legs import Leg, LegBook
from cti.tracker import CallTracker

TRACES = Path(__file__).resolve().parent.parent.parent / "shared" / "ami-traces" / "asterisk22"
TIERS = {"tier1": "tier1", "tier2": "tier2", "tier3": "tier3"}

# Where we count differently from Asterisk, on purpose (see the tests below).
ASTERISK_AGREES = [
    "abandoned_in_queue",
    "agi_routed_vip_tier2",
    "anonymous_caller",
    "answered_agent_hangup",
    "answered_tier1",
    "blind_transfer_tier1_to_tier2",
    "burst_50_calls",
    "ring_no_answer_then_next",
]


def legs_of(name: str) -> list[Leg]:
    book = LegBook(TIERS)
    legs: list[Leg] = []
    for event in replay(TRACES / f"{name}.ami", CallTracker()):
        legs.extend(book.feed(event))
    legs.extend(book.live_legs())
    return legs


def asterisk_counts(name: str) -> dict[str, Counter[str]]:
    """Per queue, what Asterisk counted, and its hold and talk times (whole seconds)."""
    out: dict[str, Counter[str]] = {
        k: Counter() for k in ("offered", "answered", "abandoned", "hold", "talk")
    }
    for ev in read_events(TRACES / f"{name}.ami"):
        kind, queue = ev["Event"], ev.get("Queue", "")
        if kind == "QueueCallerJoin":
            out["offered"][queue] += 1
        elif kind == "AgentConnect":
            out["answered"][queue] += 1
            out["hold"][f"{queue}:{ev['HoldTime']}"] += 1
        elif kind == "AgentComplete":
            out["talk"][f"{queue}:{ev['TalkTime']}"] += 1
        elif kind == "QueueCallerAbandon":
            out["abandoned"][queue] += 1
    return out


def our_counts(legs: list[Leg]) -> dict[str, Counter[str]]:
    out: dict[str, Counter[str]] = {
        k: Counter() for k in ("offered", "answered", "abandoned", "hold", "talk")
    }
    for leg in legs:
        out["offered"][leg.queue] += 1
        if leg.answered_at is not None:
            out["answered"][leg.queue] += 1
            out["hold"][f"{leg.queue}:{int(leg.answered_at) - int(leg.joined_at)}"] += 1
            if leg.ended_at is not None:
                out["talk"][f"{leg.queue}:{int(leg.ended_at) - int(leg.answered_at)}"] += 1
        elif leg.outcome == "abandoned":
            out["abandoned"][leg.queue] += 1
    return out


@pytest.mark.parametrize("name", ASTERISK_AGREES)
def test_offered_answered_abandoned_hold_and_talk_agree_with_asterisk(name: str) -> None:
    if not (TRACES / f"{name}.ami").exists():
        pytest.skip("recorded traffic not found beside the checkout")
    ours, theirs = our_counts(legs_of(name)), asterisk_counts(name)
    for figure in ("offered", "answered", "abandoned", "hold", "talk"):
        assert ours[figure] == theirs[figure], figure


def test_the_burst_of_50_calls_gives_asteriskss_totals_per_queue() -> None:
    if not (TRACES / "burst_50_calls.ami").exists():
        pytest.skip("recorded traffic not found beside the checkout")
    theirs = asterisk_counts("burst_50_calls")
    by_queue = grouped(legs_of("burst_50_calls"), "queue", Thresholds(default_s=20.0))
    for queue, fig in by_queue.items():
        assert fig.offered == theirs["offered"][queue]
        assert fig.answered == theirs["answered"][queue]
        assert fig.abandoned + fig.short_abandoned == theirs["abandoned"][queue]
    assert sum(f.offered for f in by_queue.values()) == sum(theirs["offered"].values()) > 40


def test_a_redirect_out_of_tier1_is_an_escalation_where_asterisk_says_abandon() -> None:
    """Asterisk logs ABANDON (QueueCallerAbandon) when a Redirect takes the caller out of the
    queue; the caller did not hang up, they went on to tier 3. We count the tier-1 leg as left
    unanswered and escalated (it stays in tier 1's service-level denominator)."""
    if not (TRACES / "redirect_escalation.ami").exists():
        pytest.skip("recorded traffic not found beside the checkout")
    theirs = asterisk_counts("redirect_escalation")
    assert theirs["abandoned"] == Counter({"tier1": 1})
    legs = legs_of("redirect_escalation")
    tier1, tier3 = legs
    assert (tier1.queue, tier1.outcome, tier1.exit) == ("tier1", "left", "escalation")
    assert (tier3.queue, tier3.outcome, tier3.agent) == ("tier3", "answered", "Agent 3001")
    ours = our_counts(legs)
    assert ours["offered"] == theirs["offered"]
    assert ours["answered"] == theirs["answered"]
    assert ours["hold"] == theirs["hold"] and ours["talk"] == theirs["talk"]
    by_tier = grouped(legs, "tier", Thresholds())
    assert by_tier["tier1"].service_level == 0.0 and by_tier["tier1"].escalations_out == 1


def test_an_attended_transfer_counts_the_callers_wait_in_tier2_not_the_consultation() -> None:
    """Asterisk counts tier 2's hold and talk from the consultation: agent 1003 waited in
    tier 2 (HoldTime 2) with the caller on hold. For the caller the tier-2 leg starts when the
    consultation joined tier 2 and is answered when they are bridged to agent 2001."""
    if not (TRACES / "attended_transfer_tier1_to_tier2.ami").exists():
        pytest.skip("recorded traffic not found beside the checkout")
    theirs = asterisk_counts("attended_transfer_tier1_to_tier2")
    legs = legs_of("attended_transfer_tier1_to_tier2")
    tier1, tier2 = legs
    ours = our_counts(legs)
    assert ours["offered"] == theirs["offered"] == Counter({"tier1": 1, "tier2": 1})
    assert ours["answered"] == theirs["answered"]
    assert ours["hold"]["tier1:2"] == theirs["hold"]["tier1:2"] == 1
    assert ours["talk"]["tier1:7"] == theirs["talk"]["tier1:7"] == 1
    assert theirs["hold"]["tier2:2"] == 1 and ours["hold"]["tier2:5"] == 1
    assert (tier1.agent, tier1.exit, tier2.agent) == ("Agent 1003", "escalation", "Agent 2001")
