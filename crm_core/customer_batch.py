"""Many customers read and written in one transaction: the bulk path of ``cti import``.

``load`` fetches what is stored for a batch of external ids (one query for the customers, one
for the tombstones among them, one for their numbers; the external id of a customer merged
into another gives the survivor); ``apply`` writes a batch of ``CustomerWrite`` (one bulk
INSERT and one SELECT of their ids for new customers, one UPDATE statement per set of changed
columns: an executemany on SQLite, ``UPDATE ... FROM unnest(arrays)`` on PostgreSQL, and the
numbers and name words of the customers whose numbers or names changed). The caller owns the
transaction, so a batch is written entirely or not at all.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Integer,
    String,
    any_,
    bindparam,
    delete,
    func,
    literal_column,
    select,
    text,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from crm_core.models import (
    FLAGS,
    Customer,
    CustomerMerge,
    CustomerWord,
    PhoneNumber,
    name_words,
)

# The customer columns an import sets (besides external_id and the flags).
FIELDS = ("name", "kind", "organisation", "email", "address", "language")
# Every column of a customer row an import writes.
ROW_COLUMNS = (*FIELDS, *FLAGS, "marketing_opt_in_at")


@dataclass(frozen=True)
class StoredPhone:
    kind: str
    number: str
    e164: str | None


@dataclass
class StoredCustomer:
    id: int
    values: dict[str, Any]  # FIELDS, FLAGS and marketing_opt_in_at as stored
    phones: list[StoredPhone]
    external_id: str | None = None  # its own
    # Named by the external id of a customer merged into it (a tombstone): this is the survivor.
    merged: bool = False


@dataclass
class CustomerWrite:
    """One customer as it must be after the write."""

    external_id: str
    customer_id: int | None  # None: a new customer
    values: dict[str, Any]  # every column of ROW_COLUMNS
    phones: list[StoredPhone] | None  # None: the numbers stay as they are
    rename: bool  # the name words must be rewritten
    changed: tuple[str, ...] = ()  # the columns an UPDATE sets (besides updated_at)


async def load(conn: AsyncConnection, external_ids: Sequence[str]) -> dict[str, StoredCustomer]:
    """The stored customers among ``external_ids``, with their numbers (in id order). The
    external id of a customer merged into another (a tombstone) gives the survivor, marked
    ``merged``: what names the merged-away customer applies to the one holding its records."""
    if not external_ids:
        return {}
    columns = [Customer.id, Customer.external_id] + [
        Customer.__table__.c[name] for name in (*FIELDS, *FLAGS, "marketing_opt_in_at")
    ]
    stored: dict[str, StoredCustomer] = {}
    by_id: dict[int, StoredCustomer] = {}
    names = [c.name for c in columns[2:]]

    async def fetch(condition: Any) -> None:
        rows = (await conn.execute(select(*columns).where(condition))).all()
        for customer_id, external_id, *values in rows:
            customer = StoredCustomer(
                customer_id, dict(zip(names, values, strict=True)), [], external_id
            )
            by_id[customer_id] = customer

    await fetch(among(conn, Customer.external_id, external_ids))
    stored = {c.external_id: c for c in by_id.values() if c.external_id is not None}
    survivors = await survivors_of(conn, list(by_id)) if by_id else {}
    missing = sorted({s for s in survivors.values() if s not in by_id})
    if missing:
        await fetch(among(conn, Customer.id, missing))
    alive = [i for i in by_id if i not in survivors]
    if alive:
        phones = await conn.execute(
            select(PhoneNumber.customer_id, PhoneNumber.kind, PhoneNumber.number, PhoneNumber.e164)
            .where(among(conn, PhoneNumber.customer_id, alive))
            .order_by(PhoneNumber.id)
        )
        for customer_id, kind, number, e164 in phones.all():
            by_id[customer_id].phones.append(StoredPhone(kind, number, e164))
    for tombstone, survivor in survivors.items():
        named = by_id[tombstone].external_id
        if named is not None:
            held = by_id[survivor]
            stored[named] = StoredCustomer(held.id, held.values, held.phones, held.external_id,
                                           merged=True)  # fmt: skip
    return stored


async def survivors_of(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, int]:
    """For those of ``ids`` merged away, the customer holding their records now (following
    chains: A into B, B into C gives C); one query per link of the longest chain."""
    links: dict[int, int] = {}
    asked: set[int] = set()
    frontier = list(ids)
    while frontier:
        asked.update(frontier)
        rows = await conn.execute(
            select(CustomerMerge.customer_id, CustomerMerge.survivor_id).where(
                among(conn, CustomerMerge.customer_id, frontier)
            )
        )
        found = {int(a): int(b) for a, b in rows.all()}
        links.update(found)
        frontier = sorted({b for b in found.values() if b not in asked})
    out: dict[int, int] = {}
    for start in ids:
        current, seen = start, {start}
        while current in links and links[current] not in seen:
            current = links[current]
            seen.add(current)
        if current != start:
            out[start] = current
    return out


async def shared(conn: AsyncConnection, e164s: Sequence[str]) -> set[str]:
    """Those of ``e164s`` held by more than one customer (one indexed query per 5,000)."""
    found: set[str] = set()
    for start in range(0, len(e164s), 5000):
        rows = await conn.execute(
            select(PhoneNumber.e164)
            .where(among(conn, PhoneNumber.e164, e164s[start : start + 5000]))
            .group_by(PhoneNumber.e164)
            .having(func.count(func.distinct(PhoneNumber.customer_id)) > 1)
        )
        found.update(e164 for e164 in rows.scalars() if e164)
    return found


def driver_error(statement: str, exc: Exception) -> sa_exc.DBAPIError:
    """A driver's own exception as SQLAlchemy's: IntegrityError/DataError for SQLSTATE class
    23/22 (the database refused the data), DBAPIError (it failed) otherwise."""
    sqlstate = str(getattr(exc, "sqlstate", "") or "")
    kind = {"22": sa_exc.DataError, "23": sa_exc.IntegrityError}.get(sqlstate[:2])
    return (kind or sa_exc.DBAPIError)(statement, None, exc)


def among(conn: AsyncConnection, column: Any, values: Sequence[Any]) -> Any:
    """``column IN values`` with the values as one parameter instead of a thousand rendered
    into each statement: ``= ANY(array)`` on PostgreSQL, ``IN (SELECT value FROM
    json_each(array))`` on SQLite (both look each value up in the column's index)."""
    if conn.dialect.name == "postgresql":
        item = String() if isinstance(column.type, String) else Integer()
        return column == any_(bindparam(None, list(values), type_=ARRAY(item)))
    if conn.dialect.name == "sqlite":
        array = bindparam(None, json.dumps(list(values)), type_=String())
        return column.in_(select(literal_column("value")).select_from(func.json_each(array)))
    return column.in_(values)


async def apply(conn: AsyncConnection, writes: Sequence[CustomerWrite], now: datetime) -> None:
    """Write ``writes`` (in the caller's transaction); new customers get their ids set."""
    new = [w for w in writes if w.customer_id is None]
    old = [w for w in writes if w.customer_id is not None]
    if new:
        names = ["external_id", *ROW_COLUMNS, "created_at", "updated_at"]
        values = [(w.external_id, *(w.values[c] for c in ROW_COLUMNS), now, now) for w in new]
        await _insert(conn, Customer.__tablename__, names, values)
        # Then their ids by external_id (INSERT ... RETURNING in parameter order goes one row
        # per statement on SQLite, no sentinel column).
        keys = [w.external_id for w in new]
        ids = {
            external_id: cid
            for start in range(0, len(keys), 1000)
            for cid, external_id in await conn.execute(
                select(Customer.id, Customer.external_id).where(
                    among(conn, Customer.external_id, keys[start : start + 1000])
                )
            )
        }
        for w in new:
            w.customer_id = ids[w.external_id]
    if conn.dialect.name == "postgresql":
        await _update_postgresql(conn, old, now)
    else:
        await _update_sqlite(conn, old, now)
    await _replace(
        conn,
        PhoneNumber,
        [w for w in old if w.phones is not None],
        [
            {"customer_id": w.customer_id, "kind": p.kind, "number": p.number, "e164": p.e164}
            for w in writes
            for p in w.phones or ()
        ],
    )
    await _replace(
        conn,
        CustomerWord,
        [w for w in old if w.rename],
        [
            {"word": word, "customer_id": w.customer_id}
            for w in (*new, *(w for w in old if w.rename))
            for word in name_words(w.values["name"], w.values["organisation"])
        ],
    )


def _by_changed(old: Sequence[CustomerWrite]) -> dict[tuple[str, ...], list[CustomerWrite]]:
    """The writes grouped by the columns they change: each group's UPDATE sets only those
    (an UPDATE that sets an indexed column rewrites its index entries even when the value is
    the same, and a column the import does not change is not overwritten)."""
    by_columns: dict[tuple[str, ...], list[CustomerWrite]] = {}
    for w in old:
        by_columns.setdefault(w.changed, []).append(w)
    return by_columns


async def _update_sqlite(
    conn: AsyncConnection, old: Sequence[CustomerWrite], now: datetime
) -> None:
    """One driver executemany per set of changed columns."""
    for columns, group in _by_changed(old).items():
        names = [*columns, "updated_at"]
        sql = f"UPDATE {Customer.__tablename__} SET {', '.join(f'{c} = ?' for c in names)} "
        await conn.exec_driver_sql(
            sql + "WHERE id = ?",
            _sqlite_rows(
                [*names, "id"],
                [(*(w.values[c] for c in columns), now, w.customer_id) for w in group],
            ),
        )


async def _update_postgresql(
    conn: AsyncConnection, old: Sequence[CustomerWrite], now: datetime
) -> None:
    """One ``UPDATE ... FROM unnest(arrays)`` per set of changed columns, the new values
    sent as one array per column: the server joins them in one statement instead of running
    one UPDATE per customer (an executemany), which was most of a re-import's time."""
    table = Customer.__table__
    for columns, group in _by_changed(old).items():
        arrays = {"ids": [w.customer_id for w in group]}
        casts = ["CAST(:ids AS integer[])"]
        for i, column in enumerate(columns):
            arrays[f"c{i}"] = [w.values[column] for w in group]
            casts.append(f"CAST(:c{i} AS {_SQL_TYPES[type(table.c[column].type).__name__]}[])")
        sets = "".join(f"{c} = u.{c}, " for c in columns)
        await conn.execute(
            text(
                f"UPDATE {Customer.__tablename__} AS c SET {sets}updated_at = :now "
                f"FROM unnest({', '.join(casts)}) AS u(id{''.join(f', {c}' for c in columns)}) "
                "WHERE c.id = u.id"
            ),
            {"now": now, **arrays},
        )


# The array type of each kind of column an import writes.
_SQL_TYPES = {"String": "varchar", "Text": "text", "Boolean": "boolean",
              "DateTime": "timestamptz"}  # fmt: skip


async def _replace(
    conn: AsyncConnection, model: Any, old: Iterable[CustomerWrite], rows: list[dict[str, Any]]
) -> None:
    """Delete ``model``'s rows of the customers ``old``, then insert ``rows``."""
    ids = [w.customer_id for w in old]
    for start in range(0, len(ids), 1000):
        await conn.execute(
            delete(model).where(among(conn, model.customer_id, ids[start : start + 1000]))
        )
    if rows:
        columns = list(rows[0])
        await _insert(conn, model.__tablename__, columns, [tuple(r.values()) for r in rows])


async def _open_driver_transaction(conn: AsyncConnection) -> None:
    """Make the driver's transaction begin before the first COPY: the asyncpg adapter issues
    BEGIN lazily, at the first statement that goes through SQLAlchemy, and a COPY on the
    driver's connection before it would commit on its own."""
    if conn.dialect.name == "postgresql":
        await conn.execute(select(func.now()))


async def _insert(
    conn: AsyncConnection, table: str, columns: list[str], records: list[tuple[Any, ...]]
) -> None:
    """Insert ``records`` with the driver's bulk path, in the transaction ``conn`` has open:
    COPY on PostgreSQL, executemany on SQLite (5-10 times faster than SQLAlchemy's
    executemany, which binds every value in Python)."""
    if conn.dialect.name == "postgresql":
        await _open_driver_transaction(conn)
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection
        try:
            await driver.copy_records_to_table(table, records=records, columns=columns)
        except Exception as exc:  # the driver's own errors: say them as SQLAlchemy would
            raise driver_error(f"COPY {table}", exc) from exc
        return
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
    await conn.exec_driver_sql(sql, _sqlite_rows(columns, records))


def _sqlite_rows(columns: list[str], records: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """``records`` as SQLAlchemy would bind them on SQLite, for the driver's executemany.
    Only the timestamp columns (``*_at``) are converted; most of their values are the batch's
    ``now``, formatted once."""
    dated = [i for i, column in enumerate(columns) if column.endswith("_at")]
    if not dated:
        return records
    text = functools.lru_cache(maxsize=64)(_sqlite_datetime)
    rows: list[tuple[Any, ...]] = []
    for record in records:
        row = list(record)
        for i in dated:
            if isinstance(row[i], datetime):
                row[i] = text(row[i])
        rows.append(tuple(row))
    return rows


def _sqlite_datetime(value: datetime) -> str:
    """A datetime as SQLAlchemy stores it on SQLite (naive UTC text)."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")
