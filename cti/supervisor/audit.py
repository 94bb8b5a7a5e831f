"""The supervision audit log: who listened to, whispered to or barged into which call, which
recordings were made and who played them back. Supervisors read it (``GET
/api/supervisor/audit``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, and_, case, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_core.models import SupervisorAudit

AUDIT: Table = SupervisorAudit.__table__  # type: ignore[assignment]


def _not_before_start(at: float) -> Any:
    """``at``, or the row's start if later: a session never lasts less than nothing (the
    request's time is this host's clock, an end from the event flow Asterisk's)."""
    return case((AUDIT.c.at > at, AUDIT.c.at), else_=at)


class AuditLog:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def add(
        self,
        *,
        at: float,
        supervisor: str,
        action: str,
        call_id: str | None,
        target: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> int:
        row = {
            "at": at,
            "supervisor": supervisor,
            "action": action,
            "call_id": call_id,
            "target": target,
            "detail": detail or {},
        }
        async with self._engine.begin() as conn:
            result = await conn.execute(insert(AUDIT).values(**row).returning(AUDIT.c.id))
            return int(result.scalar_one())

    async def started(self, audit_id: int, at: float) -> None:
        """A spy session began at ``at`` (Asterisk's ChanSpyStart: the supervisor's phone
        answered), not when it was asked for."""
        async with self._engine.begin() as conn:
            await conn.execute(update(AUDIT).where(AUDIT.c.id == audit_id).values(at=at))

    async def close(self, audit_id: int, at: float) -> bool:
        """One session ends now (its spyer stopped or hung up), if still open."""
        c = AUDIT.c
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(AUDIT)
                .where(c.id == audit_id, c.ended_at.is_(None))
                .values(ended_at=_not_before_start(at))
            )
            return bool(result.rowcount)

    async def close_for_call(self, call_id: str, at: float, actions: tuple[str, ...]) -> int:
        """The sessions on this call still open end now (ChanSpy exits with the call)."""
        c = AUDIT.c
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(AUDIT)
                .where(c.call_id == call_id, c.ended_at.is_(None), c.action.in_(actions))
                .values(ended_at=_not_before_start(at))
            )
            return int(result.rowcount or 0)

    async def find(self, call_id: str, action: str) -> dict[str, Any] | None:
        c = AUDIT.c
        query = select(AUDIT).where(c.call_id == call_id, c.action == action).order_by(c.id.desc())
        async with self._engine.connect() as conn:
            row = (await conn.execute(query.limit(1))).mappings().first()
        return dict(row) if row is not None else None

    async def entries(self, start: float, end: float, limit: int = 1000) -> list[dict[str, Any]]:
        c = AUDIT.c
        query = select(AUDIT).where(and_(c.at >= start, c.at < end)).order_by(c.at).limit(limit)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        out = []
        for row in rows:
            item = dict(row)
            ended = item["ended_at"]
            item["duration_s"] = round(ended - item["at"], 3) if ended is not None else None
            out.append(item)
        return out
