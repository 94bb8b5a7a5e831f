"""The figures of a set of legs, grouped by queue, tier, agent or hour.

Definitions (the README's "Supervisor console and statistics" states them for users):

- a leg counts in the period, and the hour, in which it was **offered** (joined its queue);
- ``offered``: legs; ``answered``: legs an agent answered;
- ``abandoned``: legs the caller hung up on while waiting or ringing after more than
  ``short_abandon_s``; ``short_abandoned``: those within it (counted apart, and left out of
  the service level); ``left``: legs that left the queue unanswered otherwise (redirected,
  escalated, timed out);
- ``service_level`` = legs answered within the queue's threshold ÷ (offered − short
  abandoned): abandons after the grace and legs that left unanswered count against it;
- ``asa_s`` / ``p90_answer_s``: mean and 90th percentile (nearest rank, to the tenth of a
  second below) of the wait of the answered legs; ``longest_wait_s``: the longest wait of
  any leg (answered or not; for a leg still waiting, its wait so far);
- ``aht_s``: mean of talk + wrap-up over the answered legs whose talk has ended;
  ``avg_hold_s``: mean time on hold over the same legs (hold is within talk); a leg whose
  wrap-up or hold is not known (recovered from queue_log) is left out of that mean;
- ``transfers_out`` / ``escalations_out``: answered legs the agent transferred elsewhere /
  legs whose call went on to another tier's queue (answered or not);
- by agent, a leg counts for the agent who answered it.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cti.stats.legs import Leg
from cti.stats.running_sum import RunningSum

GROUPS = ("queue", "tier", "agent", "hour")


@dataclass(frozen=True)
class Thresholds:
    """Service-level thresholds per queue (``default_s`` for the others) and the short-abandon
    grace."""

    default_s: float = 20.0
    per_queue: Mapping[str, float] = field(default_factory=dict)
    short_abandon_s: float = 5.0
    target: float = 0.8
    per_queue_target: Mapping[str, float] = field(default_factory=dict)

    def threshold(self, queue: str) -> float:
        return self.per_queue.get(queue, self.default_s)

    def target_of(self, queue: str) -> float:
        return self.per_queue_target.get(queue, self.target)


def hour_key(ts: float) -> str:
    """The UTC hour a time falls in, as ``2026-12-03T08:00Z``."""
    return _hour_label(ts - ts % 3600)


@functools.lru_cache(maxsize=4096)
def _hour_label(hour: float) -> str:
    return datetime.fromtimestamp(hour, UTC).strftime("%Y-%m-%dT%H:00Z")


def group_of(leg: Leg, by: str) -> str | None:
    if by == "queue":
        return leg.queue
    if by == "tier":
        return leg.tier
    if by == "agent":
        return leg.agent
    if by == "hour":
        return hour_key(leg.joined_at)
    raise ValueError(f"group_by: one of {', '.join(GROUPS)}, not {by!r}")


def nearest_rank_index(n: int, p: float) -> int:
    """The 1-based rank of the p-th percentile of n values (nearest rank: ceil(p n))."""
    return max(1, math.ceil(p * n - 1e-9))


def nearest_rank(values: list[float], p: float) -> float | None:
    """The p-th percentile by nearest rank."""
    if not values:
        return None
    return sorted(values)[nearest_rank_index(len(values), p) - 1]


def tenth_below(value: float | None) -> float | None:
    """A time to the tenth of a second below (how the 90th percentile is given)."""
    return None if value is None else math.floor(round(value * 10, 6)) / 10


@dataclass
class Figures:
    offered: int = 0
    answered: int = 0
    abandoned: int = 0
    short_abandoned: int = 0
    left: int = 0
    answered_in_sl: int = 0
    service_level: float | None = None
    asa_s: float | None = None
    p90_answer_s: float | None = None
    longest_wait_s: float | None = None
    aht_s: float | None = None
    avg_hold_s: float | None = None
    transfers_out: int = 0
    escalations_out: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def figures(legs: Iterable[Leg], thresholds: Thresholds, now: float | None = None) -> Figures:
    """The figures of these legs (``now``: for the wait so far of legs still waiting)."""
    return Tally(thresholds).figures(legs, now)


def grouped(
    legs: Iterable[Leg],
    by: str,
    thresholds: Thresholds,
    now: float | None = None,
    keep: Callable[[Leg], bool] | None = None,
) -> dict[str, Figures]:
    """Figures per group (legs without a group, e.g. unanswered ones by agent, are left out)."""
    buckets: dict[str, list[Leg]] = {}
    for leg in legs:
        if keep is not None and not keep(leg):
            continue
        key = group_of(leg, by)
        if key is not None:
            buckets.setdefault(key, []).append(leg)
    return {key: figures(b, thresholds, now) for key, b in sorted(buckets.items())}


class Tally:
    """The figures of a set of legs that grows as legs finish, kept as they are added, so that
    ``figures`` costs the legs still changing (calls in progress), not the whole set.

    ``add`` a finished leg once (its wait is known: nothing in it depends on the time); the
    only change a finished leg still takes is its wrap-up (``rewrapped``). Means are the
    builtin ``sum()`` of the values in the order legs were added, then the legs given to
    ``figures``: the very floats ``figures()`` of the same legs in the same order gives.
    Read alone (no leg still changing), the figures are kept until a leg is added or
    rewrapped: most agents' groups do not change between two reads."""

    __slots__ = ("_figures", "_handle_at", "counts", "handles", "holds", "longest", "pending",
                 "ranked", "thresholds", "waits")  # fmt: skip

    def __init__(self, thresholds: Thresholds) -> None:
        self.thresholds = thresholds
        self.counts = Figures()  # the counts only; the rest is worked out by ``figures``
        self.longest: float | None = None
        self.waits = RunningSum()  # answered legs' speed of answer, in order
        self.ranked: list[float] = []  # the same, sorted (for the 90th percentile)
        self.handles = RunningSum()  # talk + wrap-up of the answered legs whose talk ended
        self.holds = RunningSum()  # the same legs' hold
        self._handle_at: dict[int, int] = {}  # id(leg) -> its place in handles
        self.pending: list[Leg] = []  # added unfinished: counted at each ``figures``
        self._figures: Figures | None = None  # of the legs added, while none is added

    def add(self, leg: Leg) -> None:
        self._figures = None
        if leg.wait_s is None:  # its wait (so far) depends on the time: never answered
            self.pending.append(leg)
            return
        wait, answer_wait, handle, hold = _count(self.counts, leg, self.thresholds, None)
        if wait is not None:
            self.longest = wait if self.longest is None else max(self.longest, wait)
        if answer_wait is not None:
            self.waits.append(answer_wait)
            bisect.insort(self.ranked, answer_wait)
        if handle is not None:
            self._handle_at[id(leg)] = len(self.handles)
            self.handles.append(handle)
        if hold is not None:
            self.holds.append(hold)

    def rewrapped(self, leg: Leg) -> None:
        """An added leg's ``wrap_s`` changed."""
        at = self._handle_at.get(id(leg))
        talk = leg.talk_s
        if talk is None or leg.wrap_s is None:
            return
        if at is None:  # its wrap-up was not known when it was added
            self._handle_at[id(leg)] = len(self.handles)
            self.handles.append(talk + leg.wrap_s)
        else:
            self.handles[at] = talk + leg.wrap_s
        self._figures = None

    def figures(self, more: Iterable[Leg] = (), now: float | None = None) -> Figures:
        """The figures of the legs added and of ``more`` (after them, in their order)."""
        more = more if isinstance(more, Sequence) else list(more)
        alone = not more and not self.pending  # nothing depends on ``now``
        if alone and self._figures is not None:
            return _copy(self._figures)
        out = _copy(self.counts)
        longest = self.longest
        waits: list[float] = []
        handles: list[float] = []
        holds: list[float] = []
        for leg in itertools.chain(self.pending, more):
            wait, answer_wait, handle, hold = _count(out, leg, self.thresholds, now)
            if wait is not None:
                longest = wait if longest is None else max(longest, wait)
            if answer_wait is not None:
                waits.append(answer_wait)
            if handle is not None:
                handles.append(handle)
            if hold is not None:
                holds.append(hold)
        counted = out.offered - out.short_abandoned
        out.service_level = _round(out.answered_in_sl / counted, 4) if counted > 0 else None
        answered = len(self.waits) + len(waits)
        if answered:
            out.asa_s = _round(self.waits.total(waits) / answered)
            rank = nearest_rank_index(answered, 0.9)
            out.p90_answer_s = tenth_below(_ranked(self.ranked, sorted(waits), rank))
        out.longest_wait_s = _round(longest)
        handled = len(self.handles) + len(handles)
        if handled:
            out.aht_s = _round(self.handles.total(handles) / handled)
        held = len(self.holds) + len(holds)
        if held:
            out.avg_hold_s = _round(self.holds.total(holds) / held)
        if alone:
            self._figures = _copy(out)
        return out


def _copy(figures: Figures) -> Figures:
    out = Figures.__new__(Figures)  # without dataclasses.replace's checks: 5 times faster
    out.__dict__.update(figures.__dict__)
    return out


def _count(
    out: Figures, leg: Leg, thresholds: Thresholds, now: float | None
) -> tuple[float | None, float | None, float | None, float | None]:
    """Count the leg in ``out``; its wait (so far), speed of answer, handle time and hold."""
    out.offered += 1
    wait = leg.wait_s
    if wait is None and now is not None:
        wait = leg.wait_so_far(now)
    answer_wait = handle = hold = None
    if leg.answered_at is not None:
        out.answered += 1
        answer_wait = leg.answered_at - leg.joined_at
        if answer_wait <= thresholds.threshold(leg.queue):
            out.answered_in_sl += 1
        talk = leg.talk_s
        if talk is not None:  # a wrap-up or hold not known (from queue_log): left out
            handle = talk + leg.wrap_s if leg.wrap_s is not None else None
            hold = leg.hold_s
    elif leg.outcome == "abandoned" and wait is not None:
        # Unrounded, as the period's SQL compares it: a caller gone 5.0004 s after joining
        # waited more than a 5 s grace (``wait_s`` to the millisecond would say 5.0).
        gone = leg.left_at - leg.joined_at if leg.left_at is not None else wait
        if gone <= thresholds.short_abandon_s:
            out.short_abandoned += 1
        else:
            out.abandoned += 1
    elif leg.outcome == "left":
        out.left += 1
    if leg.exit == "transfer":
        out.transfers_out += 1
    elif leg.exit == "escalation":
        out.escalations_out += 1
    return wait, answer_wait, handle, hold


def _ranked(ranked: list[float], more: list[float], rank: int) -> float:
    """The rank-th (1-based) smallest of two sorted lists, the second one short. Of the
    first rank values of both, at least ``rank - len(more)`` are ``ranked``'s first ones, so
    all but the last of those come before it: they are skipped, and so is the rest of
    ``ranked`` after the rank-th."""
    skip = max(0, rank - len(more) - 1)
    return sorted(ranked[skip:rank] + more)[rank - 1 - skip]


class Groups:
    """A ``Tally`` per group, for each of several groupings: legs are added once, figures
    are read per grouping with the legs still changing."""

    def __init__(self, thresholds: Thresholds, groupings: Iterable[str] = GROUPS) -> None:
        self.thresholds = thresholds
        self._by: dict[str, dict[str, Tally]] = {by: {} for by in groupings}

    def __contains__(self, by: str) -> bool:
        return by in self._by

    def add(self, leg: Leg) -> None:
        for by, tallies in self._by.items():
            key = group_of(leg, by)
            if key is not None:
                tally = tallies.get(key)
                if tally is None:
                    tally = tallies[key] = Tally(self.thresholds)
                tally.add(leg)

    def rewrapped(self, leg: Leg) -> None:
        for by, tallies in self._by.items():
            key = group_of(leg, by)
            tally = tallies.get(key) if key is not None else None
            if tally is not None:
                tally.rewrapped(leg)

    def figures(self, by: str, more: Iterable[Leg], now: float | None) -> dict[str, Figures]:
        """Per group of ``by``: the figures of the legs added and of ``more``."""
        tallies = self._by[by]
        extra: dict[str, list[Leg]] = {}
        for leg in more:
            key = group_of(leg, by)
            if key is not None:
                extra.setdefault(key, []).append(leg)
        none = Tally(self.thresholds)
        return {
            key: tallies.get(key, none).figures(extra.get(key, ()), now)
            for key in sorted(tallies.keys() | extra.keys())
        }


def agent_figures(
    spans: Iterable[tuple[str, str, str, float]], handled: Mapping[str, tuple[int, float]]
) -> dict[str, dict[str, Any]]:
    """Per agent: logged-in and paused time (by reason) from ``(agent, kind, reason,
    seconds)`` summed per kind and reason, ``calls`` and ``handle_s`` (talk + wrap-up) of the
    legs they answered, and occupancy = handle time / (logged in - paused). The one definition
    of the period report (``cti.stats.period``) and of the live view (``cti.stats.live``)."""
    out: dict[str, dict[str, Any]] = {}

    def entry(agent: str) -> dict[str, Any]:
        return out.setdefault(
            agent,
            {"calls": 0, "handle_s": 0.0, "login_s": 0.0, "pause_s": 0.0, "pause_by_reason": {}},
        )

    for agent, kind, reason, seconds in spans:
        e = entry(agent)
        if kind == "login":
            e["login_s"] = round(e["login_s"] + float(seconds), 3)
        else:
            e["pause_s"] = round(e["pause_s"] + float(seconds), 3)
            e["pause_by_reason"][reason or ""] = round(float(seconds), 3)
    for agent, (calls, seconds) in handled.items():
        e = entry(agent)
        e["calls"], e["handle_s"] = calls, round(seconds, 3)
    for e in out.values():
        staffed = e["login_s"] - e["pause_s"]
        e["occupancy"] = round(min(1.0, e["handle_s"] / staffed), 4) if staffed > 0 else None
    return dict(sorted(out.items()))
