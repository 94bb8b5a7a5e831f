"""The running figures of a group of legs (``cti.stats.figures.Tally``) against the figures
recomputed from its legs as before (``tests/live_reference.py``), and the running sum they
are built on against the builtin ``sum()``: equal to the last bit."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from live_day import DAY_START, LIMITS, TIERS
from live_reference import figures as reference_figures

from cti.stats.figures import Tally
from cti.stats.legs import Leg
from cti.stats.running_sum import COMPENSATED, RunningSum

legs_strategy = st.lists(
    st.tuples(
        st.sampled_from(["sales", "vip"]),
        st.sampled_from(["answered", "answered", "talking", "abandoned", "left", "waiting"]),
        st.one_of(st.floats(0, 400), st.sampled_from([5.0, 10.0, 20.0, 20.0001, 4.9999])),
        st.floats(0, 900),
        st.floats(0, 300),
        st.sampled_from([None, "transfer", "escalation"]),
    ),
    max_size=60,
)


def make_leg(n: int, spec: tuple[str, str, float, float, float, str | None]) -> Leg:
    queue, outcome, wait, talk, wrap, exit_ = spec
    joined = DAY_START + n * 13.37
    leg = Leg(f"c{n}", 0, queue, TIERS[queue], joined, agent="Agent 1001", exit=exit_)
    if outcome in ("answered", "talking"):
        leg.answered_at, leg.outcome = joined + wait, "answered"
        if outcome == "answered":
            leg.ended_at, leg.wrap_s, leg.hold_s = leg.answered_at + talk, wrap, talk / 3
    elif outcome in ("abandoned", "left"):
        leg.left_at, leg.outcome = joined + wait, outcome
    return leg


@settings(max_examples=300, deadline=None)
@given(
    finished=legs_strategy,
    more=legs_strategy,
    rewraps=st.lists(st.tuples(st.integers(0, 59), st.floats(0, 200)), max_size=8),
    now=st.one_of(st.none(), st.floats(0, 2000)),
)
def test_a_tally_gives_the_figures_of_its_legs_and_of_those_still_changing(
    finished: list[Any], more: list[Any], rewraps: list[tuple[int, float]], now: float | None
) -> None:
    """Waits on the service-level threshold and the short-abandon grace, wrap-ups changed
    after the leg was tallied, legs still waiting or talking read with it."""
    legs = [make_leg(n, spec) for n, spec in enumerate(finished)]
    extra = [make_leg(len(legs) + n, spec) for n, spec in enumerate(more)]
    at = None if now is None else DAY_START + now * 13.37
    tally = Tally(LIMITS)
    for leg in legs:
        tally.add(leg)
    tally.figures(extra, at)  # read once: what changes after must be folded again
    for index, wrap in rewraps:
        if index < len(legs):
            legs[index].wrap_s = wrap
            tally.rewrapped(legs[index])
    assert tally.figures(extra, at) == reference_figures(legs + extra, LIMITS, at)


finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e300, max_value=1e300)


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(st.one_of(finite, st.floats(0, 1000)), max_size=700),
    changes=st.lists(st.tuples(st.integers(0, 699), finite), max_size=5),
    more=st.lists(finite, max_size=5),
)
def test_a_running_sum_is_the_builtin_sum_of_its_values(
    values: list[float], changes: list[tuple[int, float]], more: list[float]
) -> None:
    running = RunningSum()
    for n, value in enumerate(values):
        running.append(value)
        if n % 97 == 0:
            assert running.total() == sum(values[: n + 1])
    for index, value in changes:
        if index < len(values):
            values[index] = value
            running[index] = value
    assert running.total(more) == sum(values + more)
    assert running.total() == sum(values)


def test_the_running_sum_knows_how_this_python_adds() -> None:
    running = RunningSum()
    for value in (1.0, 1e100, 1.0, -1e100):
        running.append(value)
    assert running.total() == (2.0 if COMPENSATED else 0.0) == sum([1.0, 1e100, 1.0, -1e100])
