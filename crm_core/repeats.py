"""Repeat calls, marked when they are written: each inbound call's gap to its customer's
previous inbound call, kept on the call's legs (``call_legs.repeat_gap_s``, ``repeat_of``,
``repeat_agents``).

A period report then counts repeat calls within any ``repeat_days`` in its one GROUP BY over
``call_legs`` (``repeat_gap_s <= days * 86400``) instead of a window over a month of
``interactions`` joined back to the legs (SQLite has no hash join: that join was most of a
report's time).

The previous call is the customer's latest inbound interaction that started before this one
(on a tie, the one with the smaller ``call_id``), at any distance; ``repeat_gap_s`` is the
difference of the two ``interactions.started_at`` in seconds (to the millisecond);
``repeat_agents`` the agents who answered a leg of the previous call (sorted, a JSON list),
for the report by agent (the agent whose call did not settle it).

The legs and the interaction of a call are written by two recorders, in either order, and a
customer's calls may end out of order. So a call's mark is computed again whenever its
legs or its interaction are written, and so is the mark of the customer's next call (its
gap and its agents may depend on this one). ``backfill`` marks every call at once (migration
0010; the benchmark).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, and_, bindparam, func, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from crm_core.models import CallLeg, Interaction

LEGS: Table = CallLeg.__table__  # type: ignore[assignment]
CALLS: Table = Interaction.__table__  # type: ignore[assignment]
BATCH = 5000


@dataclass(frozen=True, slots=True)
class Mark:
    """The repeat mark of one call's legs (all None: not a repeat of anything)."""

    gap_s: float | None = None
    of: str | None = None
    agents: str | None = None


NOT_A_REPEAT = Mark()


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def gap_seconds(later: datetime, earlier: datetime) -> float:
    return round((_utc(later) - _utc(earlier)).total_seconds(), 3)


def agents_json(agents: Iterable[str]) -> str | None:
    names = sorted(set(agents))
    return json.dumps(names) if names else None


def _inbound_of(customer: Any) -> Any:
    c = CALLS.c
    return and_(c.customer_id == customer, c.direction == "inbound", c.started_at.is_not(None))


def _known(conn: Connection, call_id: str) -> tuple[int, datetime] | None:
    """(customer, start) when the call is an inbound call of a customer."""
    c = CALLS.c
    row = conn.execute(
        select(c.customer_id, c.direction, c.started_at).where(c.call_id == call_id)
    ).first()
    if row is None or row.customer_id is None or row.direction != "inbound":
        return None
    return None if row.started_at is None else (int(row.customer_id), row.started_at)


def _agents_of(conn: Connection, call_id: str) -> str | None:
    legs = LEGS.c
    found = conn.execute(
        select(legs.agent).where(legs.call_id == call_id, legs.agent.is_not(None))
    ).scalars()
    return agents_json(found)


def _neighbour(
    conn: Connection, call_id: str, customer: int, started: datetime, *, after: bool
) -> tuple[str, datetime] | None:
    """The customer's inbound call just before (or after) this one."""
    c = CALLS.c
    order: tuple[Any, ...]
    if after:
        side = or_(c.started_at > started, and_(c.started_at == started, c.call_id > call_id))
        order = (c.started_at, c.call_id)
    else:
        side = or_(c.started_at < started, and_(c.started_at == started, c.call_id < call_id))
        order = (c.started_at.desc(), c.call_id.desc())
    row = conn.execute(
        select(c.call_id, c.started_at).where(_inbound_of(customer), side).order_by(*order).limit(1)
    ).first()
    return None if row is None else (str(row.call_id), row.started_at)


def _marks_around(
    conn: Connection, call_id: str, known: tuple[int, datetime] | None
) -> dict[str, Mark]:
    """This call's mark and its customer's next call's (whose call before is this one)."""
    if known is None:
        return {call_id: NOT_A_REPEAT}
    customer, started = known
    marks = {call_id: NOT_A_REPEAT}
    prev = _neighbour(conn, call_id, customer, started, after=False)
    if prev is not None:
        marks[call_id] = Mark(gap_seconds(started, prev[1]), prev[0], _agents_of(conn, prev[0]))
    following = _neighbour(conn, call_id, customer, started, after=True)
    if following is not None:
        gap = gap_seconds(following[1], started)
        marks[following[0]] = Mark(gap, call_id, _agents_of(conn, call_id))
    return marks


def _set_marks(conn: Connection, marks: dict[str, Mark]) -> None:
    if not marks:
        return
    stmt = (
        update(LEGS)
        .where(LEGS.c.call_id == bindparam("b_call"))
        .values(
            repeat_gap_s=bindparam("b_gap"),
            repeat_of=bindparam("b_of"),
            repeat_agents=bindparam("b_agents"),
        )
        .execution_options(synchronize_session=False)
    )
    rows = [
        {"b_call": call, "b_gap": m.gap_s, "b_of": m.of, "b_agents": m.agents}
        for call, m in marks.items()
    ]
    for start in range(0, len(rows), BATCH):
        conn.execute(stmt, rows[start : start + BATCH])


def mark_calls_sync(conn: Connection, call_ids: Iterable[str]) -> None:
    """Mark these calls' legs, and the legs of each one's customer's next call."""
    marks: dict[str, Mark] = {}
    for call_id in dict.fromkeys(call_ids):
        marks.update(_marks_around(conn, call_id, _known(conn, call_id)))
    _set_marks(conn, marks)


async def mark_calls(conn: AsyncConnection, call_ids: Sequence[str]) -> None:
    """``mark_calls_sync`` within an open (async) transaction."""
    if call_ids:
        await conn.run_sync(mark_calls_sync, list(call_ids))


async def mark_recorded(
    conn: AsyncConnection, call_id: str, customer: int, started: datetime
) -> None:
    """An inbound call of a customer was recorded (its interaction as given): mark its legs
    and its customer's next call's, within the open transaction."""

    def run(sync: Connection) -> None:
        _set_marks(sync, _marks_around(sync, call_id, (customer, started)))

    await conn.run_sync(run)


def marks_of(calls: Iterable[tuple[int, datetime, str]]) -> Iterator[tuple[str, str, float]]:
    """(call, previous call, gap) for inbound calls given as (customer, start, call_id),
    sorted by customer, start and call_id."""
    last: tuple[int, datetime, str] | None = None
    for customer, started, call_id in calls:
        if last is not None and last[0] == customer:
            yield call_id, last[2], gap_seconds(started, last[1])
        last = (customer, started, call_id)


def backfill(conn: Connection, *, customers_per_step: int = 5000) -> int:
    """Mark the legs of every call that repeats an earlier one, from the interactions and legs
    in the database (the others keep NULL); returns how many calls repeat an earlier one.

    In steps of ``customers_per_step`` customer ids, each statement small: the store's
    connections cut a statement at 10 s, and the migration runs on them."""
    c = CALLS.c
    inbound = and_(c.customer_id.is_not(None), c.direction == "inbound", c.started_at.is_not(None))
    top = conn.execute(select(func.max(c.customer_id)).where(inbound)).scalar()
    marked = 0
    for low in range(0, int(top or 0) + 1, customers_per_step):
        ordered = conn.execute(
            select(c.customer_id, c.started_at, c.call_id)
            .where(inbound, c.customer_id >= low, c.customer_id < low + customers_per_step)
            .order_by(c.customer_id, c.started_at, c.call_id)
        )
        pairs = list(marks_of((int(r[0]), r[1], str(r[2])) for r in ordered))
        agents: dict[str, list[str]] = {}
        previous = sorted({prev for _, prev, _ in pairs})
        for start in range(0, len(previous), 1000):
            answered = select(LEGS.c.call_id, LEGS.c.agent).where(
                LEGS.c.call_id.in_(previous[start : start + 1000]), LEGS.c.agent.is_not(None)
            )
            for call_id, agent in conn.execute(answered):
                agents.setdefault(call_id, []).append(agent)
        _set_marks(
            conn,
            {call: Mark(gap, prev, agents_json(agents.get(prev, ()))) for call, prev, gap in pairs},
        )
        marked += len(pairs)
    return marked
