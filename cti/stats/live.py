"""Today's statistics as call events arrive. Pure: the time is the latest event's.

``LiveStats.apply(event)`` feeds the leg and agent books; it returns what finished (legs of an
ended call, closed agent intervals) for the recorder. ``figures(by)`` are today's figures
(UTC day of the latest event): the legs of calls ended today and of calls in progress.

A busy day holds 60,000 legs and supervisors read its figures every few seconds, on the
event loop: the finished legs are tallied per group as they finish (``cti.stats.figures.
Groups``), and a read adds only the legs of the calls in progress. What changes the day's
legs otherwise (a new day, legs seeded after a takeover, a seeded call finishing here)
tallies them again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cti.config import Config
from cti.stats.figures import Figures, Groups, Thresholds, agent_figures, grouped
from cti.stats.legs import Activity, AgentBook, Leg, LegBook
from cti.tracker.events import CallEvent

DAY = 86400.0
REASON_MAX = 100  # agent_activity.reason: a pause reason as the database keeps it


def thresholds_of(config: Config) -> Thresholds:
    s = config.stats
    return Thresholds(
        default_s=s.service_level_s,
        per_queue={q: t.service_level_s for q, t in s.queues.items()},
        short_abandon_s=s.short_abandon_s,
        target=s.service_level_target,
        per_queue_target={q: t.service_level_target for q, t in s.queues.items()},
    )


@dataclass
class Applied:
    legs: list[Leg] = field(default_factory=list)
    activity: list[Activity] = field(default_factory=list)


class LiveStats:
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
        self._groups = Groups(thresholds, GROUPS_LIVE)  # today's legs in ``_today``
        self._by_call: dict[str, list[Leg]] = {}  # ``_today`` by call
        # Per agent, kept as legs finish and intervals close (``agents_today``): the closed
        # intervals' time within today by (agent, kind, reason), and the answered legs of
        # ``_today`` (calls, talk + wrap-up). In whole microseconds (Asterisk's resolution):
        # exact, so a wrap-up taken back and added again leaves no trace of the order.
        self._spans: dict[str, dict[tuple[str, str], int]] = {}  # agent -> (kind, reason) -> µs
        self._handled: dict[str, list[int]] = {}
        # Today's outbound calls (started today, ended): call -> (started, outcome, talk_s).
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
        again: set[str] = set()
        if done.legs and self._seeded:
            again = {leg.call_id for leg in done.legs} & self._seeded
            if again:  # seeded from the database, finished here too: this instance's legs
                self._seeded -= again
                self._today = [leg for leg in self._today if leg.call_id not in again]
        self._today.extend(done.legs)
        if again:
            self._tally()
        else:
            for leg in done.legs:
                self._by_call.setdefault(leg.call_id, []).append(leg)
                if leg.joined_at >= self._day_start:
                    self._groups.add(leg)
                    self._handle(leg, 1)
        self.activity_today.extend(done.activity)
        for item in done.activity:
            self._span(item, 1)
        return done

    def _handle(self, leg: Leg, sign: int) -> None:
        """Count (or take back) a leg of today in its agent's handle time, as the period
        report does: answered legs whose talk ended, talk + wrap-up (0 when not known)."""
        if leg.agent and leg.answered_at is not None and leg.ended_at is not None:
            entry = self._handled.setdefault(leg.agent, [0, 0])
            entry[0] += sign
            entry[1] += sign * micros(leg.ended_at - leg.answered_at + (leg.wrap_s or 0.0))

    def _span(self, item: Activity, sign: int) -> None:
        """A closed interval's seconds within today (clipped as the period report clips)."""
        if item.ended_at is None:
            return
        start, end = self._day_start, self._day_start + DAY
        if not (item.started_at < end and item.ended_at > start):
            return
        seconds = micros(min(item.ended_at, end) - max(item.started_at, start))
        spans = self._spans.setdefault(item.agent, {})
        key = (item.kind, item.reason[:REASON_MAX] if item.reason else "")
        spans[key] = spans.get(key, 0) + sign * seconds

    def seed_activity(self, items: Iterable[Activity]) -> int:
        """Today's closed agent intervals written before this instance started (read back
        from ``agent_activity``): those it does not hold already are counted. The number added."""
        known = {(a.agent, a.kind, a.started_at) for a in self.activity_today}
        added = 0
        for item in items:
            key = (item.agent, item.kind, item.started_at)
            if item.ended_at is None or item.ended_at <= self._day_start or key in known:
                continue
            known.add(key)
            self.activity_today.append(item)
            self._span(item, 1)
            added += 1
        return added

    def outbound_ended(
        self, call: str, started: float | None, outcome: str, talk_s: float | None
    ) -> None:
        """An outbound call ended, as its interaction is written (``started_at``,
        ``outcome``, ``talk_s``): counted today if it started today."""
        if started is not None and self._day_start <= started < self._day_start + DAY:
            self._outbound[call] = (started, outcome, talk_s)

    def seed_outbound(self, calls: Iterable[tuple[str, float, str, float | None]]) -> int:
        """Today's outbound calls written before this instance started (interactions): those
        it has not counted itself. The number added."""
        added = 0
        for call, started, outcome, talk_s in calls:
            if call not in self._outbound:
                self.outbound_ended(call, started, outcome, talk_s)
                added += call in self._outbound
        return added

    def outbound(self) -> dict[str, Any]:
        """Today's outbound calls as the period report gives them (``calls``, ``answered``,
        ``talk_s``, ``avg_talk_s``). A day holds a few thousand at most: summed when read."""
        talks = [t for _, _, t in self._outbound.values() if t is not None]
        answered = sum(1 for _, outcome, _ in self._outbound.values() if outcome == "answered")
        return {
            "calls": len(self._outbound),
            "answered": answered,
            "talk_s": round(sum(talks), 3) if talks else 0.0,
            "avg_talk_s": round(sum(talks) / len(talks), 3) if talks else None,
        }

    def agents_today(self, now: float | None = None) -> dict[str, dict[str, Any]]:
        """Per agent today: logged-in and paused time (by reason), handle time and occupancy,
        as the period report defines them; intervals still open count until ``now`` (the
        latest event's time by default)."""
        now = max(now or 0.0, self.now)
        rows: list[tuple[str, str, str, float]] = []
        for agent in sorted(self._spans.keys() | {a.agent for a in self.agents.open_activity()}):
            rows.extend(self._rows_of(agent, now))
        handled = {a: (n, s / 1e6) for a, (n, s) in self._handled.items() if n}
        return agent_figures(rows, handled)

    def agent_today(self, agent: str, now: float | None = None) -> dict[str, Any] | None:
        """``agents_today()[agent]`` from this agent's totals alone (the console's row)."""
        now = max(now or 0.0, self.now)
        n, us = self._handled.get(agent, (0, 0))
        figures = agent_figures(self._rows_of(agent, now), {agent: (n, us / 1e6)} if n else {})
        return figures.get(agent)

    def _rows_of(self, agent: str, now: float) -> list[tuple[str, str, str, float]]:
        spans = dict(self._spans.get(agent, {}))
        for item in self.agents.open_of(agent):
            start = max(item.started_at, self._day_start)
            if now > start:
                key = (item.kind, item.reason[:REASON_MAX] if item.reason else "")
                spans[key] = spans.get(key, 0) + micros(now - start)
        return [(agent, k, r, us / 1e6) for (k, r), us in sorted(spans.items())]

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
            self._tally()
            self._spans = {}
            for item in self.activity_today:
                self._span(item, 1)
            self._outbound = {c: o for c, o in self._outbound.items() if o[0] >= day_start}
        known = self._by_call.keys() | {leg.call_id for leg in self.legs.live_legs()}
        added = [
            leg
            for leg in legs
            if leg.finished and leg.joined_at >= self._day_start and leg.call_id not in known
        ]
        self._today[:0] = added
        self._seeded.update(leg.call_id for leg in added)
        if added:
            self._tally()
        self._answered_today = self._count_answered()
        return len(added)

    def wrap_up(self, call: str, agent: str, seconds: float) -> list[Leg]:
        """The agent's wrap-up of a call joins the last leg they answered on it. The call's
        finished legs, to be written again; [] if it is not finished yet (kept until it is) or
        no longer known (offered before today)."""
        if self.legs.legs_of(call):
            self._early_wraps.setdefault(call, {})[agent] = seconds
            return []
        legs = list(self._by_call.get(call, ()))
        before = _last_answered(legs, agent)
        if before is not None and before.joined_at >= self._day_start:
            self._handle(before, -1)
        leg = _set_wrap(legs, agent, seconds)
        if leg is None:
            return []
        if leg.joined_at >= self._day_start:
            self._groups.rewrapped(leg)
            self._handle(leg, 1)
        return legs

    def replace_legs(self, legs: Sequence[Leg]) -> list[Leg]:
        """Corrected legs of finished calls (queue_log's answer where it was estimated) take
        the place of those counted today, so the figures and a wrap-up written later carry
        them; the legs of calls not counted today are left out. The legs replaced."""
        taken = [leg for leg in legs if leg.call_id in self._by_call]
        calls = {leg.call_id for leg in taken}
        if calls:
            self._today = [leg for leg in self._today if leg.call_id not in calls] + taken
            self._tally()
            self._answered_today = self._count_answered()
        return taken

    def _roll_day(self) -> None:
        self._day_start = self.now - self.now % DAY
        self._today = [leg for leg in self._today if leg.joined_at >= self._day_start]
        self._seeded &= {leg.call_id for leg in self._today}
        self._tally()
        self._answered_today = self._count_answered()
        self.activity_today = [
            a for a in self.activity_today if (a.ended_at or self.now) >= self._day_start
        ]
        self._spans = {}
        for item in self.activity_today:
            self._span(item, 1)
        self._outbound = {c: o for c, o in self._outbound.items() if o[0] >= self._day_start}

    def _tally(self) -> None:
        """Tally ``_today`` again (after legs left it, or were put in before others)."""
        self._groups = Groups(self.thresholds, GROUPS_LIVE)
        self._by_call = {}
        self._handled = {}
        for leg in self._today:
            self._by_call.setdefault(leg.call_id, []).append(leg)
            if leg.joined_at >= self._day_start:
                self._groups.add(leg)
                self._handle(leg, 1)

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
        now = max(now or 0.0, self.now)
        if by not in self._groups:  # refused as grouped() refuses it
            return grouped(self.today(), by, self.thresholds, now)
        start = self._day_start
        live = [leg for leg in self.legs.live_legs() if leg.joined_at >= start]
        return self._groups.figures(by, live, now)

    def calls_today(self) -> dict[str, int]:
        """Calls each agent answered today (legs offered today), kept as events arrive."""
        return dict(self._answered_today)

    def _count_answered(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for leg in self.today():
            if leg.agent and leg.answered_at is not None:
                out[leg.agent] = out.get(leg.agent, 0) + 1
        return out

    def to_dict(self, now: float | None = None) -> dict[str, Any]:
        """``/api/stats/live``: today's figures by queue, tier, agent and hour, outbound calls
        apart, and per agent occupancy and pause time by reason (``agents``)."""
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


def micros(seconds: float) -> int:
    return round(seconds * 1e6)


def _last_answered(legs: list[Leg], agent: str) -> Leg | None:
    for leg in reversed(legs):
        if leg.agent == agent and leg.answered_at is not None:
            return leg
    return None


def _set_wrap(legs: list[Leg], agent: str, seconds: float) -> Leg | None:
    """The agent's last answered leg takes the wrap-up: that leg."""
    leg = _last_answered(legs, agent)
    if leg is not None:
        leg.wrap_s = seconds
    return leg
