"""Figures over any period, aggregated by the database (SQLite and PostgreSQL, the same SQL).

Queue figures come from ``call_legs`` (one GROUP BY, plus one window query for the 90th
percentile), repeat calls and outbound calls from ``interactions``, occupancy and pauses from
``agent_activity``. Nothing is loaded row by row: each query returns one row per group. The
definitions are those of ``cti.stats.figures`` (the tests check both give the same answers).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, Table, and_, case, cast, func, literal, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from crm_core.models import AgentActivity, CallLeg, Interaction
from cti.stats.adapter import INTERACTION_COLUMNS
from cti.stats.figures import GROUPS, Figures, Thresholds, agent_figures

LEGS: Table = CallLeg.__table__  # type: ignore[assignment]
ACTIVITY: Table = AgentActivity.__table__  # type: ignore[assignment]
CALLS: Table = Interaction.__table__  # type: ignore[assignment]
LONG_PERIOD_S = 2 * 86400.0
REPORT_WORK_MEM = "128MB"


@dataclass
class PeriodReport:
    start: float
    end: float
    group_by: str
    groups: dict[str, Figures]
    repeat_calls: dict[str, int] = field(default_factory=dict)
    repeat_days: int = 7
    outbound: dict[str, Any] = field(default_factory=dict)
    agents: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        groups = {}
        for key, fig in self.groups.items():
            groups[key] = {**fig.to_dict(), "repeat_calls": self.repeat_calls.get(key, 0)}
        return {
            "from": _iso(self.start),
            "to": _iso(self.end),
            "group_by": self.group_by,
            "groups": groups,
            "repeat_days": self.repeat_days,
            "repeat_calls": sum(self.repeat_calls.values()),
            "outbound": self.outbound,
            "agents": self.agents,
        }


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _group_column(by: str) -> ColumnElement[Any]:
    if by not in GROUPS:
        raise ValueError(f"group_by: one of {', '.join(GROUPS)}, not {by!r}")
    if by == "hour":
        return LEGS.c.joined_hour
    column: ColumnElement[Any] = LEGS.c[by]
    return column


def _group_key(by: str, value: Any) -> str:
    if by == "hour":
        return datetime.fromtimestamp(int(value) * 3600, UTC).strftime("%Y-%m-%dT%H:00Z")
    return str(value)


def _threshold(thresholds: Thresholds) -> ColumnElement[Any]:
    if not thresholds.per_queue:
        return literal(float(thresholds.default_s))
    return case(
        {q: float(t) for q, t in thresholds.per_queue.items()},
        value=LEGS.c.queue,
        else_=float(thresholds.default_s),
    )


def _count(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.sum(case((condition, 1), else_=0))


async def period_figures(
    engine: AsyncEngine,
    start: float,
    end: float,
    group_by: str,
    thresholds: Thresholds,
    *,
    repeat_days: int = 7,
) -> PeriodReport:
    """The figures of the legs offered in ``[start, end)`` (epoch seconds), per group."""
    g = _group_column(group_by).label("g")
    c = LEGS.c
    answered = c.answered_at.is_not(None)
    wait = c.answered_at - c.joined_at
    gone = c.left_at - c.joined_at
    abandoned = and_(c.answered_at.is_(None), c.outcome == "abandoned")
    handled = and_(answered, c.ended_at.is_not(None))
    dialect = engine.dialect.name
    joined: ColumnElement[Any] = c.joined_at
    if dialect == "sqlite" and end - start > LONG_PERIOD_S:
        # SQLite reads a long period through the joined_at index row by row, ~7x slower than
        # a plain scan of the table; "+ 0" keeps it off the index (PostgreSQL plans well).
        joined = c.joined_at + 0
    in_period = and_(joined >= start, joined < end, g.is_not(None))
    main = (
        select(
            g,
            func.count().label("offered"),
            _count(answered).label("answered"),
            _count(and_(abandoned, gone > thresholds.short_abandon_s)).label("abandoned"),
            _count(and_(abandoned, gone <= thresholds.short_abandon_s)).label("short"),
            _count(and_(c.answered_at.is_(None), c.outcome == "left")).label("left"),
            _count(and_(answered, wait <= _threshold(thresholds))).label("in_sl"),
            func.avg(case((answered, wait))).label("asa"),
            func.max(case((answered, wait), else_=gone)).label("longest"),
            # A leg whose wrap-up (hold) is not known, NULL, is left out of the mean.
            func.avg(case((handled, c.ended_at - c.answered_at + c.wrap_s))).label("aht"),
            func.avg(case((handled, c.hold_s))).label("hold"),
            _count(c.exit == "transfer").label("transfers"),
            _count(c.exit == "escalation").label("escalations"),
            _count(_repeat(days=repeat_days)).label("repeats"),
            _count(handled).label("handled"),
            func.sum(case((handled, _handle_s()))).label("handle_s"),
        )
        .where(in_period)
        .group_by(g)
    )
    # 90th percentile of the speed of answer, nearest rank, to the tenth of a second below:
    # a histogram of the waits in tenths per group (hash-aggregated, in parallel on
    # PostgreSQL), then the first bucket whose running count reaches ceil(0.9 n), i.e.
    # 10 * running >= 9 * n in integers, by a window over the histogram's few rows per group.
    # (percentile_disc sorts every leg on one core, on disk; ranking the histogram here moved
    # up to 200,000 rows to Python by hour or agent.)
    t = _floor(wait * 10, dialect).label("t")
    buckets = select(g, t, func.count().label("n")).where(in_period, answered).group_by(g, t)
    # Materialized on PostgreSQL: planned apart, the histogram is hash-aggregated; inlined, the
    # planner sorts every leg for the window's order (17.6 against 8.0 s by agent, 1.5 M legs).
    h = buckets.cte("h").prefix_with("MATERIALIZED", dialect="postgresql")
    running = select(
        h.c.g,
        h.c.t,
        cast(func.sum(h.c.n).over(partition_by=h.c.g, order_by=h.c.t), BigInteger).label("run"),
        cast(func.sum(h.c.n).over(partition_by=h.c.g), BigInteger).label("total"),
    ).subquery()
    p90 = (
        select(running.c.g, func.min(running.c.t))
        .where(running.c.run * 10 >= running.c.total * 9)
        .group_by(running.c.g)
    )
    groups: dict[str, Figures] = {}
    repeats: dict[str, int] = {}
    handled_by_agent: dict[str, tuple[int, float]] = {}
    async with engine.connect() as conn:
        for row in (await conn.execute(main)).all():
            offered, short = int(row.offered), int(row.short or 0)
            in_sl = int(row.in_sl or 0)
            fig = Figures(
                offered=offered,
                answered=int(row.answered or 0),
                abandoned=int(row.abandoned or 0),
                short_abandoned=short,
                left=int(row.left or 0),
                answered_in_sl=in_sl,
                service_level=round(in_sl / (offered - short), 4) if offered > short else None,
                asa_s=_r(row.asa),
                longest_wait_s=_r(row.longest),
                aht_s=_r(row.aht),
                avg_hold_s=_r(row.hold),
                transfers_out=int(row.transfers or 0),
                escalations_out=int(row.escalations or 0),
            )
            key = _group_key(group_by, row.g)
            groups[key] = fig
            if row.repeats:
                repeats[key] = int(row.repeats)
            if group_by == "agent" and row.handled:
                handled_by_agent[key] = (int(row.handled), float(row.handle_s or 0.0))
        for value, tenths in (await conn.execute(p90)).all():
            groups[_group_key(group_by, value)].p90_answer_s = int(tenths) / 10
        in_range = and_(joined >= start, joined < end)
        if group_by == "agent":
            # for the agents of the call before: a query of its own
            repeats = await _repeats_by_agent(conn, in_range, repeat_days)
        outbound = await _outbound(conn, start, end)
        # By agent, the handle time per agent is the main query's (no second scan).
        agents = await _agents(
            conn, start, end, in_range, handled_by_agent if group_by == "agent" else None
        )
    return PeriodReport(
        start, end, group_by, dict(sorted(groups.items())), repeats, repeat_days, outbound, agents
    )


def _floor(value: ColumnElement[Any], dialect: str) -> ColumnElement[Any]:
    """floor() of a non-negative number: SQLite's CAST truncates (it may lack floor()),
    PostgreSQL's CAST rounds."""
    if dialect == "sqlite":
        return cast(value, Integer)
    return cast(func.floor(value), Integer)


def report_engine(url: str, *, statement_timeout_s: float = 600.0) -> AsyncEngine:
    """An engine for period reports: the store's engine cuts a statement at 10 s (a lookup
    must fail fast); a month of statistics on a loaded server may take longer."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    if make_url(url).get_backend_name() == "postgresql":
        # The repeat-call window sorts a month of calls, then hashes them: in memory rather
        # than in temporary files (4 MB, PostgreSQL's default, spills both to disk).
        settings = {"work_mem": REPORT_WORK_MEM}
        args = {
            "timeout": 5.0,
            "command_timeout": statement_timeout_s,
            "server_settings": settings,
        }
        return create_async_engine(url, connect_args=args, pool_size=2)
    return create_async_engine(url)


def _handle_s() -> ColumnElement[Any]:
    """A leg's talk + wrap-up for occupancy: its talk alone when its wrap-up is not known (the
    time the agent surely worked, not a figure made up)."""
    c = LEGS.c
    return c.ended_at - c.answered_at + func.coalesce(c.wrap_s, 0.0)


def _r(value: Any) -> float | None:
    return None if value is None else round(float(value), 3)


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _repeat(*, days: int) -> ColumnElement[bool]:
    """A repeat call's first leg: the call came within ``days`` of the customer's previous
    call (marked when written: ``crm_core.repeats``)."""
    return and_(LEGS.c.seq == 0, LEGS.c.repeat_gap_s <= days * 86400)


async def _repeats_by_agent(conn: Any, in_period: ColumnElement[bool], days: int) -> dict[str, int]:
    """Repeat calls per agent who answered the call before (the one that did not settle it;
    one who answered two of its legs counts it once)."""
    c = LEGS.c
    query = (
        select(c.repeat_agents, func.count())
        .where(in_period, _repeat(days=days), c.repeat_agents.is_not(None))
        .group_by(c.repeat_agents)
    )
    out: dict[str, int] = {}
    for agents, n in (await conn.execute(query)).all():
        for agent in json.loads(agents):
            out[agent] = out.get(agent, 0) + int(n)
    return dict(sorted(out.items()))


async def _outbound(conn: Any, start: float, end: float) -> dict[str, Any]:
    i = CALLS.c
    started = i[INTERACTION_COLUMNS["started"]]
    outcome, talk = i[INTERACTION_COLUMNS["outcome"]], i[INTERACTION_COLUMNS["talk"]]
    query = select(
        func.count(),
        _count(outcome == "answered"),
        func.sum(talk),
        func.avg(talk),
    ).where(
        i[INTERACTION_COLUMNS["direction"]] == "outbound", started >= _dt(start), started < _dt(end)
    )
    calls, answered, talk_total, talk_avg = (await conn.execute(query)).one()
    return {
        "calls": int(calls or 0),
        "answered": int(answered or 0),
        "talk_s": _r(talk_total) or 0.0,
        "avg_talk_s": _r(talk_avg),
    }


async def _agents(
    conn: Any,
    start: float,
    end: float,
    in_range: ColumnElement[bool],
    handled_by_agent: dict[str, tuple[int, float]] | None,
) -> dict[str, dict[str, Any]]:
    """Per agent: logged-in and paused time (by reason) within the period, talk + wrap-up of
    the legs they answered, and occupancy = handle time ÷ (logged in − paused)."""
    a = ACTIVITY.c
    clipped = case((a.ended_at > end, end), else_=a.ended_at) - case(
        (a.started_at < start, start), else_=a.started_at
    )
    spans = (
        select(a.agent, a.kind, a.reason, func.sum(clipped))
        .where(a.started_at < end, a.ended_at > start)
        .group_by(a.agent, a.kind, a.reason)
    )
    c = LEGS.c
    handled = (
        select(c.agent, func.count(), func.sum(_handle_s()))
        .where(
            in_range,
            c.agent.is_not(None),
            c.answered_at.is_not(None),
            c.ended_at.is_not(None),
        )
        .group_by(c.agent)
    )
    rows = [
        (agent, kind, reason, float(seconds))
        for agent, kind, reason, seconds in (await conn.execute(spans)).all()
    ]
    if handled_by_agent is None:
        handled_by_agent = {
            agent: (int(calls), float(seconds or 0.0))
            for agent, calls, seconds in (await conn.execute(handled)).all()
        }
    return agent_figures(rows, handled_by_agent)
