"""Business hours and time-of-day ranges, in the contact centre's own time zone."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$|^24:00$")


def parse_time(text: str) -> int:
    """``"08:30"`` -> minutes since midnight (``"24:00"`` allowed as an end)."""
    text = text.strip()
    if not _TIME.match(text):
        raise ValueError(f"bad time {text!r} (use HH:MM, 00:00-24:00)")
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


@dataclass(frozen=True)
class TimeRange:
    """Minutes since midnight, ``start`` included, ``end`` excluded; wraps past midnight
    when ``end < start`` (``22:00-06:00``) if the range was parsed with ``wrap=True``."""

    start: int
    end: int

    @classmethod
    def parse(cls, text: str, *, wrap: bool = False) -> TimeRange:
        start_text, sep, end_text = str(text).partition("-")
        if not sep:
            raise ValueError(f"bad time range {text!r} (use HH:MM-HH:MM)")
        start, end = parse_time(start_text), parse_time(end_text)
        if start == end or (end < start and not wrap):
            raise ValueError(f"bad time range {text!r}: the end must be after the start")
        return cls(start, end)

    def contains(self, minute: int) -> bool:
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end


def parse_days(text: str) -> tuple[int, ...]:
    """``"mon-fri"``, ``"sat"``, ``"mon,wed,fri"`` -> weekday numbers (Monday = 0)."""
    days: list[int] = []
    for part in str(text).lower().split(","):
        first, sep, last = part.strip().partition("-")
        if first not in DAYS or (sep and last not in DAYS):
            raise ValueError(f"bad days {text!r} (use mon..sun, e.g. mon-fri or sat,sun)")
        a, b = DAYS.index(first), DAYS.index(last) if sep else DAYS.index(first)
        if b < a:
            raise ValueError(f"bad days {text!r}: {first}-{last} runs backwards")
        days.extend(range(a, b + 1))
    return tuple(sorted(set(days)))


@dataclass(frozen=True)
class BusinessHours:
    """Opening ranges per weekday in ``timezone``, closed on ``holidays``.

    No ranges at all means always open (a 24/7 centre needs no configuration)."""

    timezone: ZoneInfo
    week: tuple[tuple[TimeRange, ...], ...]  # 7 entries, Monday first
    holidays: frozenset[date] = frozenset()
    always_open: bool = False

    @classmethod
    def parse(cls, spec: Mapping[str, object], timezone: ZoneInfo) -> BusinessHours:
        """``{"mon-fri": "08:00-20:00", "sat": ["09:00-13:00"], "holidays": ["2026-12-25"]}``."""
        week: list[list[TimeRange]] = [[] for _ in DAYS]
        holidays: set[date] = set()
        for key, value in spec.items():
            if key == "holidays":
                if not isinstance(value, list):
                    raise ValueError("holidays must be a list of dates (YYYY-MM-DD)")
                for item in value:
                    holidays.add(item if isinstance(item, date) else date.fromisoformat(str(item)))
                continue
            days = parse_days(key)
            values = value if isinstance(value, list) else [value]
            for item in values:
                if str(item).strip().lower() == "closed":
                    continue
                time_range = TimeRange.parse(str(item))
                for day in days:
                    week[day].append(time_range)
        return cls(
            timezone=timezone,
            week=tuple(tuple(day) for day in week),
            holidays=frozenset(holidays),
            always_open=not spec,
        )

    def local(self, at: datetime) -> datetime:
        """``at`` in the centre's zone; a naive time is taken as already local."""
        return (
            at.replace(tzinfo=self.timezone) if at.tzinfo is None else at.astimezone(self.timezone)
        )

    def is_open(self, at: datetime) -> bool:
        if self.always_open:
            return True
        local = self.local(at)
        if local.date() in self.holidays:
            return False
        minute = local.hour * 60 + local.minute
        return any(r.contains(minute) for r in self.week[local.weekday()])


def minute_of_day(at: time | datetime) -> int:
    return at.hour * 60 + at.minute
