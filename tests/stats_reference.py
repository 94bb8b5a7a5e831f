"""The repeat-call query of period reports before repeat calls were marked when written
(a window over the customers' calls in ``interactions`` joined back to ``call_legs``): the
reference the stored marks are checked against, and the benchmark's "before"."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Float, and_, cast, func, select
from sqlalchemy.sql.elements import ColumnElement

from cti.stats.adapter import INTERACTION_COLUMNS
from cti.stats.period import CALLS, LEGS, _group_column, _group_key


def _epoch(column: Any, dialect: str) -> ColumnElement[Any]:
    if dialect == "sqlite":
        return (func.julianday(column) - 2440587.5) * 86400.0
    return cast(func.extract("epoch", column), Float)


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


async def repeat_calls_by_window(
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
