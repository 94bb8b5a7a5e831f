"""A call recovered from queue_log has the statistics legs the tracker's events would have given
it (``LegBook``'s rules), with Asterisk's own hold and talk times, and what queue_log does not
say (hold, wrap-up) not known rather than 0."""

from __future__ import annotations

from pathlib import Path

import pytest

from cti.queuelog.legs import answers_as_logged, queue_log_legs
from cti.queuelog.model import QueueLogRow, calls_from_rows, parse_line
from cti.replay import replay
from cti.stats.figures import Thresholds, figures
from cti.stats.legs import Leg, LegBook
from cti.tracker import CallTracker

RECORDINGS = Path(__file__).resolve().parent / "recordings" / "asterisk22"
TIERS = {"tier1": "T1", "tier2": "T2"}


def rows(text: str) -> list[QueueLogRow]:
    return [r for r in map(parse_line, text.splitlines()) if r is not None]


def legs_from_queue_log(text: str) -> list[Leg]:
    (call,) = calls_from_rows(rows(text))
    return queue_log_legs(call, TIERS)


def legs_from_ami(trace: Path) -> list[Leg]:
    book = LegBook(TIERS)
    legs: list[Leg] = []
    for event in replay(trace, CallTracker()):
        legs.extend(book.feed(event))
    return legs


def told(text: str, event: str, index: int) -> int:
    """A whole-second figure Asterisk wrote on the row of ``event``."""
    row = next(r for r in rows(text) if r.event == event)
    return int(row.fields()[index])


@pytest.mark.parametrize("name", ["queue_log_answered", "queue_log_abandoned"])
def test_asterisk_22s_queue_log_gives_the_legs_the_tracker_gave_the_same_call(name: str) -> None:
    """Recorded on Asterisk 22.10.1: the legs made of a call's queue_log lines are those made of
    its AMI events (same call, queue, tier, agent, outcome, exit), with Asterisk's figures."""
    text = (RECORDINGS / f"{name}.queue_log").read_text()
    (got,) = legs_from_queue_log(text)
    (seen,) = legs_from_ami(RECORDINGS / f"{name}.ami")
    same = ("call_id", "seq", "queue", "tier", "agent", "outcome", "exit", "caller", "direction")
    assert {k: getattr(got, k) for k in same} == {k: getattr(seen, k) for k in same}
    assert got.joined_at == pytest.approx(seen.joined_at, abs=1.0)
    assert got.wait_s == pytest.approx(seen.wait_s, abs=1.0)
    if name == "queue_log_answered":
        assert got.wait_s == told(text, "CONNECT", 0)  # Asterisk's hold time, exactly
        assert got.talk_s == told(text, "COMPLETEAGENT", 1)  # and its talk time
        assert seen.talk_s is not None and got.talk_s == pytest.approx(seen.talk_s, abs=1.0)
    else:
        assert got.wait_s == told(text, "ABANDON", 2)
        assert got.talk_s is None
    # Not in queue_log: not known, where the tracker measured them.
    assert (got.hold_s, got.wrap_s) == (None, None)
    assert (seen.hold_s, seen.wrap_s) == (0.0, 0.0)


# Tier 1 times out into tier 2 (the dialplan's escalation: an ABANDON then the next
# ENTERQUEUE is a Redirect), answered there, blind-transferred to tier 1, answered, completed.
ESCALATED = """\
1000|100.1|tier1|NONE|CTI_LINKEDID|100.0
1000|100.1|tier1|NONE|ENTERQUEUE||+442071234567|1
1030|100.1|tier1|NONE|ABANDON|1|1|30
1030|100.1|tier2|NONE|ENTERQUEUE||+442071234567|1
1034|100.1|tier2|Agent 2001|CONNECT|4|100.5|3
1094|100.1|tier2|Agent 2001|BLINDTRANSFER|700|agents|4|60|1
1094|100.1|tier1|NONE|ENTERQUEUE||+442071234567|1
1096|100.1|tier1|Agent 1001|CONNECT|2|100.9|2
1136|100.1|tier1|Agent 1001|COMPLETECALLER|2|40|1
"""


def test_an_escalated_and_transferred_call_has_a_leg_per_queue_stay_as_legbook_counts_them() -> (
    None
):
    legs = legs_from_queue_log(ESCALATED)
    assert [(leg.queue, leg.tier, leg.outcome, leg.agent, leg.exit) for leg in legs] == [
        ("tier1", "T1", "left", None, "escalation"),  # redirected to tier 2: not an abandon
        ("tier2", "T2", "answered", "Agent 2001", "escalation"),  # transferred to tier 1
        ("tier1", "T1", "answered", "Agent 1001", None),
    ]
    assert [leg.wait_s for leg in legs] == [30.0, 4.0, 2.0]
    assert [leg.talk_s for leg in legs] == [None, 60.0, 40.0]
    assert all(leg.call_id == "100.0" and leg.caller == "+442071234567" for leg in legs)
    assert [leg.seq for leg in legs] == [0, 1, 2]


def test_figures_of_recovered_legs_leave_unknown_hold_and_wrap_up_out_of_their_means() -> None:
    seen = legs_from_ami(RECORDINGS / "queue_log_answered.ami")
    text = (RECORDINGS / "queue_log_answered.queue_log").read_text().replace("1796301869.", "9.")
    recovered = legs_from_queue_log(text)
    both = figures([*seen, *recovered], Thresholds())
    assert (both.offered, both.answered) == (2, 2)
    assert both.avg_hold_s == 0.0  # the seen call's hold only, not (0 + 0) / 2 made up
    assert seen[0].talk_s is not None and both.aht_s == pytest.approx(seen[0].talk_s, abs=0.01)


# A call rung at 100, answered by Agent 1001 after 7 s in the queue (3 s of them ringing),
# talking 20 s; a daemon down meanwhile estimated its answer at the ring's start (104).
ANSWERED_UNSEEN = """\
100|9.1|tier1|NONE|CTI_LINKEDID|9.0
100|9.1|tier1|NONE|ENTERQUEUE||+442071234567|1
107|9.1|tier1|Agent 1001|CONNECT|7|9.4|3
127|9.1|tier1|Agent 1001|COMPLETECALLER|7|20|1
"""


def test_a_live_leg_whose_answer_was_estimated_is_answered_when_queue_log_says() -> None:
    (call,) = calls_from_rows(rows(ANSWERED_UNSEEN))
    live = Leg("9.0", 0, "tier1", "T1", 100.4, agent="Agent 1001", answered_at=104.4)
    live.ended_at, live.outcome, live.wrap_s, live.hold_s = 127.4, "answered", 5.0, 2.0
    (fixed,) = answers_as_logged([live], call, joined=False)
    assert fixed.joined_at == 100.4 and fixed.wait_s == 7.0  # seen joining: kept
    assert (fixed.ended_at, fixed.wrap_s, fixed.hold_s) == (127.4, 5.0, 2.0)  # seen: kept
    assert live.answered_at == 104.4  # a copy: the caller decides what to replace
    # Adopted mid-way, its join was a guess as well: queue_log's is taken.
    (fixed,) = answers_as_logged([live], call, joined=True)
    assert (fixed.joined_at, fixed.answered_at) == (100.0, 107.0)
    # Already right, or answered by someone queue_log does not name: nothing to change.
    assert answers_as_logged([fixed], call, joined=True) == []
    other = Leg("9.0", 0, "tier1", "T1", 100.4, agent="Agent 1002", answered_at=104.4)
    assert answers_as_logged([other], call, joined=False) == []
