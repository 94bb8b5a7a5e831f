"""The live call state kept in the database, so that a restarted daemon picks calls up.

Rows of ``live_calls`` are keyed by PBX id and call id (several PBXes, later several
instances, share one table); each holds the call's context as ``LiveCalls`` has it (who is
calling, the routing decision, queues, agents, pops sent, escalations and notes) and its
times on the PBX's clock. ``live_pbx`` holds, per PBX, the last moment its calls were known
to be up: a heartbeat while the link is up, the shutdown time on an orderly stop.

``CallStateWriter`` is owned by the daemon: ``LiveCalls`` marks a context changed
(``changed(ctx)``), one task writes the latest version of each changed call in batches, and
a call is deleted once it ended and its interaction record was handed over. Nothing here is
on the event path: a database that is slow or down delays the rows, never the calls.

``PbxClock`` maps the daemon's monotonic clock onto Asterisk's, from the ``Timestamp`` of
the events and Asterisk's Ping answers: "now" and "when the link was lost" are said in the
same clock as every other time of a call, even when the hosts' clocks differ.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

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

    async def save(self, pbx_id: str, calls: Iterable[SavedCall]) -> None: ...

    async def forget(self, pbx_id: str, call_ids: Iterable[str]) -> None: ...

    async def seen(self, pbx_id: str, at: float, *, stopped: bool = False) -> None: ...


class SqlCallState:
    """``CallStateStore`` on the CRM's engine (SQLite or PostgreSQL), same code on both."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._pg = engine.dialect.name == "postgresql"

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

    async def save(self, pbx_id: str, calls: Iterable[SavedCall]) -> None:
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
        if not rows:
            return
        table = LiveCall.__table__
        stmt = self._insert(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=["pbx_id", "call_id"],
            set_={
                "state": stmt.excluded.state,
                "started_at": stmt.excluded.started_at,
                "answered_at": stmt.excluded.answered_at,
                "ended_at": stmt.excluded.ended_at,
                "context": stmt.excluded.context,
                "version": table.c.version + 1,
                "updated_at": stmt.excluded.updated_at,
            },
        )
        async with self._engine.begin() as conn:
            await conn.execute(stmt, rows)

    async def forget(self, pbx_id: str, call_ids: Iterable[str]) -> None:
        ids = list(call_ids)
        if not ids:
            return
        async with self._engine.begin() as conn:
            await conn.execute(
                delete(LiveCall).where(LiveCall.pbx_id == pbx_id, LiveCall.call_id.in_(ids))
            )

    async def seen(self, pbx_id: str, at: float, *, stopped: bool = False) -> None:
        stmt = self._insert(LivePbx.__table__).values(
            pbx_id=pbx_id, seen_at=at, stopped_at=at if stopped else None
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["pbx_id"],
            set_={"seen_at": stmt.excluded.seen_at, "stopped_at": stmt.excluded.stopped_at},
        )
        async with self._engine.begin() as conn:
            await conn.execute(stmt)


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
    """Writes changed calls in the background (see the module docstring)."""

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
    ) -> None:
        self._batch_s = batch_s
        self._store = store
        self.pbx_id = pbx_id
        self._encode = encode
        self._clock = clock
        self._heartbeat_s = heartbeat_s
        self._retry_s = retry_s
        self._changed: dict[str, Any] = {}
        self._gone: set[str] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.link_up: Callable[[], bool] = lambda: True
        self.writes = 0
        self.failures = 0

    # --- what LiveCalls tells it ---
    def changed(self, ctx: Any) -> None:
        self._changed[ctx.call_id] = ctx
        self._gone.discard(ctx.call_id)
        self._wake.set()

    def gone(self, call_id: str) -> None:
        self._changed.pop(call_id, None)
        self._gone.add(call_id)
        self._wake.set()

    # --- lifetime ---
    async def load(self) -> Snapshot:
        return await self._store.load(self.pbx_id)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="call-state-writer")

    async def stop(self, *, link_up: bool) -> None:
        """Write what is pending and, if the PBX was still in view, the shutdown time."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        try:
            async with asyncio.timeout(5.0):
                await self._write()
                if link_up:
                    await self._store.seen(self.pbx_id, self._clock.now(), stopped=True)
        except Exception as exc:
            log.error("call_state.not_saved_at_stop", error=repr(exc), pending=len(self._changed))

    async def _run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self._heartbeat_s):
                    await self._wake.wait()
            except TimeoutError:
                pass
            else:
                await asyncio.sleep(self._batch_s)  # one transaction for a burst of changes
            self._wake.clear()
            try:
                await self._write()
                if self.link_up():
                    await self._store.seen(self.pbx_id, self._clock.now())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database down: keep the changes, try again
                self.failures += 1
                log.warning("call_state.write_failed", error=repr(exc), retry_in_s=self._retry_s)
                await asyncio.sleep(self._retry_s)
                self._wake.set()

    async def _write(self) -> None:
        changed, self._changed = self._changed, {}
        gone, self._gone = self._gone, set()
        try:
            if changed:
                await self._store.save(self.pbx_id, [self._encode(c) for c in changed.values()])
            if gone:
                await self._store.forget(self.pbx_id, gone)
        except BaseException:
            for call_id, ctx in changed.items():  # not written: keep unless newer came
                self._changed.setdefault(call_id, ctx)
            self._gone |= gone - set(self._changed)
            raise
        self.writes += len(changed) + len(gone)
