"""Writing legs and agent activity to the database, off the call flow.

``StatsRecorder.submit_legs(legs)`` / ``submit_activity(items)`` never block: one owned worker
task writes them in batches (a call's legs replace any written before for the same call), and
retries with a capped backoff while the database is down. A batch the database refuses (a value
PostgreSQL cannot store: retrying cannot help) is written again call by call and item by item,
and what is still refused is dropped, logged and counted (``refused``, in ``/metrics``), so one
call never stops the statistics of the calls after it. Caller IDs (anything, from a spoofed SIP
``From``) and pause reasons (whatever the dialplan says) are first made storable: cut to their
column, the caller ID as the interaction record's (``crm_core.records``). ``legs_since`` reads
legs back (today's, when an instance starts ingesting a PBX: ``LiveStats.seed``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog
from sqlalchemy import Table, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_core.db import describe_db_error, refused_by_database
from crm_core.models import AgentActivity, CallLeg, Interaction
from crm_core.records import storable_caller
from crm_core.repeats import mark_calls
from cti.stats.adapter import INTERACTION_COLUMNS
from cti.stats.legs import Activity, Leg, legs_by_call

log = structlog.get_logger(__name__)

LEGS: Table = CallLeg.__table__  # type: ignore[assignment]
ACTIVITY: Table = AgentActivity.__table__  # type: ignore[assignment]
CALLS: Table = Interaction.__table__  # type: ignore[assignment]
_REASON_MAX: int = ACTIVITY.c["reason"].type.length  # type: ignore[attr-defined]


def leg_row(leg: Leg) -> dict[str, Any]:
    return {
        "call_id": leg.call_id,
        "seq": leg.seq,
        "queue": leg.queue,
        "tier": leg.tier,
        "agent": leg.agent,
        "direction": leg.direction,
        "caller": storable_caller(leg.caller) if leg.caller is not None else None,
        "joined_at": leg.joined_at,
        "joined_hour": int(leg.joined_at // 3600),
        "answered_at": leg.answered_at,
        "left_at": leg.left_at,
        "ended_at": leg.ended_at,
        "outcome": leg.outcome,
        "exit": leg.exit,
        "wrap_s": leg.wrap_s,
        "hold_s": leg.hold_s,
    }


def activity_row(item: Activity) -> dict[str, Any]:
    return {
        "agent": item.agent,
        "kind": item.kind,
        "reason": item.reason[:_REASON_MAX] if item.reason else item.reason,
        "started_at": item.started_at,
        "ended_at": item.ended_at if item.ended_at is not None else item.started_at,
    }


def _chunks(call_ids: Sequence[str], size: int = 500) -> Iterator[list[str]]:
    """Call ids in pieces short enough for one ``IN (...)``."""
    for start in range(0, len(call_ids), size):
        yield list(call_ids[start : start + size])


async def write_legs(engine: AsyncEngine, legs: Sequence[Leg]) -> None:
    """Write legs; the legs of a call replace those written for it before (also within
    ``legs``: a call's legs are given again when its wrap-up is measured). Each call is
    marked as a repeat call or not (``crm_core.repeats``) in the same transaction."""
    if not legs:
        return
    latest: dict[tuple[str, int], Leg] = {(leg.call_id, leg.seq): leg for leg in legs}
    legs = list(latest.values())
    calls = sorted({leg.call_id for leg in legs})
    async with engine.begin() as conn:
        for chunk in _chunks(calls):
            await conn.execute(delete(LEGS).where(LEGS.c.call_id.in_(chunk)))
        await conn.execute(insert(LEGS), [leg_row(leg) for leg in legs])
        await mark_calls(conn, calls)


async def write_legs_of_new_calls(engine: AsyncEngine, legs: Sequence[Leg]) -> list[Leg]:
    """Write the legs of the calls that have none written yet (in one transaction); the
    legs written. A call's legs are keyed by its id: a call with legs is left as it is."""
    calls = sorted({leg.call_id for leg in legs})
    if not calls:
        return []
    async with engine.begin() as conn:
        have: set[str] = set()
        for chunk in _chunks(calls):
            found = await conn.execute(select(LEGS.c.call_id).where(LEGS.c.call_id.in_(chunk)))
            have.update(found.scalars())
        new = [leg for leg in legs if leg.call_id not in have]
        if new:
            await conn.execute(insert(LEGS), [leg_row(leg) for leg in new])
            await mark_calls(conn, sorted({leg.call_id for leg in new}))
    return new


async def legs_since(engine: AsyncEngine, since: float, call_prefix: str = "") -> list[Leg]:
    """The legs written of calls that joined a queue from ``since`` on; ``call_prefix``: of
    one PBX's calls only (several PBXs: ``pbx:``)."""
    query = select(LEGS).where(LEGS.c.joined_at >= since)
    if call_prefix:
        query = query.where(LEGS.c.call_id.startswith(call_prefix, autoescape=True))
    async with engine.connect() as conn:
        rows = (await conn.execute(query.order_by(LEGS.c.joined_at))).mappings().all()
    return _legs(rows)


async def legs_of_calls(engine: AsyncEngine, call_ids: Sequence[str]) -> list[Leg]:
    """The legs written of these calls, each call's in order."""
    rows: list[Any] = []
    async with engine.connect() as conn:
        for chunk in _chunks(call_ids):
            query = select(LEGS).where(LEGS.c.call_id.in_(chunk))
            rows.extend((await conn.execute(query)).mappings().all())
    return sorted(_legs(rows), key=lambda leg: (leg.call_id, leg.seq))


def _legs(rows: Sequence[Any]) -> list[Leg]:
    return [
        Leg(
            call_id=r["call_id"],
            seq=r["seq"],
            queue=r["queue"],
            tier=r["tier"],
            joined_at=r["joined_at"],
            direction=r["direction"],
            caller=r["caller"],
            agent=r["agent"],
            answered_at=r["answered_at"],
            left_at=r["left_at"],
            ended_at=r["ended_at"],
            outcome=r["outcome"],
            exit=r["exit"],
            wrap_s=r["wrap_s"],
            hold_s=r["hold_s"],
        )
        for r in rows
    ]


async def activity_since(engine: AsyncEngine, since: float) -> list[Activity]:
    """The agent intervals written (closed) that ended after ``since``."""
    a = ACTIVITY.c
    query = select(a.agent, a.kind, a.reason, a.started_at, a.ended_at).where(a.ended_at > since)
    async with engine.connect() as conn:
        rows = (await conn.execute(query.order_by(a.started_at))).all()
    return [Activity(r.agent, r.kind, r.started_at, r.ended_at, r.reason or "") for r in rows]


async def outbound_since(
    engine: AsyncEngine, since: float, call_prefix: str = ""
) -> list[tuple[str, float, str, float | None]]:
    """The outbound calls written that started from ``since`` on: (call id, started, outcome,
    talk_s), as the period report reads them (``cti.stats.period._outbound``)."""
    i = CALLS.c
    started = i[INTERACTION_COLUMNS["started"]]
    query = select(
        i.call_id, started, i[INTERACTION_COLUMNS["outcome"]], i[INTERACTION_COLUMNS["talk"]]
    ).where(
        i[INTERACTION_COLUMNS["direction"]] == "outbound",
        started >= datetime.fromtimestamp(since, UTC),
    )
    if call_prefix:
        query = query.where(i.call_id.startswith(call_prefix, autoescape=True))
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    out = []
    for call_id, at, outcome, talk in rows:
        if at.tzinfo is None:  # SQLite keeps no zone: UTC, as written
            at = at.replace(tzinfo=UTC)
        out.append((call_id, at.timestamp(), outcome, talk))
    return out


async def write_activity(engine: AsyncEngine, items: Sequence[Activity]) -> None:
    if items:
        async with engine.begin() as conn:
            await conn.execute(insert(ACTIVITY), [activity_row(i) for i in items])


class StatsSink(Protocol):
    """Where the live statistics hand finished legs and activity (``StatsRecorder``)."""

    def submit_legs(self, legs: Iterable[Leg]) -> None: ...

    def submit_activity(self, items: Iterable[Activity]) -> None: ...

    async def flush(self, within_s: float | None = None) -> bool:
        """True once what was submitted is written (False: not within ``within_s``)."""
        ...


class StatsRecorder:
    def __init__(
        self, engine: AsyncEngine, *, retry_initial_s: float = 0.2, retry_max_s: float = 10.0
    ) -> None:
        self._engine = engine
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._legs: list[Leg] = []
        self._activity: list[Activity] = []
        self._wake: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self.written = 0
        self.refused = 0  # calls' legs (each call once) and activity items refused, dropped
        self._refused_calls: set[str] = set()  # a call's legs come again at its wrap-up

    @property
    def pending(self) -> int:
        return len(self._legs) + len(self._activity)

    def submit_legs(self, legs: Iterable[Leg]) -> None:
        self._legs.extend(legs)
        self._poke()

    def submit_activity(self, items: Iterable[Activity]) -> None:
        self._activity.extend(items)
        self._poke()

    def _poke(self) -> None:
        if self._wake is not None and self._idle is not None and self.pending:
            self._idle.clear()
            self._wake.set()

    async def start(self) -> None:
        self._wake, self._idle = asyncio.Event(), asyncio.Event()
        self._idle.set()
        self._poke()
        self._worker = asyncio.create_task(self._run(), name="stats-recorder")

    async def flush(self, within_s: float | None = None) -> bool:
        if self._idle is None:
            return not self.pending
        try:
            async with asyncio.timeout(within_s):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def stop(self, drain_timeout_s: float = 5.0) -> None:
        if self._worker is None:
            return
        await self.flush(drain_timeout_s)
        self._worker.cancel()
        await asyncio.gather(self._worker, return_exceptions=True)
        self._worker = None
        if self.pending:
            log.error("statistics not written", legs=len(self._legs), activity=len(self._activity))

    async def _run(self) -> None:
        assert self._wake is not None and self._idle is not None
        delay = self._retry_initial_s
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.pending:
                legs, activity = self._legs[:2000], self._activity[:2000]
                counted = len(legs) + len(activity)
                try:
                    try:
                        await write_legs(self._engine, legs)
                        await write_activity(self._engine, activity)
                    except Exception as exc:
                        if not refused_by_database(exc):
                            raise
                        await self._write_apart(legs, activity)
                        activity, counted = [], 0  # _write_apart took them off and counted
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("statistics write failed; will retry", error=repr(exc))
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self._retry_max_s)
                    continue
                delay = self._retry_initial_s
                del self._legs[: len(legs)]
                del self._activity[: len(activity)]
                self.written += counted
            self._idle.set()

    async def _write_apart(self, legs: Sequence[Leg], activity: Sequence[Activity]) -> None:
        """After a refusal: each call's legs, then each activity item, in its own transaction;
        what the database refuses is dropped and counted. An outage raises (the legs are
        written again on the retry, replacing themselves; the activity written is taken off
        the list first, as it would be inserted twice)."""
        for call_id, its in legs_by_call(legs).items():
            try:
                await write_legs(self._engine, its)
            except Exception as exc:
                if not refused_by_database(exc):
                    raise
                if call_id not in self._refused_calls:
                    self._refused_calls.add(call_id)
                    self._refused("legs", exc, call_id=call_id)
            else:
                self.written += len(its)
        done = 0
        try:
            for item in activity:
                try:
                    await write_activity(self._engine, [item])
                except Exception as exc:
                    if not refused_by_database(exc):
                        raise
                    self._refused("activity", exc, agent=item.agent[:100], kind=item.kind)
                else:
                    self.written += 1
                done += 1
        finally:
            del self._activity[:done]

    def _refused(self, what: str, exc: Exception, **about: str) -> None:
        self.refused += 1
        log.error("statistics refused by the database; dropped", what=what,
                  error=describe_db_error(exc)[:300], **about)  # fmt: skip
