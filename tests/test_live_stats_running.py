"""Today's live figures are kept per group as legs finish, and must be, to the last bit, what
recomputing the whole day gave (``tests/live_reference.py``: the computation before), through
a generated day of calls, wrap-ups, takeovers (``seed``) and midnights; a request reads the
calls in progress, never the day's finished legs."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from live_day import DAY_START, LIMITS, TIERS, WrapUp, day, play
from live_reference import ReferenceLiveStats

from cti.stats.legs import Leg
from cti.stats.live import LiveStats


def same(live: LiveStats, reference: ReferenceLiveStats, now: float) -> None:
    assert live.to_dict(now) == reference.to_dict(now)
    assert live.calls_today() == reference.calls_today()


def given_out(done: Any) -> Any:
    """What the recorder is given: legs finished and intervals closed, or legs rewritten."""
    return done if isinstance(done, list) else (done.legs, done.activity)


def test_a_day_of_calls_gives_the_figures_recomputed_over_the_day() -> None:
    steps = day(2500, seed=11)
    live, reference = LiveStats(LIMITS, TIERS), ReferenceLiveStats(LIMITS, TIERS)
    both = zip(play(live, steps), play(reference, steps), strict=True)
    for n, (got, expected) in enumerate(both):
        assert given_out(got) == given_out(expected)
        if n % 500 == 0:
            same(live, reference, live.now + n % 7)
    same(live, reference, live.now + 30)
    assert live.to_dict()["queue"]["vip"]["answered"] > 0
    assert {"abandoned", "short_abandoned", "left", "escalations_out", "transfers_out"} <= {
        k for f in live.to_dict()["tier"].values() for k, v in f.items() if v
    }


class Untouchable(list[Leg]):
    def __iter__(self) -> Any:
        raise AssertionError("went over the day's finished legs")


def test_a_request_and_an_event_do_not_go_over_the_day_s_finished_legs() -> None:
    steps = day(600, seed=5)
    live = LiveStats(LIMITS, TIERS)
    for _ in play(live, steps[: len(steps) // 2]):
        pass
    live._today = Untouchable(live._today)
    for _ in play(live, steps[len(steps) // 2 :]):
        pass
    assert live.to_dict(live.now)["tier"]["tier1"]["offered"] > 500
    assert live.figures("hour")


def test_seeded_legs_count_and_give_way_to_their_call_finishing_here() -> None:
    steps = day(900, seed=3)
    earlier = ReferenceLiveStats(LIMITS, TIERS)  # the instance before the takeover
    for _ in play(earlier, steps[: len(steps) // 2]):
        pass
    written = [leg for leg in earlier.today() if leg.finished]
    live, reference = LiveStats(LIMITS, TIERS), ReferenceLiveStats(LIMITS, TIERS)
    rest = steps[len(steps) // 3 :]  # some calls it ingests again finished before it started
    for n, (got, expected) in enumerate(zip(play(live, rest), play(reference, rest), strict=True)):
        assert given_out(got) == given_out(expected)
        if n == 200:
            assert live.seed(written, DAY_START) == reference.seed(written, DAY_START) > 0
            same(live, reference, live.now)
            assert live.seed(written, DAY_START) == 0  # read twice: counted once
        if n % 400 == 0:
            same(live, reference, live.now + 1)
    same(live, reference, live.now)


def test_a_host_clock_days_ahead_of_the_pbx_does_not_empty_the_day_being_counted() -> None:
    """Today's legs read back from the database at start (``seed``) are dated by this host's
    clock; once the PBX's events have come (a replayed trace, a PBX clock off), the day they
    say it is stays the day counted, whichever finishes first."""
    live = LiveStats(LIMITS, TIERS)
    for _ in play(live, day(300, seed=9)):
        pass
    before = live.to_dict(live.now)
    assert before["queue"]
    assert live.seed([], DAY_START + 10 * 86400) == 0
    assert live.to_dict(live.now) == before
    assert live.day_start == DAY_START


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    start=st.floats(DAY_START - 23 * 3600, DAY_START + 6 * 3600),
    seeds=st.lists(st.tuples(st.floats(0, 1), st.floats(-86400, 3600)), max_size=3),
    reads=st.lists(st.floats(0, 1), max_size=6),
)
def test_any_day_gives_the_figures_recomputed_over_the_day(
    seed: int, start: float, seeds: list[tuple[float, float]], reads: list[float]
) -> None:
    """Calls across midnight (a new day), legs seeded at any time (some of a day before, some
    of calls still to come here), reads at any time."""
    steps = day(150, seed=seed, start=start)
    rnd = random.Random(seed)
    earlier = ReferenceLiveStats(LIMITS, TIERS)
    for _ in play(earlier, [s for s in steps if rnd.random() < 0.7]):
        pass
    written = [leg for leg in earlier.today() if leg.finished]
    written += [leg for leg in earlier.legs.live_legs() if leg.finished]
    at = {int(f * len(steps)): shift for f, shift in seeds}
    read_at = {int(f * len(steps)) for f in reads}
    live, reference = LiveStats(LIMITS, TIERS), ReferenceLiveStats(LIMITS, TIERS)
    for n, step in enumerate(steps):
        if n in at:
            day_start = max(live.now, start) + at[n]
            day_start -= day_start % 86400
            assert live.seed(written, day_start) == reference.seed(written, day_start)
        if isinstance(step, WrapUp):
            got = live.wrap_up(step.call, step.agent, step.seconds)
            assert got == reference.wrap_up(step.call, step.agent, step.seconds)
        else:
            assert given_out(live.apply(step)) == given_out(reference.apply(step))
        if n in read_at:
            same(live, reference, live.now + n % 5)
    same(live, reference, live.now + 2)
