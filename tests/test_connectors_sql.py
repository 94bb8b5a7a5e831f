"""The ``sql`` source against the real PostgreSQL and MariaDB on this machine."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from connectors.chain import ChainDirectory
from connectors.source import SourceError
from connectors.sql_source import SqlSource, SqlSourceConfig

MARIADB_URL = os.environ.get("CTI_TEST_MARIADB", "mysql://root@127.0.0.1:3306/test")


@pytest.fixture(params=["postgresql", "mariadb"])
def erp_url(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql":
        url: str = request.getfixturevalue("pg_server_url")
        return url
    return MARIADB_URL


@pytest.fixture
async def erp(erp_url: str) -> AsyncIterator[tuple[str, str]]:
    """(url, table prefix): an ERP's customers and orders in a table of its own, dropped after."""
    url = erp_url
    driver = url.replace("postgresql://", "postgresql+asyncpg://").replace(
        "mysql://", "mysql+aiomysql://"
    )
    prefix = f"cti_erp_{uuid.uuid4().hex[:10]}"
    engine = create_async_engine(driver)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(
                f"CREATE TABLE {prefix}_customers (id INTEGER PRIMARY KEY, account VARCHAR(20),"
                " full_name VARCHAR(100), tel VARCHAR(40), mobile VARCHAR(40),"
                " email VARCHAR(100), is_vip SMALLINT, lang VARCHAR(5))"
            ))  # fmt: skip
            await conn.execute(text(
                f"CREATE TABLE {prefix}_orders (id INTEGER PRIMARY KEY, customer_id INTEGER,"
                " ref VARCHAR(20), state VARCHAR(20), placed VARCHAR(30))"
            ))  # fmt: skip
            await conn.execute(text(
                f"INSERT INTO {prefix}_customers VALUES"
                " (1, 'A-1', 'Ada Lovelace', '020 7123 4567', NULL, 'ada@example.com', 1, 'en'),"
                " (2, 'A-2', 'Grace Hopper', NULL, '07700 900123', 'grace@example.com', 0, 'fr'),"
                " (3, 'A-3', 'Noise Elsewhere', '+1 415 555 4567', NULL, NULL, 0, NULL)"
            ))  # fmt: skip
            await conn.execute(text(
                f"INSERT INTO {prefix}_orders VALUES (10, 1, 'SO-10', 'shipped', '2026-11-30'),"
                " (11, 1, 'SO-11', 'open', '2026-12-01')"
            ))  # fmt: skip
    except (OSError, Exception) as exc:
        await engine.dispose()
        if os.environ.get("CI"):
            raise
        pytest.skip(f"{url} not reachable: {exc}")
    try:
        yield url, prefix
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f"DROP TABLE IF EXISTS {prefix}_orders"))
            await conn.execute(text(f"DROP TABLE IF EXISTS {prefix}_customers"))
        await engine.dispose()


def erp_source(url: str, prefix: str, **overrides: object) -> SqlSource:
    columns = "id, account, full_name, tel, mobile, email, is_vip, lang"
    data: dict[str, object] = {
        "name": "erp",
        "type": "sql",
        "url": url,
        "timeout_ms": 3000,
        "key_type": "integer",
        "lookup": f"SELECT {columns} FROM {prefix}_customers"
        " WHERE tel LIKE :last4_like OR mobile LIKE :last4_like",
        "get": f"SELECT {columns} FROM {prefix}_customers WHERE id = :id",
        "search": f"SELECT {columns} FROM {prefix}_customers"
        " WHERE LOWER(full_name) LIKE LOWER(:query_like) OR account = :query LIMIT :limit",
        "lists": {
            "orders": f"SELECT id, ref, state, placed FROM {prefix}_orders"
            " WHERE customer_id = :id ORDER BY placed DESC"
        },
        "mapping": {
            "id": "id",
            "external_id": "account",
            "name": "full_name",
            "email": "email",
            "language": "lang",
            "phones": [{"path": "tel", "kind": "work"}, {"path": "mobile", "kind": "mobile"}],
            "flags": {"vip": "is_vip"},
            "orders": {
                "fields": {
                    "order_id": "id",
                    "reference": "ref",
                    "status": "state",
                    "placed_at": "placed",
                }
            },
        },
        **overrides,
    }
    return SqlSource(SqlSourceConfig.model_validate(data), region="GB")


async def test_the_erp_database_pops_the_customer_whose_number_is_the_callers(
    erp: tuple[str, str],
) -> None:
    url, prefix = erp
    chain = ChainDirectory([erp_source(url, prefix)], region="GB")
    try:
        ada = await chain.resolve("+442071234567")
        assert ada.customer_id is not None
        view = await chain.view(ada.customer_id)
        grace = await chain.resolve("+447700900123")
        found = await chain.search("hopper", 5)
        by_account = await chain.search("A-1", 5)
    finally:
        await chain.close()

    assert [c.name for c in ada.candidates] == ["Ada Lovelace"]  # not the +1 415 … 4567
    assert view is not None and view.flags == ("vip",) and view.external_id == "A-1"
    assert [(o.reference, o.status) for o in view.orders] == [
        ("SO-11", "open"),
        ("SO-10", "shipped"),
    ]
    assert view.sources["orders"] == "erp"  # type: ignore[attr-defined]
    assert [c.name for c in grace.candidates] == ["Grace Hopper"]
    assert [c.name for c in found] == ["Grace Hopper"]
    assert [c.name for c in by_account] == ["Ada Lovelace"]


async def test_the_sql_source_cannot_change_the_erp_database(erp: tuple[str, str]) -> None:
    url, prefix = erp
    with pytest.raises(ValueError, match="only one SELECT"):
        erp_source(url, prefix, lookup=f"DELETE FROM {prefix}_customers")
    # A data-modifying query dressed as a SELECT meets the read-only session.
    postgres = url.startswith("postgresql")
    sneaky = (
        f"WITH gone AS (DELETE FROM {prefix}_customers RETURNING id) SELECT id FROM gone"
        if postgres
        else f"SELECT id FROM {prefix}_customers"
    )
    source = erp_source(url, prefix, lookup=sneaky)
    try:
        if postgres:
            with pytest.raises(SourceError, match="read-only"):
                await source.by_number("+442071234567")
        flag = "current_setting('transaction_read_only')" if postgres else "@@tx_read_only"
        (row,) = await source._rows(f"SELECT {flag} AS ro", {})
        assert str(row["ro"]) in ("on", "1")
    finally:
        await source.close()
    still = erp_source(url, prefix)
    try:
        assert [r.name for r in await still.by_number("+442071234567")] == ["Ada Lovelace"]
    finally:
        await still.close()


async def test_an_unreachable_database_is_a_source_error() -> None:
    source = erp_source("postgresql://nobody@127.0.0.1:1/none", "t")
    try:
        with pytest.raises(SourceError):
            await source.by_number("+442071234567")
    finally:
        await source.close()
