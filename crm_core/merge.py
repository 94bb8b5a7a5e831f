"""Merging two customers into one and dividing one into two: each in one transaction, audited.

A **merge** moves every row that belongs to the merged-away customer (every table with a
foreign key to ``customers.id``, so a table added later moves too: contacts, numbers, cases,
orders, products, interactions...) to the survivor, combines the flags conservatively (a
do-not-call, VIP, hearing-impaired... on either stays on; marketing consent only if both gave
it), fills the survivor's empty fields from the other, and leaves a tombstone
(``customer_merges``) so that the old id still leads to the survivor. The rows per table of
both customers are counted before and after, inside the transaction, and the merge is undone
unless every row is accounted for (survivor after = both before, merged-away after = 0, every
table's total unchanged). The counts and the ids moved are in the audit entry.

A **divide** moves chosen numbers, interactions and cases of one customer (a household number
that two people share) to another customer, picked or created in the same transaction; a
number can also be copied so that both hold it. Also audited, with the same counts.

The resolution cache is invalidated for every number whose holders changed.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import Column, Table, Text, and_, cast, func, insert, or_, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from crm_core.duplicates import MIN_SCORE, DuplicateReport, load_and_find
from crm_core.errors import CrmError, CrmUnavailable
from crm_core.models import (
    FLAGS,
    Base,
    Case,
    Customer,
    CustomerAudit,
    CustomerMerge,
    CustomerWord,
    Interaction,
    PhoneNumber,
    name_words,
)
from crm_core.store import CrmStore
from crm_core.types import renamed_candidates

log = structlog.get_logger(__name__)

CUSTOMERS: Table = Customer.__table__  # type: ignore[assignment]
AUDIT: Table = CustomerAudit.__table__  # type: ignore[assignment]
MERGES: Table = CustomerMerge.__table__  # type: ignore[assignment]
# Not moved by a merge: the words of the merged-away customer's own name (its tombstone keeps
# them) and the tombstones themselves.
NOT_MOVED = frozenset({CustomerWord.__tablename__, CustomerMerge.__tablename__})
# Flags that stay on when either customer has them; marketing consent needs both.
ANY_OF = tuple(f for f in FLAGS if f != "marketing_opt_in")
FILLED = ("external_id", "organisation", "email", "address", "language")


class CustomerNotFound(CrmError):
    """No customer with that id (404)."""


class MergeConflict(CrmError):
    """The request cannot apply to these customers as they are (409): the same customer
    twice, one already merged away, a record that is not the customer's."""


class InvalidDivide(CrmError, ValueError):
    """A divide asked for nothing to move, or for a new customer without a name (400)."""


class RecordsLost(CrmError):
    """The counts after a merge or divide do not add up: it was undone (should never happen)."""


@dataclass(frozen=True)
class NewCustomer:
    """The second person of a divide, created in its transaction (address: the source's)."""

    name: str
    email: str | None = None
    address: str | None = None


def owned_tables() -> list[tuple[Table, Column[Any]]]:
    """Every table whose rows belong to a customer, with the column that says which."""
    found = []
    for table in Base.metadata.sorted_tables:
        if table.name in NOT_MOVED or table.name == CUSTOMERS.name:
            continue
        for fk in table.foreign_keys:
            if fk.column.table.name == CUSTOMERS.name and fk.column.name == "id":
                found.append((table, fk.parent))
    return found


async def _counts(conn: AsyncConnection, ids: Sequence[int]) -> dict[str, dict[str, int]]:
    """Rows per table: for each customer of ``ids`` and the table's total."""
    out: dict[str, dict[str, int]] = {}
    for table, column in owned_tables():
        per = {str(i): 0 for i in ids}
        rows = await conn.execute(
            select(column, func.count()).where(column.in_(list(ids))).group_by(column)
        )
        for owner, count in rows.all():
            per[str(owner)] = int(count)
        total = (await conn.execute(select(func.count()).select_from(table))).scalar_one()
        out[table.name] = {**per, "total": int(total)}
    return out


class CustomerMaintenance:
    """Merge, divide and the audit of both, on the store's database (``CrmStore``)."""

    def __init__(self, store: CrmStore, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    @asynccontextmanager
    async def _transaction(self, operation: str) -> AsyncIterator[AsyncConnection]:
        try:
            async with self.store.engine.begin() as conn:
                yield conn
        except CrmError:
            raise
        except (sa_exc.SQLAlchemyError, OSError, TimeoutError) as exc:
            log.warning("crm.unavailable", operation=operation, error=type(exc).__name__)
            raise CrmUnavailable(f"CRM database error during {operation}: {exc}") from exc

    # -- reading ------------------------------------------------------------------------------

    async def survivor_of(self, customer_id: int) -> int | None:
        """The customer that now holds a merged-away customer's records (None if not merged);
        follows chains (A merged into B, B into C → C)."""
        seen: set[int] = set()
        current = customer_id
        async with self._transaction("survivor_of") as conn:
            while current not in seen:
                seen.add(current)
                nxt = (
                    await conn.execute(
                        select(MERGES.c.survivor_id).where(MERGES.c.customer_id == current)
                    )
                ).scalar()
                if nxt is None:
                    break
                current = int(nxt)
        return current if current != customer_id else None

    async def records(self, customer_id: int) -> dict[str, Any]:
        """What a divide chooses from: the customer's numbers, interactions and cases with their
        ids, and which customer now holds them if this one was merged away."""
        survivor = await self.survivor_of(customer_id)
        async with self._transaction("records") as conn:
            row = (
                await conn.execute(
                    select(CUSTOMERS.c.id, CUSTOMERS.c.name, CUSTOMERS.c.address).where(
                        CUSTOMERS.c.id == customer_id
                    )
                )
            ).first()
            if row is None:
                raise CustomerNotFound(f"no customer {customer_id}")
            phones = await conn.execute(
                select(PhoneNumber.id, PhoneNumber.kind, PhoneNumber.number, PhoneNumber.e164)
                .where(PhoneNumber.customer_id == customer_id)
                .order_by(PhoneNumber.id)
            )
            calls = await conn.execute(
                select(Interaction.id, Interaction.call_id, Interaction.started_at,
                       Interaction.direction, Interaction.caller)
                .where(Interaction.customer_id == customer_id)
                .order_by(Interaction.started_at.desc(), Interaction.id.desc())
                .limit(200)
            )  # fmt: skip
            cases = await conn.execute(
                select(Case.id, Case.subject, Case.status)
                .where(Case.customer_id == customer_id)
                .order_by(Case.id)
            )
            return {
                "customer_id": row.id,
                "name": row.name,
                "address": row.address,
                "merged_into": survivor,
                "phones": [dict(r._mapping) for r in phones],
                "interactions": [{**r._mapping, "started_at": _plain(r.started_at)} for r in calls],
                "cases": [dict(r._mapping) for r in cases],
            }

    async def duplicates(self, *, min_score: int = MIN_SCORE) -> DuplicateReport:
        try:
            return await load_and_find(self.store.engine, min_score=min_score)
        except (sa_exc.SQLAlchemyError, OSError, TimeoutError) as exc:
            raise CrmUnavailable(f"CRM database error during duplicates: {exc}") from exc

    async def audit(
        self, start: float, end: float, *, customer_id: int | None = None, limit: int = 500
    ) -> list[dict[str, Any]]:
        c = AUDIT.c
        query = select(AUDIT).where(and_(c.at >= start, c.at < end))
        if customer_id is not None:
            query = query.where((c.customer_id == customer_id) | (c.other_id == customer_id))
        async with self._transaction("audit") as conn:
            rows = (await conn.execute(query.order_by(c.at, c.id).limit(limit))).mappings()
            return [dict(row) for row in rows.all()]

    # -- merge --------------------------------------------------------------------------------

    async def merge(self, survivor_id: int, merged_id: int, *, actor: str) -> dict[str, Any]:
        """Move everything of ``merged_id`` to ``survivor_id``; returns the audit entry."""
        if survivor_id == merged_id:
            raise MergeConflict(f"customer {survivor_id} cannot be merged into itself")
        numbers: set[str] = set()
        async with self._transaction("merge") as conn:
            await _lock(conn, survivor_id, merged_id)
            survivor, merged = await self._live_pair(conn, survivor_id, merged_id)
            before = await _counts(conn, (survivor_id, merged_id))
            moved: dict[str, list[int]] = {}
            for table, column in owned_tables():
                key = table.primary_key.columns.values()[0]
                ids = (await conn.execute(select(key).where(column == merged_id))).scalars().all()
                if ids:
                    await conn.execute(
                        update(table).where(column == merged_id).values({column.name: survivor_id})
                    )
                moved[table.name] = sorted(int(i) for i in ids)
            numbers = await self._numbers(conn, survivor_id)
            changes = _combined(survivor, merged)
            if changes:
                await conn.execute(
                    update(CUSTOMERS).where(CUSTOMERS.c.id == survivor_id).values(changes)
                )
            after = await _counts(conn, (survivor_id, merged_id))
            _check_merge(before, after, survivor_id, merged_id)
            renamed = await _rename_candidates(conn, survivor, merged_id)
            detail = {
                "moved": moved,
                "candidates_renamed": renamed,
                "before": before,
                "after": after,
                "survivor_changes": {k: _plain(v) for k, v in changes.items()},
                "merged_customer": {k: _plain(merged[k]) for k in ("name", *FILLED, *FLAGS)},
            }
            entry = await self._audit(conn, "merge", actor, survivor_id, merged_id, detail)
            await conn.execute(
                insert(MERGES).values(
                    customer_id=merged_id,
                    survivor_id=survivor_id,
                    merged_at=entry["at"],
                    audit_id=entry["id"],
                )
            )
        self.store.cache.invalidate(numbers)
        log.info("crm.merged", survivor=survivor_id, merged=merged_id, actor=actor)
        return entry

    # -- divide -------------------------------------------------------------------------------

    async def divide(
        self,
        customer_id: int,
        *,
        actor: str,
        to_customer_id: int | None = None,
        new_customer: NewCustomer | None = None,
        phone_ids: Iterable[int] = (),
        shared_phone_ids: Iterable[int] = (),
        interaction_ids: Iterable[int] = (),
        case_ids: Iterable[int] = (),
    ) -> dict[str, Any]:
        """Move the chosen numbers, interactions and cases of ``customer_id`` to another
        customer (``to_customer_id``, or ``new_customer`` created now); ``shared_phone_ids``
        are copied, so that both hold the number. Returns the audit entry."""
        phones, shared = sorted(set(phone_ids)), sorted(set(shared_phone_ids))
        chosen = {
            PhoneNumber.__tablename__: phones,
            Interaction.__tablename__: sorted(set(interaction_ids)),
            Case.__tablename__: sorted(set(case_ids)),
        }
        if (to_customer_id is None) == (new_customer is None):
            raise InvalidDivide("give either the other customer's id or a new customer")
        if new_customer is not None and not new_customer.name.strip():
            raise InvalidDivide("new_customer.name: the new customer needs a name")
        if not any(chosen.values()) and not shared:
            raise InvalidDivide("nothing to move: choose numbers, interactions or cases")
        if set(phones) & set(shared):
            raise InvalidDivide("a number is either moved or shared, not both")
        if to_customer_id == customer_id:
            raise MergeConflict(f"customer {customer_id} cannot be divided into itself")
        async with self._transaction("divide") as conn:
            await _lock(conn, customer_id, *([to_customer_id] if to_customer_id else []))
            source = await self._live(conn, customer_id)
            if to_customer_id is not None:
                await self._live(conn, to_customer_id)
                other_id = to_customer_id
            else:
                assert new_customer is not None
                other_id = await self._create(conn, new_customer, source)
            tables = {table.name: (table, column) for table, column in owned_tables()}
            for name, ids in (*chosen.items(), (PhoneNumber.__tablename__, shared)):
                table, column = tables[name]
                key = table.primary_key.columns.values()[0]
                found = set(
                    (
                        await conn.execute(select(key).where(key.in_(ids), column == customer_id))
                    ).scalars()
                )
                missing = [i for i in ids if i not in found]
                if missing:
                    raise MergeConflict(
                        f"{name}: {', '.join(map(str, missing))} not customer {customer_id}'s"
                    )
            before = await _counts(conn, (customer_id, other_id))
            numbers = set(
                (
                    await conn.execute(
                        select(PhoneNumber.e164).where(PhoneNumber.id.in_([*phones, *shared]))
                    )
                ).scalars()
            )
            for name, ids in chosen.items():
                if ids:
                    table, column = tables[name]
                    key = table.primary_key.columns.values()[0]
                    await conn.execute(
                        update(table)
                        .where(key.in_(ids), column == customer_id)
                        .values({column.name: other_id})
                    )
            copies: list[int] = []
            for phone_id in shared:
                row = (
                    await conn.execute(select(PhoneNumber).where(PhoneNumber.id == phone_id))
                ).one()
                copies.append(
                    (
                        await conn.execute(
                            insert(PhoneNumber)
                            .values(
                                customer_id=other_id, kind=row.kind, number=row.number,
                                e164=row.e164, contact_id=None,
                            )
                            .returning(PhoneNumber.id)
                        )
                    ).scalar_one()
                )  # fmt: skip
            after = await _counts(conn, (customer_id, other_id))
            _check_divide(before, after, customer_id, other_id, chosen, len(copies))
            detail = {
                "moved": chosen,
                "shared_phones": {"from": shared, "copies": copies},
                "created": new_customer is not None,
                "before": before,
                "after": after,
            }
            entry = await self._audit(conn, "divide", actor, customer_id, other_id, detail)
        self.store.cache.invalidate(n for n in numbers if n)
        log.info("crm.divided", customer=customer_id, other=other_id, actor=actor)
        return entry

    # -- helpers ------------------------------------------------------------------------------

    async def _live(self, conn: AsyncConnection, customer_id: int) -> dict[str, Any]:
        """The customer's row, locked for the transaction; 404 if none, 409 if merged away."""
        row = (
            await conn.execute(
                select(CUSTOMERS).where(CUSTOMERS.c.id == customer_id).with_for_update()
            )
        ).mappings().first()  # fmt: skip
        if row is None:
            raise CustomerNotFound(f"no customer {customer_id}")
        survivor = (
            await conn.execute(
                select(MERGES.c.survivor_id).where(MERGES.c.customer_id == customer_id)
            )
        ).scalar()
        if survivor is not None:
            raise MergeConflict(
                f"customer {customer_id} was already merged into customer {survivor}"
            )
        return dict(row)

    async def _live_pair(
        self, conn: AsyncConnection, first: int, second: int
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        # Locked in id order, so that two merges of the same pair cannot deadlock.
        rows = {i: await self._live(conn, i) for i in sorted((first, second))}
        return rows[first], rows[second]

    async def _numbers(self, conn: AsyncConnection, customer_id: int) -> set[str]:
        found = await conn.execute(
            select(PhoneNumber.e164).where(PhoneNumber.customer_id == customer_id)
        )
        return {e164 for e164 in found.scalars() if e164}

    async def _create(self, conn: AsyncConnection, new: NewCustomer, source: dict[str, Any]) -> int:
        values: dict[str, Any] = {flag: False for flag in FLAGS}
        values.update(
            name=new.name.strip(),
            kind="person",
            email=new.email,
            address=new.address if new.address is not None else source["address"],
            language=source["language"],
        )
        customer_id = int(
            (
                await conn.execute(insert(CUSTOMERS).values(values).returning(CUSTOMERS.c.id))
            ).scalar_one()
        )
        words = name_words(values["name"])
        if words:
            await conn.execute(
                insert(CustomerWord), [{"word": w, "customer_id": customer_id} for w in words]
            )
        return customer_id

    async def _audit(
        self,
        conn: AsyncConnection,
        action: str,
        actor: str,
        customer_id: int,
        other_id: int,
        detail: dict[str, Any],
    ) -> dict[str, Any]:
        row = {
            "at": self.clock(),
            "actor": actor,
            "action": action,
            "customer_id": customer_id,
            "other_id": other_id,
            "detail": detail,
        }
        audit_id = (await conn.execute(insert(AUDIT).values(row).returning(AUDIT.c.id))).scalar()
        return {"id": int(audit_id or 0), **row}


async def _lock(conn: AsyncConnection, *ids: int) -> None:
    """Take the customers' rows for this transaction before anything is read: a write first,
    so that SQLite takes its write lock now (its SELECT FOR UPDATE does nothing) and the checks
    that follow see any merge committed meanwhile; one row at a time in id order on
    PostgreSQL, so that two merges of the same pair wait for each other, never deadlock."""
    for customer_id in sorted(set(ids)):
        await conn.execute(
            update(CUSTOMERS).where(CUSTOMERS.c.id == customer_id).values(updated_at=func.now())
        )


async def _rename_candidates(
    conn: AsyncConnection, survivor: dict[str, Any], merged_id: int
) -> list[int]:
    """Calls that listed the merged-away customer among the candidates of a shared number
    (``interactions.extra.candidates``: a call nobody confirmed is not the customer's, so no
    foreign key moved it) list the survivor instead, once, marked ``merged_from``. Returns the
    interactions changed. The JSON is read as text first, to skip the calls that do not name
    the id (compact or spaced, as json.dumps writes it); the exact check is on the parsed list."""
    extra = Interaction.__table__.c.extra
    as_text = cast(extra, Text)
    token = f'"customer_id":{int(merged_id)}'
    spaced = f'"customer_id": {int(merged_id)}'
    names_it = or_(*(as_text.like(f"%{t}{end}%") for t in (token, spaced) for end in (",", "}")))
    found = await conn.execute(
        select(Interaction.id, extra).where(as_text.like('%"candidates"%'), names_it)
    )
    changed: list[int] = []
    for interaction_id, data in found.all():
        listed = data.get("candidates") if isinstance(data, dict) else None
        if not isinstance(listed, list) or not any(
            isinstance(c, dict) and c.get("customer_id") == merged_id for c in listed
        ):
            continue
        out = renamed_candidates(listed, merged_id, survivor)
        await conn.execute(
            update(Interaction)
            .where(Interaction.id == interaction_id)
            .values(extra={**data, "candidates": out})
        )
        changed.append(int(interaction_id))
    return changed


def _plain(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def _combined(survivor: dict[str, Any], merged: dict[str, Any]) -> dict[str, Any]:
    """What changes on the survivor: flags any-of (consent all-of), empty fields filled."""
    changes: dict[str, Any] = {}
    for flag in ANY_OF:
        if merged[flag] and not survivor[flag]:
            changes[flag] = True
    if survivor["marketing_opt_in"] and not merged["marketing_opt_in"]:
        changes["marketing_opt_in"] = False
        changes["marketing_opt_in_at"] = None
    for column in FILLED:
        # The external id stays on the tombstone: it is unique, and the other system knows it.
        if column != "external_id" and not survivor[column] and merged[column]:
            changes[column] = merged[column]
    return changes


def _check_merge(
    before: dict[str, dict[str, int]], after: dict[str, dict[str, int]], keep: int, gone: int
) -> None:
    k, g = str(keep), str(gone)
    for table, was in before.items():
        now = after[table]
        if now["total"] != was["total"] or now[k] != was[k] + was[g] or now[g] != 0:
            raise RecordsLost(f"merge undone: {table} had {was}, would have {now}")


def _check_divide(
    before: dict[str, dict[str, int]],
    after: dict[str, dict[str, int]],
    source: int,
    other: int,
    chosen: dict[str, list[int]],
    copies: int,
) -> None:
    s, o = str(source), str(other)
    for table, was in before.items():
        now = after[table]
        added = copies if table == PhoneNumber.__tablename__ else 0
        shift = len(chosen.get(table, ()))
        if (
            now["total"] != was["total"] + added
            or now[s] != was[s] - shift
            or now[o] != was[o] + shift + added
        ):
            raise RecordsLost(f"divide undone: {table} had {was}, would have {now}")
