"""Today's live statistics as they were computed before the figures were kept per group as
legs finished (every request grouped and recomputed the whole day): the reference the
running figures are checked against, and the benchmark's "before". A verbatim copy of
``cti/stats/figures.py`` (its functions) and ``cti/stats/live.py`` (``LiveStats``) as of
commit c747262."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cti.stats.figures import GROUPS, Figures, Thresholds, agent_figures
from cti.stats.legs import Activity, AgentBook, Leg, LegBook
from cti.tracker.events import CallEvent

DAY = 86400.0


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
            if talk is not None:
                handles.append(talk + leg.wrap_s)
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


@dataclass
class Applied:
    legs: list[Leg] = field(default_factory=list)
    activity: list[Activity] = field(default_factory=list)


class ReferenceLiveStats:
    def __init__(self, thresholds: Thresholds, tiers_by_queue: Mapping[str, str]) -> None:
        self.thresholds = thresholds
        self.legs = LegBook(tiers_by_queue)
        self.agents = AgentBook()
        self._today: list[Leg] = []
        self._day_start = 0.0
        self.now = 0.0
        self.activity_today: list[Activity] = []
        self._answered_today: dict[str, int] = {}  # agent -> legs answered today
        # Wrap-ups measured before their call's legs finished: call -> agent -> seconds.
        self._early_wraps: dict[str, dict[str, float]] = {}
        self._seeded: set[str] = set()  # calls whose legs came from the database (``seed``)
        self._outbound: dict[str, tuple[float, str, float | None]] = {}

    def apply(self, event: CallEvent) -> Applied:
        if event.ts is not None and event.ts > self.now:
            self.now = event.ts
            # Before the day too: ``seed`` took the day from this host's clock, not the PBX's.
            if not self._day_start <= self.now < self._day_start + DAY:
                self._roll_day()
        done = Applied(self.legs.feed(event), self.agents.feed(event))
        if event.event == "answered":
            for leg in self.legs.legs_of(event.call):
                if leg.answered_at == event.ts and leg.agent and leg.joined_at >= self._day_start:
                    self._answered_today[leg.agent] = self._answered_today.get(leg.agent, 0) + 1
        if done.legs and self._early_wraps:
            for call in {leg.call_id for leg in done.legs}:
                for agent, seconds in self._early_wraps.pop(call, {}).items():
                    _set_wrap(done.legs, agent, seconds)
        if done.legs and self._seeded:
            again = {leg.call_id for leg in done.legs} & self._seeded
            if again:  # seeded from the database, finished here too: this instance's legs
                self._seeded -= again
                self._today = [leg for leg in self._today if leg.call_id not in again]
        self._today.extend(done.legs)
        self.activity_today.extend(done.activity)
        return done

    def seed(self, legs: Iterable[Leg], day_start: float) -> int:
        """Today's legs finished before this instance saw their calls' events (written by the
        previous ingester, or before a restart), counted as if it had: the number added. A
        call this one already counts (finished here, or in progress) is left out; if it
        finishes here later, its legs from here replace the seeded ones."""
        # Once the PBX's events have come, its clock says which day it is: a host clock a
        # day ahead (a replay, a PBX off by hours) must not drop the day being counted.
        if day_start > self._day_start and not self.now:
            self._day_start = day_start
            self._today = [leg for leg in self._today if leg.joined_at >= day_start]
        known = {leg.call_id for leg in self._today} | {
            leg.call_id for leg in self.legs.live_legs()
        }
        added = [
            leg
            for leg in legs
            if leg.finished and leg.joined_at >= self._day_start and leg.call_id not in known
        ]
        self._today[:0] = added
        self._seeded.update(leg.call_id for leg in added)
        self._answered_today = self._count_answered()
        return len(added)

    def wrap_up(self, call: str, agent: str, seconds: float) -> list[Leg]:
        """The agent's wrap-up of a call joins the last leg they answered on it. The call's
        finished legs, to be written again; [] if it is not finished yet (kept until it is) or
        no longer known (offered before today)."""
        if self.legs.legs_of(call):
            self._early_wraps.setdefault(call, {})[agent] = seconds
            return []
        legs = [leg for leg in self._today if leg.call_id == call]
        return legs if _set_wrap(legs, agent, seconds) else []

    def _roll_day(self) -> None:
        self._day_start = self.now - self.now % DAY
        self._today = [leg for leg in self._today if leg.joined_at >= self._day_start]
        self._seeded &= {leg.call_id for leg in self._today}
        self._answered_today = self._count_answered()
        self.activity_today = [
            a for a in self.activity_today if (a.ended_at or self.now) >= self._day_start
        ]

    @property
    def day_start(self) -> float:
        return self._day_start

    def today(self) -> list[Leg]:
        """Legs offered today: of calls that ended, and of calls in progress."""
        start = self._day_start
        live = [leg for leg in self.legs.live_legs() if leg.joined_at >= start]
        return [leg for leg in self._today if leg.joined_at >= start] + live

    def figures(self, by: str, now: float | None = None) -> dict[str, Figures]:
        """Today's figures; ``now`` (default: the latest event's time) for waits so far."""
        return grouped(self.today(), by, self.thresholds, max(now or 0.0, self.now))

    def calls_today(self) -> dict[str, int]:
        """Calls each agent answered today (legs offered today), kept as events arrive."""
        return dict(self._answered_today)

    def _count_answered(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for leg in self.today():
            if leg.agent and leg.answered_at is not None:
                out[leg.agent] = out.get(leg.agent, 0) + 1
        return out

    def outbound_ended(
        self, call: str, started: float | None, outcome: str, talk_s: float | None
    ) -> None:
        if started is not None and self._day_start <= started < self._day_start + DAY:
            self._outbound[call] = (started, outcome, talk_s)

    def outbound(self) -> dict[str, Any]:
        today = [o for o in self._outbound.values() if o[0] >= self._day_start]
        talks = [t for _, _, t in today if t is not None]
        return {
            "calls": len(today),
            "answered": sum(1 for _, outcome, _ in today if outcome == "answered"),
            "talk_s": round(sum(talks), 3) if talks else 0.0,
            "avg_talk_s": round(sum(talks) / len(talks), 3) if talks else None,
        }

    def agents_today(self, now: float | None = None) -> dict[str, dict[str, Any]]:
        """The whole day summed again: closed intervals clipped to today, open ones until now,
        the answered legs of the calls that ended (in whole microseconds, as the live view)."""
        now = max(now or 0.0, self.now)
        start, end = self._day_start, self._day_start + DAY
        spans: dict[tuple[str, str, str], int] = {}
        for a in [*self.activity_today, *self.agents.open_activity()]:
            until = a.ended_at if a.ended_at is not None else now
            if a.started_at < end and until > start:
                key = (a.agent, a.kind, a.reason[:100] if a.reason else "")
                spans[key] = spans.get(key, 0) + round(
                    (min(until, end) - max(a.started_at, start)) * 1e6
                )
        handled: dict[str, tuple[int, float]] = {}
        for leg in self._today:
            if leg.joined_at >= start and leg.agent and leg.talk_s is not None:
                assert leg.answered_at is not None and leg.ended_at is not None
                n, s = handled.get(leg.agent, (0, 0.0))
                us = round((leg.ended_at - leg.answered_at + (leg.wrap_s or 0.0)) * 1e6)
                handled[leg.agent] = (n + 1, s + us)
        rows = [(a, k, r, us / 1e6) for (a, k, r), us in sorted(spans.items())]
        return agent_figures(rows, {a: (n, us / 1e6) for a, (n, us) in handled.items()})

    def to_dict(self, now: float | None = None) -> dict[str, Any]:
        """``/api/stats/live``: today's figures by queue, tier, agent and hour."""
        return {
            "now": max(now or 0.0, self.now),
            "day_start": self._day_start,
            **{
                by: {k: f.to_dict() for k, f in self.figures(by, now).items()} for by in GROUPS_LIVE
            },
            "outbound": self.outbound(),
            "agents": self.agents_today(now),
        }


GROUPS_LIVE = ("queue", "tier", "agent", "hour")


def _set_wrap(legs: list[Leg], agent: str, seconds: float) -> bool:
    for leg in reversed(legs):
        if leg.agent == agent and leg.answered_at is not None:
            leg.wrap_s = seconds
            return True
    return False
