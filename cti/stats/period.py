"""Figures over any period, aggregated by the database (SQLite and PostgreSQL, the same SQL).

Queue figures come from ``call_legs`` (one GROUP BY, plus one window query for the 90th
percentile), repeat calls and outbound calls from ``interactions``, occupancy and pauses from
``agent_activity``. Nothing is loaded row by row: each query returns one row per group. The
definitions are those of ``cti.stats.figures`` (the tests check both give the same answers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Float, Integer, Table, and_, case, cast, func, literal, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from crm_core.models import AgentActivity, CallLeg, Interaction
from cti.stats.adapter import INTERACTION_COLUMNS
from cti.stats.figures import GROUPS, Figures, Thresholds, nearest_rank_index

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
            func.avg(
                case(
                    (and_(answered, c.ended_at.is_not(None)), c.ended_at - c.answered_at + c.wrap_s)
                )
            ).label("aht"),
            _count(c.exit == "transfer").label("transfers"),
            _count(c.exit == "escalation").label("escalations"),
        )
        .where(in_period)
        .group_by(g)
    )
    # 90th percentile of the speed of answer, nearest rank, to the tenth of a second below:
    # a histogram of the waits in tenths per group (a few thousand rows), ranked here. Sorting
    # every wait (a window query) costs ~20x more on SQLite.
    tenths = _floor(wait * 10, dialect).label("t")
    histogram = select(g, tenths, func.count()).where(in_period, answered).group_by(g, tenths)
    groups: dict[str, Figures] = {}
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
                transfers_out=int(row.transfers or 0),
                escalations_out=int(row.escalations or 0),
            )
            groups[_group_key(group_by, row.g)] = fig
        counts: dict[str, list[tuple[int, int]]] = {}
        for key, tenth, n in (await conn.execute(histogram)).all():
            counts.setdefault(_group_key(group_by, key), []).append((int(tenth), int(n)))
        for key, buckets in counts.items():
            groups[key].p90_answer_s = p90_of_histogram(buckets)
        repeats = await _repeat_calls(conn, start, end, group_by, repeat_days)
        outbound = await _outbound(conn, start, end)
        agents = await _agents(conn, start, end)
    return PeriodReport(
        start, end, group_by, dict(sorted(groups.items())), repeats, repeat_days, outbound, agents
    )


def p90_of_histogram(buckets: list[tuple[int, int]]) -> float | None:
    """The nearest-rank 90th percentile of (tenths of a second, count) buckets."""
    total = sum(n for _, n in buckets)
    if not total:
        return None
    rank = nearest_rank_index(total, 0.9)
    seen = 0
    for tenth, n in sorted(buckets):
        seen += n
        if seen >= rank:
            return tenth / 10
    return None


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


def _r(value: Any) -> float | None:
    return None if value is None else round(float(value), 3)


def _epoch(column: Any, dialect: str) -> ColumnElement[Any]:
    """A timestamp column as epoch seconds: the one place the two databases differ."""
    if dialect == "sqlite":
        return (func.julianday(column) - 2440587.5) * 86400.0
    return cast(func.extract("epoch", column), Float)


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


async def _repeat_calls(
    conn: Any, start: float, end: float, group_by: str, days: int
) -> dict[str, int]:
    """Inbound calls in the period from a customer who had called within ``days`` before,
    per group of the repeat call's first leg (by agent: of the agent who answered the call
    before, the one that did not settle it)."""
    i = CALLS.c
    customer, started = i[INTERACTION_COLUMNS["customer"]], i[INTERACTION_COLUMNS["started"]]
    direction = i[INTERACTION_COLUMNS["direction"]]
    at = _epoch(started, conn.dialect.name)
    # "+ 0" keeps both databases off the (customer_id, started_at) index here: reading a
    # month through it fetches every row at random (PostgreSQL: 6 of 14 s); a scan and one
    # sort is several times faster.
    by_customer = customer + 0
    calls = (
        select(
            i.call_id,
            at.label("at"),
            func.lag(at).over(partition_by=by_customer, order_by=started).label("prev_at"),
            func.lag(i.call_id).over(partition_by=by_customer, order_by=started).label("prev_call"),
        )
        .where(
            customer.is_not(None),
            direction == "inbound",
            started >= _dt(start - days * 86400),
            started < _dt(end),
        )
        .subquery()
    )
    repeat = and_(
        calls.c.at >= start,
        calls.c.prev_at.is_not(None),
        calls.c.at - calls.c.prev_at <= days * 86400,
    )
    key: ColumnElement[Any]
    counted: ColumnElement[Any]
    if group_by == "agent":
        key = LEGS.c.agent
        joined = calls.join(
            LEGS, and_(LEGS.c.call_id == calls.c.prev_call, LEGS.c.agent.is_not(None))
        )
        # An agent who answered two legs of the call before counts it once.
        counted = func.count(func.distinct(calls.c.call_id))
    else:
        key = _group_column(group_by)
        joined = calls.join(LEGS, and_(LEGS.c.call_id == calls.c.call_id, LEGS.c.seq == 0))
        counted = func.count()  # one first leg per call: no DISTINCT (a sort of every row)
    query = select(key, counted).select_from(joined).where(repeat).group_by(key)
    return {_group_key(group_by, k): int(n) for k, n in (await conn.execute(query)).all()}


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


async def _agents(conn: Any, start: float, end: float) -> dict[str, dict[str, Any]]:
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
    joined: ColumnElement[Any] = c.joined_at
    if conn.dialect.name == "sqlite" and end - start > LONG_PERIOD_S:
        joined = c.joined_at + 0  # see period_figures
    handled = (
        select(c.agent, func.count(), func.sum(c.ended_at - c.answered_at + c.wrap_s))
        .where(
            joined >= start,
            joined < end,
            c.agent.is_not(None),
            c.answered_at.is_not(None),
            c.ended_at.is_not(None),
        )
        .group_by(c.agent)
    )
    out: dict[str, dict[str, Any]] = {}

    def entry(agent: str) -> dict[str, Any]:
        return out.setdefault(
            agent,
            {"calls": 0, "handle_s": 0.0, "login_s": 0.0, "pause_s": 0.0, "pause_by_reason": {}},
        )

    for agent, kind, reason, seconds in (await conn.execute(spans)).all():
        e = entry(agent)
        if kind == "login":
            e["login_s"] = round(e["login_s"] + float(seconds), 3)
        else:
            e["pause_s"] = round(e["pause_s"] + float(seconds), 3)
            e["pause_by_reason"][reason or ""] = round(float(seconds), 3)
    for agent, calls, seconds in (await conn.execute(handled)).all():
        e = entry(agent)
        e["calls"], e["handle_s"] = int(calls), round(float(seconds or 0.0), 3)
    for e in out.values():
        staffed = e["login_s"] - e["pause_s"]
        e["occupancy"] = round(min(1.0, e["handle_s"] / staffed), 4) if staffed > 0 else None
    return dict(sorted(out.items()))
