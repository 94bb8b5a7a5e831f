"""The live call state kept in the database, so that a restarted daemon picks calls up.

Rows of ``live_calls`` are keyed by PBX id and call id (several PBXes, later several
instances, share one table); each holds the call's context as ``LiveCalls`` has it (who is
calling, the routing decision, queues, agents, pops sent, escalations and notes) and its
times on the PBX's clock. ``live_pbx`` holds, per PBX, the last moment its calls were known
to be up: a heartbeat while the link is up, the shutdown time on an orderly stop.

``CallStateWriter`` is owned by the daemon: ``LiveCalls`` marks a context changed
(``changed(ctx)``), one task writes the latest version of each changed call in batches, and
a call is deleted once it ended and its interaction record was handed over. Nothing here is
on the event path: a database that is slow or down delays the rows, never the calls. A call
the database refuses (an id longer than the column: Asterisk's run to 150 characters) is not
kept for a restart, and is logged and counted (``refused``, in ``/metrics``); the other calls
and the heartbeat of the same write are written without it.

``PbxClock`` maps the daemon's monotonic clock onto Asterisk's, from the ``Timestamp`` of
the events and Asterisk's Ping answers: "now" and "when the link was lost" are said in the
same clock as every other time of a call, even when the hosts' clocks differ.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from crm_core.db import describe_db_error, refused_by_database
from crm_core.models import LiveCall, LivePbx

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class SavedCall:
    """One row of ``live_calls``."""

    call_id: str
    state: str
    started_at: float | None
    answered_at: float | None
    ended_at: float | None
    context: dict[str, Any]


@dataclass(frozen=True)
class Snapshot:
    """What was kept for a PBX: its calls, and until when they were known to be up."""

    calls: list[SavedCall] = field(default_factory=list)
    seen_at: float | None = None
    stopped_at: float | None = None

    @property
    def last_known_up(self) -> float | None:
        return self.stopped_at if self.stopped_at is not None else self.seen_at


class CallStateStore(Protocol):
    """Where live call state is kept (the SQL tables; one per PBX id)."""

    async def load(self, pbx_id: str) -> Snapshot: ...

    async def write(
        self,
        pbx_id: str,
        calls: Iterable[SavedCall],
        gone: Iterable[str],
        *,
        seen_at: float | None = None,
        stopped: bool = False,
    ) -> None:
        """In one transaction: upsert ``calls``, delete ``gone``, and when ``seen_at`` is
        given, record that the PBX was in view then (``stopped``: the daemon stopped)."""
        ...


class SqlCallState:
    """``CallStateStore`` on the CRM's engine (SQLite or PostgreSQL), same code on both.

    ``guard`` (several instances: ``cti.cluster.fencing``) runs first in every write's
    transaction and raises to refuse it (a stale fencing token)."""

    def __init__(
        self,
        engine: AsyncEngine,
        guard: Callable[[AsyncConnection, str], Awaitable[None]] | None = None,
    ) -> None:
        self._engine = engine
        self._pg = engine.dialect.name == "postgresql"
        self._guard = guard

    def _insert(self, table: Any) -> Any:
        return (postgresql.insert if self._pg else sqlite.insert)(table)

    async def load(self, pbx_id: str) -> Snapshot:
        calls_t, pbx_t = LiveCall.__table__, LivePbx.__table__
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(select(calls_t).where(calls_t.c.pbx_id == pbx_id))
            ).mappings()
            calls = [
                SavedCall(
                    call_id=r["call_id"],
                    state=r["state"],
                    started_at=r["started_at"],
                    answered_at=r["answered_at"],
                    ended_at=r["ended_at"],
                    context=dict(r["context"] or {}),
                )
                for r in rows
            ]
            pbx = (
                (await conn.execute(select(pbx_t).where(pbx_t.c.pbx_id == pbx_id)))
                .mappings()
                .first()
            )
        if pbx is None:
            return Snapshot(calls)
        return Snapshot(calls, pbx["seen_at"], pbx["stopped_at"])

    async def write(
        self,
        pbx_id: str,
        calls: Iterable[SavedCall],
        gone: Iterable[str],
        *,
        seen_at: float | None = None,
        stopped: bool = False,
    ) -> None:
        now = time.time()
        rows = [
            {
                "pbx_id": pbx_id,
                "call_id": c.call_id,
                "state": c.state,
                "started_at": c.started_at,
                "answered_at": c.answered_at,
                "ended_at": c.ended_at,
                "context": c.context,
                "version": 1,
                "updated_at": now,
            }
            for c in calls
        ]
        ids = list(gone)
        async with self._engine.begin() as conn:
            if self._guard is not None:
                await self._guard(conn, pbx_id)
            if rows:
                table = LiveCall.__table__
                upsert = self._insert(table)
                upsert = upsert.on_conflict_do_update(
                    index_elements=["pbx_id", "call_id"],
                    set_={
                        "state": upsert.excluded.state,
                        "started_at": upsert.excluded.started_at,
                        "answered_at": upsert.excluded.answered_at,
                        "ended_at": upsert.excluded.ended_at,
                        "context": upsert.excluded.context,
                        "version": table.c.version + 1,
                        "updated_at": upsert.excluded.updated_at,
                    },
                )
                await conn.execute(upsert, rows)
            if ids:
                await conn.execute(
                    delete(LiveCall).where(LiveCall.pbx_id == pbx_id, LiveCall.call_id.in_(ids))
                )
            if seen_at is not None:
                beat = self._insert(LivePbx.__table__).values(
                    pbx_id=pbx_id, seen_at=seen_at, stopped_at=seen_at if stopped else None
                )
                beat = beat.on_conflict_do_update(
                    index_elements=["pbx_id"],
                    set_={"seen_at": beat.excluded.seen_at, "stopped_at": beat.excluded.stopped_at},
                )
                await conn.execute(beat)


class PbxClock:
    """Asterisk's clock as the daemon can tell it (see the module docstring)."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._pbx: float | None = None
        self._mono = 0.0

    def observe(self, pbx_ts: float | None) -> None:
        """Asterisk said it was ``pbx_ts`` just now."""
        if pbx_ts is not None and pbx_ts != self._pbx:
            self._pbx = pbx_ts
            self._mono = self._monotonic()

    def at(self, mono: float) -> float:
        """The PBX time at a moment of the daemon's monotonic clock (the wall clock when
        Asterisk never said its time)."""
        if self._pbx is None:
            return time.time() - (self._monotonic() - mono)
        return self._pbx + (mono - self._mono)

    def now(self) -> float:
        return self.at(self._monotonic())


class CallStateWriter:
    """Writes changed calls in the background (see the module docstring).

    One transaction per write: the changed calls, the ones gone, and, every ``heartbeat_s``
    while the link is up, the heartbeat. A write is never cancelled half-way (a connection
    abandoned mid-transaction keeps SQLite locked and the process from exiting): ``stop``
    lets the one in progress finish, then writes what is left and the shutdown time."""

    def __init__(
        self,
        store: CallStateStore,
        pbx_id: str,
        *,
        encode: Callable[[Any], SavedCall],
        clock: PbxClock,
        heartbeat_s: float = 2.0,
        retry_s: float = 1.0,
        batch_s: float = 0.05,
        stop_timeout_s: float = 5.0,
    ) -> None:
        self._store = store
        self.pbx_id = pbx_id
        self._encode = encode
        self._clock = clock
        self._heartbeat_s = heartbeat_s
        self._retry_s = retry_s
        self._batch_s = batch_s
        self._stop_timeout_s = stop_timeout_s
        self._changed: dict[str, Any] = {}
        self._gone: set[str] = set()
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._last_beat = float("-inf")
        self.link_up: Callable[[], bool] = lambda: True
        self.writes = 0
        self.failures = 0
        self.refused = 0  # calls the database refused to keep (each counted once)
        self._refused: set[str] = set()

    # --- what LiveCalls tells it ---
    def changed(self, ctx: Any) -> None:
        self._changed[ctx.call_id] = ctx
        self._gone.discard(ctx.call_id)
        self._wake.set()

    def gone(self, call_id: str) -> None:
        self._changed.pop(call_id, None)
        self._gone.add(call_id)
        self._refused.discard(call_id)
        self._wake.set()

    # --- lifetime ---
    async def load(self) -> Snapshot:
        return await self._store.load(self.pbx_id)

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="call-state-writer")

    async def stop(self, *, link_up: bool) -> None:
        """Write what is pending and, if the PBX was still in view, the shutdown time."""
        task, self._task = self._task, None
        self._stopping = True
        self._wake.set()
        try:
            async with asyncio.timeout(self._stop_timeout_s):
                if task is not None:
                    await asyncio.gather(task, return_exceptions=True)
                await self._write(beat=link_up, stopped=link_up)
        except Exception as exc:
            if task is not None and not task.done():
                task.cancel()  # the database does not answer: give up, loudly
            log.error("call_state.not_saved_at_stop", error=repr(exc), pending=len(self._changed))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            try:
                async with asyncio.timeout(self._heartbeat_s):
                    await self._wake.wait()
            except TimeoutError:
                pass
            else:
                await asyncio.sleep(self._batch_s)  # one transaction for a burst of changes
            self._wake.clear()
            if self._stopping:
                return
            beat = self.link_up() and loop.time() - self._last_beat >= self._heartbeat_s
            try:
                await self._write(beat=beat)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database down: keep the changes, try again
                self.failures += 1
                log.warning("call_state.write_failed", error=repr(exc), retry_in_s=self._retry_s)
                await asyncio.sleep(self._retry_s)
                self._wake.set()
            else:
                if beat:
                    self._last_beat = loop.time()

    async def _write(self, *, beat: bool, stopped: bool = False) -> None:
        changed, self._changed = self._changed, {}
        gone, self._gone = self._gone, set()
        if not (changed or gone or beat):
            return
        seen_at = self._clock.now() if beat else None
        try:
            saved = {call_id: self._encode(c) for call_id, c in changed.items()}
            try:
                await self._store.write(
                    self.pbx_id, list(saved.values()), gone, seen_at=seen_at, stopped=stopped
                )
            except Exception as exc:
                if not refused_by_database(exc):
                    raise
                await self._write_apart(saved, gone, seen_at=seen_at, stopped=stopped)
        except BaseException:
            for call_id, ctx in changed.items():  # not written: keep unless newer came
                self._changed.setdefault(call_id, ctx)
            self._gone |= gone - set(self._changed)
            raise
        self.writes += len(changed) + len(gone)

    async def _write_apart(
        self, saved: dict[str, SavedCall], gone: set[str], *, seen_at: float | None, stopped: bool
    ) -> None:
        """After a refusal: each call in its own transaction, then the calls gone and the
        heartbeat; a call the database refuses is dropped from this write (an outage raises,
        and the whole write is tried again)."""
        for call_id, call in saved.items():
            try:
                await self._store.write(self.pbx_id, [call], ())
            except Exception as exc:
                if not refused_by_database(exc):
                    raise
                if call_id not in self._refused:
                    self._refused.add(call_id)
                    self.refused += 1
                    log.error("call_state.refused", call_id=call_id[:150],
                              error=describe_db_error(exc)[:300])  # fmt: skip
        await self._store.write(self.pbx_id, [], gone, seen_at=seen_at, stopped=stopped)
