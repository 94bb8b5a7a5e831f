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

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cti.stats.legs import Leg

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
    return datetime.fromtimestamp(ts - ts % 3600, UTC).strftime("%Y-%m-%dT%H:00Z")


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
    out = Figures()
    waits: list[float] = []
    handles: list[float] = []
    holds: list[float] = []
    longest: float | None = None
    for leg in legs:
        out.offered += 1
        wait = leg.wait_s
        if wait is None and now is not None:
            wait = leg.wait_so_far(now)
        if wait is not None:
            longest = wait if longest is None else max(longest, wait)
        if leg.answered_at is not None:
            out.answered += 1
            answer_wait = leg.answered_at - leg.joined_at
            waits.append(answer_wait)
            if answer_wait <= thresholds.threshold(leg.queue):
                out.answered_in_sl += 1
            talk = leg.talk_s
            if talk is not None and leg.wrap_s is not None:
                handles.append(talk + leg.wrap_s)
            if talk is not None and leg.hold_s is not None:
                holds.append(leg.hold_s)
        elif leg.outcome == "abandoned" and wait is not None:
            if wait <= thresholds.short_abandon_s:
                out.short_abandoned += 1
            else:
                out.abandoned += 1
        elif leg.outcome == "left":
            out.left += 1
        if leg.exit == "transfer":
            out.transfers_out += 1
        elif leg.exit == "escalation":
            out.escalations_out += 1
    counted = out.offered - out.short_abandoned
    out.service_level = _round(out.answered_in_sl / counted, 4) if counted > 0 else None
    out.asa_s = _round(sum(waits) / len(waits)) if waits else None
    out.p90_answer_s = tenth_below(nearest_rank(waits, 0.9))
    out.longest_wait_s = _round(longest)
    out.aht_s = _round(sum(handles) / len(handles)) if handles else None
    out.avg_hold_s = _round(sum(holds) / len(holds)) if holds else None
    return out


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
