"""Callback tasks: callers who gave up in a queue, to be called back by that queue's agents.

A task is per number and queue: while it is open (``open`` or ``dialling``) a repeated abandon
from the same number in the same queue counts one more attempt on it instead of a new task.
An agent dials from the task (``dialling``, who and when); the outbound call's end closes it
with the outcome (answered / no_answer / busy; a call that never rang the number, cancelled or
failed, puts it back to ``open``). A later call from the number that an agent answers
closes its tasks with the reason "called again". Numbers of a do-not-call customer never get a task.
Times are epoch seconds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from crm_core.errors import CrmError, CrmUnavailable
from crm_core.models import CallbackTask, Customer, PhoneNumber

OPEN_STATUSES = ("open", "dialling")
# The outcomes that close a task; any other end of the callback leaves it to dial again.
CLOSING_OUTCOMES = ("answered", "no_answer", "busy")
CALLED_AGAIN = "called again"
DO_NOT_CALL = "do not call"  # closed: the customer refused calls after giving up


class UnknownTask(CrmError, LookupError):
    """No callback task with this id."""


class TaskClosed(CrmError):
    """The task is closed (or another agent is dialling it)."""


@dataclass(frozen=True)
class Task:
    task_id: int
    queue: str
    e164: str
    customer_id: int | None
    customer_name: str | None
    call_id: str
    last_call_id: str
    attempts: int
    wait_s: float | None
    created_at: float
    last_abandoned_at: float
    status: str
    dialled_by: str | None
    dialled_at: float | None
    outcome: str | None
    closed_reason: str | None
    closed_at: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "queue": self.queue,
            "number": self.e164,
            "customer_id": self.customer_id,
            "customer_name": self.customer_name,
            "call_id": self.call_id,
            "last_call_id": self.last_call_id,
            "attempts": self.attempts,
            "wait_s": self.wait_s,
            "created_at": self.created_at,
            "last_abandoned_at": self.last_abandoned_at,
            "status": self.status,
            "dialled_by": self.dialled_by,
            "dialled_at": self.dialled_at,
            "outcome": self.outcome,
            "closed_reason": self.closed_reason,
            "closed_at": self.closed_at,
        }


def _task(row: Any) -> Task:
    return Task(
        task_id=row.id,
        queue=row.queue,
        e164=row.e164,
        customer_id=row.customer_id,
        customer_name=row.name,
        call_id=row.call_id,
        last_call_id=row.last_call_id,
        attempts=row.attempts,
        wait_s=row.wait_s,
        created_at=row.created_at,
        last_abandoned_at=row.last_abandoned_at,
        status=row.status,
        dialled_by=row.dialled_by,
        dialled_at=row.dialled_at,
        outcome=row.outcome,
        closed_reason=row.closed_reason,
        closed_at=row.closed_at,
    )


_COLUMNS = (*CallbackTask.__table__.c, Customer.name)


class CallbackBook:
    """The callback tasks on the CRM's engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @asynccontextmanager
    async def _write(self, operation: str) -> AsyncIterator[AsyncConnection]:
        try:
            async with self.engine.begin() as conn:
                yield conn
        except (CrmError, sa_exc.IntegrityError):
            raise
        except (sa_exc.SQLAlchemyError, OSError, TimeoutError) as exc:
            raise CrmUnavailable(f"CRM database unavailable during {operation}: {exc}") from exc

    def _select(self) -> Any:
        return select(*_COLUMNS).outerjoin(Customer, Customer.id == CallbackTask.customer_id)

    async def abandoned(
        self,
        *,
        queue: str,
        e164: str,
        customer_id: int | None,
        call_id: str,
        wait_s: float | None,
        at: float,
    ) -> Task | None:
        """A caller with this number gave up in ``queue``: the open task of the number in the
        queue counts one more attempt, else a new task. None when the number belongs to a
        do-not-call customer (nobody calls them back)."""
        key = f"{queue}|{e164}"
        for attempt in range(2):
            try:
                async with self._write("callback_abandoned") as conn:
                    if await self._do_not_call(conn, e164):
                        return None
                    row = (
                        await conn.execute(select(CallbackTask).where(CallbackTask.open_key == key))
                    ).first()
                    if row is None:
                        task_id = (
                            await conn.execute(
                                insert(CallbackTask)
                                .values(
                                    open_key=key,
                                    queue=queue,
                                    e164=e164,
                                    customer_id=customer_id,
                                    call_id=call_id,
                                    last_call_id=call_id,
                                    attempts=1,
                                    wait_s=wait_s,
                                    created_at=at,
                                    last_abandoned_at=at,
                                    status="open",
                                )
                                .returning(CallbackTask.id)
                            )
                        ).scalar_one()
                    else:
                        task_id = row.id
                        if row.last_call_id != call_id and row.call_id != call_id:
                            longest = max(
                                (w for w in (row.wait_s, wait_s) if w is not None), default=None
                            )
                            await conn.execute(
                                update(CallbackTask)
                                .where(CallbackTask.id == task_id)
                                .values(
                                    attempts=row.attempts + 1,
                                    last_call_id=call_id,
                                    last_abandoned_at=at,
                                    wait_s=longest,
                                    customer_id=row.customer_id or customer_id,
                                )
                            )
                break
            except sa_exc.IntegrityError:
                if attempt:  # the other writer's task is there now: counted on the retry
                    raise
        return await self.get(task_id)

    async def called_again(self, e164: str, *, call_id: str, at: float) -> list[int]:
        """The number rang in again and an agent answered: its open tasks (not being dialled)
        close."""
        async with self._write("callback_called_again") as conn:
            ids = list(
                (
                    await conn.execute(
                        select(CallbackTask.id).where(
                            CallbackTask.e164 == e164,
                            CallbackTask.status == "open",
                            CallbackTask.last_call_id != call_id,
                        )
                    )
                ).scalars()
            )
            if ids:
                await conn.execute(
                    update(CallbackTask)
                    .where(CallbackTask.id.in_(ids))
                    .values(
                        status="closed", open_key=None, closed_reason=CALLED_AGAIN, closed_at=at
                    )
                )
        return ids

    async def for_queues(self, queues: Iterable[str] | None) -> list[Task]:
        """Open tasks (and those being dialled) of these queues (None: all), oldest first."""
        stmt = self._select().where(CallbackTask.status.in_(OPEN_STATUSES))
        if queues is not None:
            stmt = stmt.where(CallbackTask.queue.in_(list(queues)))
        return await self._load(stmt.order_by(CallbackTask.created_at, CallbackTask.id))

    async def open_for(self, customer_id: int) -> list[Task]:
        """The customer's open tasks (and those being dialled), oldest first."""
        stmt = self._select().where(
            CallbackTask.customer_id == customer_id, CallbackTask.status.in_(OPEN_STATUSES)
        )
        return await self._load(stmt.order_by(CallbackTask.created_at, CallbackTask.id))

    async def get(self, task_id: int) -> Task | None:
        found = await self._load(self._select().where(CallbackTask.id == task_id))
        return found[0] if found else None

    async def start_dialling(self, task_id: int, *, agent: str, at: float) -> Task:
        """An agent dials the task's number: only an open task, and only once at a time."""
        async with self._write("callback_dial") as conn:
            done = await conn.execute(
                update(CallbackTask)
                .where(CallbackTask.id == task_id, CallbackTask.status == "open")
                .values(status="dialling", dialled_by=agent, dialled_at=at)
            )
            if not done.rowcount:
                row = (
                    await conn.execute(select(CallbackTask).where(CallbackTask.id == task_id))
                ).first()
                if row is None:
                    raise UnknownTask(f"task_id: no callback task {task_id}")
                if row.status == "dialling":
                    raise TaskClosed(f"task_id: {row.dialled_by} is already calling this number")
                raise TaskClosed(f"task_id: callback task {task_id} is {row.status}")
        task = await self.get(task_id)
        assert task is not None
        return task

    async def close(self, task_id: int, *, reason: str, at: float) -> bool:
        """Close an open task (not one being dialled) for ``reason``; False if it was not open."""
        async with self._write("callback_close") as conn:
            done = await conn.execute(
                update(CallbackTask)
                .where(CallbackTask.id == task_id, CallbackTask.status == "open")
                .values(status="closed", open_key=None, closed_reason=reason, closed_at=at)
            )
        return bool(done.rowcount)

    async def dial_failed(self, task_id: int) -> None:
        """The dial did not reach Asterisk: the task is open again."""
        async with self._write("callback_dial_failed") as conn:
            await conn.execute(
                update(CallbackTask)
                .where(CallbackTask.id == task_id, CallbackTask.status == "dialling")
                .values(status="open", dialled_by=None, dialled_at=None)
            )

    async def outbound_ended(
        self, e164: str, *, agents: Iterable[str], outcome: str, at: float
    ) -> list[int]:
        """A call out to ``e164`` ended: the tasks being dialled for it by one of ``agents``
        record the outcome and close (answered/no_answer/busy), or open again."""
        names = [a for a in agents if a]
        closing = outcome in CLOSING_OUTCOMES
        async with self._write("callback_outbound_ended") as conn:
            condition = and_(CallbackTask.e164 == e164, CallbackTask.status == "dialling")
            if names:
                condition = and_(
                    condition,
                    or_(CallbackTask.dialled_by.in_(names), CallbackTask.dialled_by.is_(None)),
                )
            ids = list((await conn.execute(select(CallbackTask.id).where(condition))).scalars())
            if ids:
                values: dict[str, Any] = {"outcome": outcome}
                if closing:
                    values.update(status="closed", open_key=None, closed_reason="called back",
                                  closed_at=at)  # fmt: skip
                else:
                    values.update(status="open")
                await conn.execute(
                    update(CallbackTask).where(CallbackTask.id.in_(ids)).values(values)
                )
        return ids

    async def _do_not_call(self, conn: AsyncConnection, e164: str) -> bool:
        flagged = await conn.execute(
            select(Customer.id)
            .join(PhoneNumber, PhoneNumber.customer_id == Customer.id)
            .where(PhoneNumber.e164 == e164, Customer.do_not_call.is_(True))
            .limit(1)
        )
        return flagged.scalar() is not None

    async def _load(self, stmt: Any) -> list[Task]:
        try:
            async with self.engine.connect() as conn:
                return [_task(r) for r in (await conn.execute(stmt)).all()]
        except (sa_exc.SQLAlchemyError, OSError, TimeoutError) as exc:
            raise CrmUnavailable(f"CRM database unavailable reading callbacks: {exc}") from exc


__all__ = ["CALLED_AGAIN", "CallbackBook", "Task", "TaskClosed", "UnknownTask"]
