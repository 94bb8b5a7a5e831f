"""A durable outbox: events and write-backs kept in the database until their target took them.

``submit`` never blocks the call flow: items are buffered and a writer puts them in the
``outbox`` table (migration 0005) within milliseconds; ``stop`` writes what is buffered. A
dispatcher then delivers each pending row to its target, in order per (target, call): the next
event of a call waits until the one before it was delivered or given up. A failed delivery is
retried with exponential backoff (``retry_initial_s`` doubling up to ``retry_max_s``) until
``give_up_after_s`` after it was submitted, then marked ``failed`` (``cti webhooks --retry``
puts it back). A restart picks up every pending row: delivery is at least once, and a
redelivery carries the same idempotency key.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa
import structlog
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_core.models import OutboxItem as OutboxRow

log = structlog.get_logger(__name__)

# The table is declared with the CRM schema (crm_core.models), created by migration 0005.
OUTBOX: sa.Table = OutboxRow.__table__  # type: ignore[assignment]


class DeliveryError(Exception):
    """A target did not take an item; it will be retried."""


@dataclass(frozen=True)
class OutboxItem:
    id: int
    target: str
    ordering_key: str
    idempotency_key: str
    event: str
    payload: dict[str, Any]
    status: str
    attempts: int
    next_attempt_at: float
    last_error: str | None
    created_at: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "target": self.target,
            "call_id": self.ordering_key,
            "idempotency_key": self.idempotency_key,
            "event": self.event,
            "status": self.status,
            "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at,
            "last_error": self.last_error,
            "created_at": self.created_at,
        }


class Target(Protocol):
    """Where outbox items go: a webhook URL, the message bus, a CRM's write-back."""

    @property
    def name(self) -> str: ...

    def accepts(self, event: str) -> bool: ...

    async def deliver(self, item: OutboxItem) -> None:
        """Deliver or raise (``DeliveryError`` or any exception: retried)."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class _Submission:
    target: str
    ordering_key: str
    idempotency_key: str
    event: str
    payload: str
    replace_pending: bool


def _item(row: Any) -> OutboxItem:
    return OutboxItem(
        id=row.id,
        target=row.target,
        ordering_key=row.ordering_key,
        idempotency_key=row.idempotency_key,
        event=row.event,
        payload=json.loads(row.payload),
        status=row.status,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
        created_at=row.created_at,
    )


class Outbox:
    def __init__(
        self,
        engine: AsyncEngine,
        targets: Sequence[Target],
        *,
        retry_initial_s: float = 1.0,
        retry_max_s: float = 300.0,
        give_up_after_s: float = 3 * 86400,
        delivery_timeout_s: float = 10.0,
        batch: int = 500,
        concurrency: int = 8,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._engine = engine
        self._targets = {t.name: t for t in targets}
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._give_up_after_s = give_up_after_s
        self._delivery_timeout_s = delivery_timeout_s
        self._batch = batch
        self._concurrency = concurrency
        self._clock = clock
        self._buffer: list[_Submission] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0
        self.failures = 0

    @property
    def targets(self) -> list[str]:
        return list(self._targets)

    def has_target(self, name: str) -> bool:
        return name in self._targets

    # ---- in -------------------------------------------------------------------------------

    def submit(
        self,
        event: str,
        ordering_key: str,
        payload: dict[str, Any],
        *,
        idempotency_key: str,
        targets: Sequence[str] | None = None,
        replace_pending: bool = False,
    ) -> int:
        """Queue ``payload`` for each target that takes ``event`` (or for ``targets``);
        ``replace_pending`` updates a still-pending item with the same key instead of adding
        one. Returns how many targets it was queued for."""
        names = (
            [n for n in targets if n in self._targets]
            if targets is not None
            else [n for n, t in self._targets.items() if t.accepts(event)]
        )
        if not names:
            return 0
        body = json.dumps(payload, default=str, separators=(",", ":"))
        for name in names:
            self._buffer.append(
                _Submission(name, ordering_key, idempotency_key, event, body, replace_pending)
            )
        if self._wake is not None:
            self._wake.set()
        return len(names)

    async def flush(self) -> None:
        """Write the buffered submissions to the database (in one transaction)."""
        if not self._buffer:
            return
        batch, self._buffer = self._buffer, []
        now = self._clock()
        try:
            async with self._engine.begin() as conn:
                for item in batch:
                    if item.replace_pending:
                        updated = await conn.execute(
                            sa.update(OUTBOX)
                            .where(OUTBOX.c.target == item.target)
                            .where(OUTBOX.c.idempotency_key == item.idempotency_key)
                            .where(OUTBOX.c.status == "pending")
                            .values(payload=item.payload)
                        )
                        if updated.rowcount:
                            continue
                    await conn.execute(
                        self._insert_ignoring_duplicates().values(
                            target=item.target,
                            ordering_key=item.ordering_key,
                            idempotency_key=item.idempotency_key,
                            event=item.event,
                            payload=item.payload,
                            status="pending",
                            attempts=0,
                            next_attempt_at=now,
                            created_at=now,
                        )
                    )
        except BaseException:
            self._buffer[:0] = batch  # nothing lost: written on the next flush
            raise

    def _insert_ignoring_duplicates(self) -> Any:
        if self._engine.dialect.name == "postgresql":
            return postgresql.insert(OUTBOX).on_conflict_do_nothing()
        return sqlite.insert(OUTBOX).on_conflict_do_nothing()

    # ---- out ------------------------------------------------------------------------------

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._wake.set()
        self._task = asyncio.create_task(self._run(), name="outbox")

    async def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Deliver what can be within ``drain_timeout_s``; what is left stays in the database
        (an item cut off mid-delivery is delivered again later, with the same key)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
            try:
                async with asyncio.timeout(drain_timeout_s):
                    await self.flush()
                    while await self.deliver_due() == 0.0:
                        pass
            except TimeoutError:
                pass
            except Exception as exc:
                log.warning("outbox drain failed", error=repr(exc))
        try:
            await self.flush()
        except Exception as exc:
            log.error("outbox items not written", count=len(self._buffer), error=repr(exc))
        for target in self._targets.values():
            try:
                await target.close()
            except Exception as exc:
                log.warning("outbox target close failed", target=target.name, error=repr(exc))

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            try:
                await self.flush()
                wait = await self.deliver_due()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is down: keep the buffer, try again
                log.warning("outbox pass failed", error=repr(exc))
                wait = self._retry_initial_s
            self._wake.clear()
            try:
                async with asyncio.timeout(wait):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def _heads(self) -> list[OutboxItem]:
        """The first pending item of each (target, call), oldest first."""
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(OUTBOX)
                    .where(OUTBOX.c.status == "pending")
                    .order_by(OUTBOX.c.id)
                    .limit(self._batch)
                )
            ).all()
        heads: dict[tuple[str, str], OutboxItem] = {}
        for row in rows:
            heads.setdefault((row.target, row.ordering_key), _item(row))
        return [i for i in heads.values() if i.target in self._targets]

    async def deliver_due(self) -> float:
        """Deliver every head item that is due; the seconds until the next one is."""
        heads = await self._heads()
        now = self._clock()
        due = [i for i in heads if i.next_attempt_at <= now]
        if due:
            limit = asyncio.Semaphore(self._concurrency)

            async def one(item: OutboxItem) -> None:
                async with limit:
                    await self._deliver(item)

            await asyncio.gather(*(one(i) for i in due))
            return 0.0  # the next items of those calls may be due now
        later = [i.next_attempt_at - now for i in heads]
        return max(0.01, min(later, default=5.0))

    async def _deliver(self, item: OutboxItem) -> None:
        target = self._targets[item.target]
        try:
            async with asyncio.timeout(self._delivery_timeout_s):
                await target.deliver(item)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.failures += 1
            await self._failed(item, exc)
            return
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.update(OUTBOX)
                .where(OUTBOX.c.id == item.id)
                .values(status="delivered", delivered_at=self._clock(), attempts=item.attempts + 1)
            )
        self.delivered += 1  # counted once the database says so (tests and metrics read it)

    async def _failed(self, item: OutboxItem, exc: BaseException) -> None:
        attempts = item.attempts + 1
        now = self._clock()
        delay = min(self._retry_initial_s * 2 ** (attempts - 1), self._retry_max_s)
        give_up = now - item.created_at >= self._give_up_after_s
        error = str(exc) or type(exc).__name__
        log.warning(
            "outbox delivery failed", target=item.target, call_event=item.event,
            call_id=item.ordering_key, attempts=attempts, error=error,
            retry_in_s=None if give_up else delay,
        )  # fmt: skip
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.update(OUTBOX)
                .where(OUTBOX.c.id == item.id)
                .values(
                    status="failed" if give_up else "pending",
                    attempts=attempts,
                    next_attempt_at=now + delay,
                    last_error=error[:1000],
                )
            )

    # ---- inspection (cti webhooks) ---------------------------------------------------------

    async def items(self, statuses: Sequence[str] = ("pending", "failed")) -> list[OutboxItem]:
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(OUTBOX).where(OUTBOX.c.status.in_(statuses)).order_by(OUTBOX.c.id)
                )
            ).all()
        return [_item(r) for r in rows]

    async def retry(self, ids: Sequence[int] | None = None) -> int:
        """Put failed items (all, or those ids) and waiting ones back to be delivered now."""
        statement = (
            sa.update(OUTBOX)
            .where(OUTBOX.c.status.in_(("pending", "failed")))
            # The give-up window starts again from now.
            .values(status="pending", next_attempt_at=self._clock(), created_at=self._clock())
        )
        if ids is not None:
            statement = statement.where(OUTBOX.c.id.in_(list(ids)))
        async with self._engine.begin() as conn:
            result = await conn.execute(statement)
        if self._wake is not None:
            self._wake.set()
        return int(result.rowcount or 0)
