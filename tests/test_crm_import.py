"""`cti import`'s engine: a data-quality report, no half-written customer, re-import updates."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from crm_core import CrmStore
from crm_core.importer import ImportFileError, import_csv
from crm_core.testing import empty_store

CONTACTS = """\
Name,Phone Mobile,external_id,flags,email,phone_work,favourite_colour
Ann Example,07700 900123,C-1,vip;hearing_impaired,ann@example.com,+44 20 7123 4567,blue
Bob Broken,not-a-number,C-2,,bob@example.com,,green
,02079460001,C-3,,nobody@example.com,,red
Dave Flags,02079460002,C-4,vip;teleporter,dave@example.com,,
Ann Again,02079460003,C-1,,ann2@example.com,,
Eve Extra,02079460004,C-5,,eve@example.com,,,surplus
Fay Mail,02079460005,C-6,,not an email,,
Gus Shared,0044 20 7123 4567,C-7,payment_arrears,gus@example.com,,
,,,,,,
Hal NoId,02079460006,,,hal@example.com,,
"""


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[CrmStore]:
    crm = await empty_store(db_url)
    try:
        yield crm
    finally:
        await crm.close()


def write(tmp_path: Path, text: str, name: str = "contacts.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


async def test_report_names_every_problem_and_imports_the_good_rows(
    store: CrmStore, tmp_path: Path
) -> None:
    report = await import_csv(store, write(tmp_path, CONTACTS))

    assert report.rows == 10
    assert (report.created, report.updated) == (3, 0)  # C-1, C-2 (bad number kept), C-7
    rejected = {(r.line, r.external_id): r.reason for r in report.rejected}
    assert rejected == {
        (4, "C-3"): "missing name",
        (5, "C-4"): rejected[(5, "C-4")],
        (6, "C-1"): "external_id repeated (first on line 2)",
        (7, "C-5"): "more fields than the header's 7",
        (8, "C-6"): "invalid email 'not an email'",
        (10, None): "missing external_id",
        (11, None): "missing external_id",
    }
    assert "unknown flag 'teleporter'" in rejected[(5, "C-4")]
    assert [(n.line, n.external_id, n.column, n.value) for n in report.invalid_numbers] == [
        (3, "C-2", "Phone Mobile", "not-a-number")
    ]
    assert report.unknown_columns == ["favourite_colour"]
    assert [(d.e164, [c.external_id for c in d.customers]) for d in report.duplicates] == [
        ("+442071234567", ["C-1", "C-7"])
    ]
    text = "\n".join(report.lines())
    assert "3 customers created, 0 updated, 7 rejected" in text
    assert "+442071234567 is shared by 2 customers: C-1 (Ann Example), C-7 (Gus Shared)" in text

    # Rejected rows wrote nothing; good rows wrote everything.
    assert await store.count_customers() == 3
    for rejected_number in ("02079460001", "02079460002", "02079460004", "02079460005"):
        assert (await store.resolve(rejected_number)).status == "unknown"
    ann = await store.resolve("+447700900123")
    assert ann.status == "match"
    view = await store.view(ann.customer_id or 0)
    assert view is not None
    assert (view.name, view.email, view.highlights) == (
        "Ann Example", "ann@example.com", ("vip", "hearing_impaired"))  # fmt: skip
    assert [(p.kind, p.e164) for p in view.phones] == [
        ("mobile", "+447700900123"), ("work", "+442071234567")]  # fmt: skip
    assert (await store.resolve("020 7123 4567")).status == "ambiguous"


async def test_importing_the_same_file_twice_updates_and_does_not_duplicate(
    store: CrmStore, tmp_path: Path
) -> None:
    path = write(tmp_path, CONTACTS)
    await import_csv(store, path)
    again = await import_csv(store, path)
    assert (again.created, again.updated) == (0, 3)
    assert await store.count_customers() == 3

    changed = write(tmp_path, "external_id,name,phone\nC-1,Ann Renamed,07700 900999\n", "b.csv")
    report = await import_csv(store, changed)
    assert (report.created, report.updated) == (0, 1)
    assert (await store.resolve("07700 900123")).status == "unknown"  # her old number is gone
    moved = await store.resolve("07700 900999")
    assert [c.name for c in moved.candidates] == ["Ann Renamed"]


async def test_semicolon_separated_excel_file_with_bom_is_read(
    store: CrmStore, tmp_path: Path
) -> None:
    path = tmp_path / "excel.csv"
    path.write_text("\ufeffexternal_id;name;phone\nX-1;Zoë Ünal;+33 6 12 34 56 78\n", "utf-8")
    report = await import_csv(store, path)
    assert (report.created, report.rejected) == (1, [])
    result = await store.resolve("+33612345678")
    assert [c.name for c in result.candidates] == ["Zoë Ünal"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty file"),
        ("name,phone\nAnn,0207\n", "missing required column(s) external_id"),
    ],
)
async def test_a_file_that_cannot_be_imported_says_why_and_writes_nothing(
    store: CrmStore, tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ImportFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        await import_csv(store, write(tmp_path, text))
    assert await store.count_customers() == 0


async def test_a_missing_file_is_a_clear_error(store: CrmStore, tmp_path: Path) -> None:
    with pytest.raises(ImportFileError, match="cannot read"):
        await import_csv(store, tmp_path / "nope.csv")
