"""Cases opened and followed from the pop: a reason sets the tier and the SLA deadline, and a
case carries the calls made about it (table ``case_calls``).

``CaseBook`` works on the CRM's engine. Reasons come from the configuration (``[cases]``) as
``CaseReason`` values; a case's subject is its reason's label unless the agent gives one.
Errors: ``InvalidCase`` (400: an unknown reason...), ``UnknownCase`` (404), ``CaseClosed``
(409), ``CrmUnavailable`` when the database is down.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from crm_core.errors import CrmError, CrmUnavailable
from crm_core.models import CASE_OPEN_STATUSES, Case, CaseCall, Customer

MAX_SUBJECT = 200


class InvalidCase(CrmError, ValueError):
    """A case request that cannot be done as asked (unknown reason, wrong customer...)."""


class UnknownCase(CrmError, LookupError):
    """No case with this id."""


class CaseClosed(CrmError):
    """The case is closed: nothing more is done on it."""


@dataclass(frozen=True)
class CaseReason:
    """Why a case is opened: sets its tier and how long the SLA gives to resolve it."""

    name: str
    label: str
    tier: str
    sla_hours: float


@dataclass(frozen=True)
class CaseCallView:
    call_id: str
    linked_at: float
    linked_by: str | None


@dataclass(frozen=True)
class CaseRecord:
    case_id: int
    customer_id: int
    subject: str
    status: str
    tier: str | None
    sla_deadline: datetime | None
    opened_at: datetime | None
    notes: str
    calls: tuple[CaseCallView, ...] = field(default_factory=tuple)

    @property
    def open(self) -> bool:
        return self.status in CASE_OPEN_STATUSES

    def to_dict(self, now: float | None = None) -> dict[str, Any]:
        """JSON for the API; ``sla_left_s`` is the time left until the deadline at ``now``
        (negative: overdue)."""
        at = time.time() if now is None else now
        deadline = self.sla_deadline
        return {
            "case_id": self.case_id,
            "customer_id": self.customer_id,
            "subject": self.subject,
            "status": self.status,
            "tier": self.tier,
            "sla_deadline": deadline.isoformat() if deadline else None,
            "sla_left_s": round(deadline.timestamp() - at, 1) if deadline else None,
            "opened_at": self.opened_at.isoformat() if self.opened_at else None,
            "notes": self.notes,
            "calls": [
                {"call_id": c.call_id, "linked_at": c.linked_at, "linked_by": c.linked_by}
                for c in self.calls
            ],
        }


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


async def calls_of_cases(conn: AsyncConnection, case_ids: Iterable[int]) -> dict[int, list[str]]:
    """The call ids of each case, oldest first (for the 360° view)."""
    wanted = list(case_ids)
    found: dict[int, list[str]] = {}
    if not wanted:
        return found
    rows = await conn.execute(
        select(CaseCall.case_id, CaseCall.call_id)
        .where(CaseCall.case_id.in_(wanted))
        .order_by(CaseCall.linked_at, CaseCall.call_id)
    )
    for case_id, call_id in rows.all():
        found.setdefault(case_id, []).append(call_id)
    return found


class CaseBook:
    """Open, link, close and escalate cases; ``clock`` gives epoch seconds (tests pass one)."""

    def __init__(
        self,
        engine: AsyncEngine,
        reasons: Mapping[str, CaseReason],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.reasons = dict(reasons)
        self.clock = clock

    @asynccontextmanager
    async def _write(self, operation: str) -> AsyncIterator[AsyncConnection]:
        try:
            async with self.engine.begin() as conn:
                yield conn
        except CrmError:
            raise
        except (sa_exc.IntegrityError, sa_exc.DataError) as exc:
            raise InvalidCase(f"{operation} refused by the database: {exc.orig}") from exc
        except (sa_exc.SQLAlchemyError, OSError, TimeoutError) as exc:
            raise CrmUnavailable(f"CRM database unavailable during {operation}: {exc}") from exc

    def reason(self, name: str) -> CaseReason:
        found = self.reasons.get(name)
        if found is None:
            known = ", ".join(sorted(self.reasons)) or "none configured"
            raise InvalidCase(f"reason: unknown reason {name!r} (known: {known})")
        return found

    async def open_case(
        self,
        customer_id: int,
        reason: str,
        *,
        by: str,
        call_id: str | None = None,
        subject: str | None = None,
        product: str | None = None,
    ) -> CaseRecord:
        """A new case for the customer: tier and SLA deadline from the reason; the call that
        opened it is its first call."""
        why = self.reason(reason)
        title = (subject or "").strip() or why.label
        if len(title) > MAX_SUBJECT:
            raise InvalidCase(f"subject: longer than {MAX_SUBJECT} characters")
        now = self.clock()
        opened = datetime.fromtimestamp(now, UTC)
        async with self._write("open_case") as conn:
            exists = await conn.execute(select(Customer.id).where(Customer.id == customer_id))
            if exists.scalar() is None:
                raise InvalidCase(f"customer_id: no customer {customer_id}")
            case_id = (
                await conn.execute(
                    insert(Case)
                    .values(
                        customer_id=customer_id,
                        subject=title,
                        status="open",
                        tier=why.tier,
                        product=product,
                        sla_deadline=opened + timedelta(hours=why.sla_hours),
                        notes=f"reason: {why.label} (opened by {by})",
                        opened_at=opened,
                    )
                    .returning(Case.id)
                )
            ).scalar_one()
            if call_id:
                await self._link(conn, case_id, call_id, by, now)
        return await self._require(case_id)

    async def add_call(self, case_id: int, call_id: str, *, by: str) -> CaseRecord:
        """Record that this call was about the case (once; an open case only)."""
        async with self._write("add_call") as conn:
            await self._open_row(conn, case_id)
            await self._link(conn, case_id, call_id, by, self.clock())
        return await self._require(case_id)

    async def close(self, case_id: int, *, by: str, note: str = "") -> CaseRecord:
        async with self._write("close_case") as conn:
            row = await self._open_row(conn, case_id)
            text = f"closed by {by}" + (f": {note.strip()}" if note.strip() else "")
            notes = f"{row.notes}\n{text}" if row.notes else text
            await conn.execute(
                update(Case).where(Case.id == case_id).values(status="closed", notes=notes)
            )
        return await self._require(case_id)

    async def escalate(
        self, case_id: int, tier: str, *, by: str, call_id: str | None = None, reason: str = ""
    ) -> CaseRecord:
        """The case goes to ``tier`` with the call that escalates it."""
        async with self._write("escalate_case") as conn:
            row = await self._open_row(conn, case_id)
            text = f"escalated to {tier} by {by}" + (f": {reason}" if reason else "")
            notes = f"{row.notes}\n{text}" if row.notes else text
            await conn.execute(
                update(Case)
                .where(Case.id == case_id)
                .values(status="escalated", tier=tier, notes=notes)
            )
            if call_id:
                await self._link(conn, case_id, call_id, by, self.clock())
        return await self._require(case_id)

    async def check_open(self, case_id: int, customer_id: int | None) -> CaseRecord:
        """The case, if open and the customer's (before acting on it): else the error."""
        case = await self._require(case_id)
        if not case.open:
            raise CaseClosed(f"case_id: case {case_id} is {case.status}")
        if customer_id is None or case.customer_id != customer_id:
            raise InvalidCase(f"case_id: case {case_id} is not a case of this call's customer")
        return case

    async def get(self, case_id: int) -> CaseRecord | None:
        cases = await self._load(select(Case).where(Case.id == case_id))
        return cases[0] if cases else None

    async def open_cases(self, customer_id: int) -> list[CaseRecord]:
        """The customer's open cases, most urgent SLA first."""
        return await self._load(
            select(Case)
            .where(Case.customer_id == customer_id, Case.status.in_(CASE_OPEN_STATUSES))
            .order_by(Case.sla_deadline.is_(None), Case.sla_deadline, Case.id)
        )

    # -- internals ------------------------------------------------------------------------

    async def _require(self, case_id: int) -> CaseRecord:
        case = await self.get(case_id)
        if case is None:
            raise UnknownCase(f"case_id: no case {case_id}")
        return case

    async def _open_row(self, conn: AsyncConnection, case_id: int) -> Any:
        row = (await conn.execute(select(Case).where(Case.id == case_id))).first()
        if row is None:
            raise UnknownCase(f"case_id: no case {case_id}")
        if row.status not in CASE_OPEN_STATUSES:
            raise CaseClosed(f"case_id: case {case_id} is {row.status}")
        return row

    async def _link(
        self, conn: AsyncConnection, case_id: int, call_id: str, by: str, at: float
    ) -> None:
        linked = await conn.execute(
            select(CaseCall.call_id).where(CaseCall.case_id == case_id, CaseCall.call_id == call_id)
        )
        if linked.scalar() is None:
            await conn.execute(
                insert(CaseCall).values(
                    case_id=case_id, call_id=call_id, linked_at=at, linked_by=by
                )
            )

    async def _load(self, stmt: Any) -> list[CaseRecord]:
        try:
            async with self.engine.connect() as conn:
                rows = (await conn.execute(stmt)).all()
                ids = [r.id for r in rows]
                links: dict[int, list[CaseCallView]] = {}
                if ids:
                    for case_id, call_id, at, by in (
                        await conn.execute(
                            select(
                                CaseCall.case_id,
                                CaseCall.call_id,
                                CaseCall.linked_at,
                                CaseCall.linked_by,
                            )
                            .where(CaseCall.case_id.in_(ids))
                            .order_by(CaseCall.linked_at, CaseCall.call_id)
                        )
                    ).all():
                        links.setdefault(case_id, []).append(CaseCallView(call_id, at, by))
        except (sa_exc.SQLAlchemyError, OSError, TimeoutError) as exc:
            raise CrmUnavailable(f"CRM database unavailable reading cases: {exc}") from exc
        return [
            CaseRecord(
                case_id=r.id,
                customer_id=r.customer_id,
                subject=r.subject,
                status=r.status,
                tier=r.tier,
                sla_deadline=_utc(r.sla_deadline),
                opened_at=_utc(r.opened_at),
                notes=r.notes,
                calls=tuple(links.get(r.id, ())),
            )
            for r in rows
        ]


__all__ = [
    "CaseBook",
    "CaseClosed",
    "CaseReason",
    "CaseRecord",
    "InvalidCase",
    "UnknownCase",
    "calls_of_cases",
]
