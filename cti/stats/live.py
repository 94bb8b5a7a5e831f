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
from cti.stats.figures import Figures, Groups, Thresholds, grouped
from cti.stats.legs import Activity, AgentBook, Leg, LegBook
from cti.tracker.events import CallEvent

DAY = 86400.0


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
        self.activity_today.extend(done.activity)
        return done

    def seed(self, legs: Iterable[Leg], day_start: float) -> int:
        """Today's legs finished before this instance saw their calls' events (written by the
        previous ingester, or before a restart), counted as if it had: the number added. A
        call this one already counts (finished here, or in progress) is left out; if it
        finishes here later, its legs from here replace the seeded ones."""
        if day_start > self._day_start:
            self._day_start = day_start
            self._today = [leg for leg in self._today if leg.joined_at >= day_start]
            self._tally()
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
        leg = _set_wrap(legs, agent, seconds)
        if leg is None:
            return []
        if leg.joined_at >= self._day_start:
            self._groups.rewrapped(leg)
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

    def _tally(self) -> None:
        """Tally ``_today`` again (after legs left it, or were put in before others)."""
        self._groups = Groups(self.thresholds, GROUPS_LIVE)
        self._by_call = {}
        for leg in self._today:
            self._by_call.setdefault(leg.call_id, []).append(leg)
            if leg.joined_at >= self._day_start:
                self._groups.add(leg)

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
        """``/api/stats/live``: today's figures by queue, tier, agent and hour."""
        return {
            "now": max(now or 0.0, self.now),
            "day_start": self._day_start,
            **{
                by: {k: f.to_dict() for k, f in self.figures(by, now).items()} for by in GROUPS_LIVE
            },
        }


GROUPS_LIVE = ("queue", "tier", "agent", "hour")


def _set_wrap(legs: list[Leg], agent: str, seconds: float) -> Leg | None:
    """The agent's last answered leg takes the wrap-up: that leg."""
    for leg in reversed(legs):
        if leg.agent == agent and leg.answered_at is not None:
            leg.wrap_s = seconds
            return leg
    return None
