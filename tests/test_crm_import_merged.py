"""After a merge, the merged-away customer is a tombstone: whatever still names it (an import
row with its external id, a write with its id) applies to the survivor, and the tombstone never
gets a number back (one would pop as ambiguous with the merged-away customer among the choices).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from crm_core import CrmStore
from crm_core.importer import ImportOptions, import_csv
from crm_core.merge import CustomerMaintenance
from crm_core.testing import empty_store

FIRST = """\
external_id,name,phone_mobile,email
K-1,Jon Smith,07700 900111,jon@example.com
K-2,John Smith,07700 900222,
K-3,Other Person,07700 900333,other@example.com
"""


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[CrmStore]:
    crm = await empty_store(db_url)
    try:
        yield crm
    finally:
        await crm.close()


async def merged_pair(store: CrmStore, tmp_path: Path) -> tuple[int, int]:
    """K-2 merged into K-1; returns (survivor, tombstone)."""
    path = tmp_path / "first.csv"
    path.write_text(FIRST, encoding="utf-8")
    await import_csv(store, path)
    survivor = await store.customer_by_external_id("K-1")
    async with store.engine.connect() as conn:
        tombstone = (
            await conn.execute(text("SELECT id FROM customers WHERE external_id = 'K-2'"))
        ).scalar_one()
    assert survivor is not None
    await CustomerMaintenance(store).merge(survivor, tombstone, actor="test")
    return survivor, int(tombstone)


async def numbers_of(store: CrmStore, customer_id: int) -> list[str]:
    async with store.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT e164 FROM phone_numbers WHERE customer_id = :c ORDER BY e164"),
            {"c": customer_id},
        )
        return [r[0] for r in rows]


@pytest.mark.parametrize("dry_run", [False, True])
async def test_an_import_row_naming_a_merged_away_customer_applies_to_the_survivor(
    store: CrmStore, tmp_path: Path, dry_run: bool
) -> None:
    survivor, tombstone = await merged_pair(store, tmp_path)
    before = await numbers_of(store, survivor)
    path = tmp_path / "again.csv"
    path.write_text(
        "external_id,name,phone_home,email\n"
        "K-3,Other Person,,other@example.com\n"
        "K-2,John Smith,020 7946 0999,john@example.com\n",
        encoding="utf-8",
    )

    report = await import_csv(store, path, ImportOptions(dry_run=dry_run))

    assert [(m.line, m.external_id, m.survivor_id, m.survivor_external_id)
            for m in report.merged] == [(3, "K-2", survivor, "K-1")]  # fmt: skip
    said = f"line 3: K-2 was merged into K-1 (customer {survivor}): the row applies to it"
    assert said in list(report.lines())
    assert report.to_dict()["merged"][0]["survivor_id"] == survivor
    assert (report.created, report.updated, report.rejected) == (0, 2, [])
    assert [(c.line, c.field, c.old, c.new) for c in report.changes] == [
        (3, "name", "Jon Smith", "John Smith"),
        (3, "email", "jon@example.com", "john@example.com"),
        (
            3,
            "phones",
            ["07700 900111", "07700 900222"],
            ["07700 900111", "07700 900222", "020 7946 0999"],
        ),
    ]
    assert await numbers_of(store, tombstone) == []  # never a number on the tombstone
    async with store.engine.connect() as conn:
        email = (
            await conn.execute(text(f"SELECT email FROM customers WHERE id = {tombstone}"))
        ).scalar_one()
    assert email is None  # the tombstone is left as the merge left it
    if dry_run:
        assert await numbers_of(store, survivor) == before
        return
    assert await numbers_of(store, survivor) == sorted([*before, "+442079460999"])
    resolution = await store.resolve("020 7946 0999")
    assert resolution.status == "match"
    assert [c.customer_id for c in resolution.candidates] == [survivor]
    view = await store.view(survivor)
    assert view is not None and (view.name, view.email) == ("John Smith", "john@example.com")


async def test_a_file_naming_both_the_survivor_and_the_merged_away_rejects_the_second_row(
    store: CrmStore, tmp_path: Path
) -> None:
    survivor, tombstone = await merged_pair(store, tmp_path)
    path = tmp_path / "both.csv"
    path.write_text(
        "external_id,name,phone_home\nK-1,Jon Smith,020 7946 0888\nK-2,John Smith,020 7946 0999\n",
        encoding="utf-8",
    )

    report = await import_csv(store, path)

    assert [(r.line, r.external_id) for r in report.rejected] == [(3, "K-2")]
    assert "was merged into K-1" in report.rejected[0].reason
    assert "line 2" in report.rejected[0].reason
    assert await numbers_of(store, tombstone) == []
    assert "+442079460888" in await numbers_of(store, survivor)
    assert "+442079460999" not in await numbers_of(store, survivor)


async def test_store_writes_naming_a_merged_away_customer_go_to_the_survivor(
    store: CrmStore, tmp_path: Path
) -> None:
    survivor, tombstone = await merged_pair(store, tmp_path)

    result = await store.upsert_customer(
        name="John Smith", external_id="K-2", phones=["07700 900222", "020 7946 0666"]
    )
    added = await store.add_phone(tombstone, "020 7946 0777", "other")

    assert added == "+442079460777"
    assert result.customer_id == survivor and not result.created
    assert await numbers_of(store, tombstone) == []
    assert set(await numbers_of(store, survivor)) >= {"+442079460666"}
    for number in ("020 7946 0777", "020 7946 0666"):
        resolution = await store.resolve(number)
        assert [c.customer_id for c in resolution.candidates] == [survivor], number
