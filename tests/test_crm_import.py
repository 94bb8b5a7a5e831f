"""`cti import`'s engine: a data-quality report, no half-written customer, re-import updates."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from crm_core import CrmStore, InvalidCustomer
from crm_core.importer import ImportFileError, ImportOptions, import_csv
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


async def test_a_nul_character_rejects_its_row_and_the_others_import(
    store: CrmStore, tmp_path: Path
) -> None:
    text = (
        "external_id,name,phone\n"
        "N-1,Ann Before,02079460011\n"
        "N-2,Bad\x00Name,02079460012\n"
        "N-3,Cat After,02079460013\n"
    )
    report = await import_csv(store, write(tmp_path, text))
    assert report.created == 2
    assert [(r.line, r.external_id) for r in report.rejected] == [(3, "N-2")]
    assert "NUL" in report.rejected[0].reason
    assert await store.count_customers() == 2
    assert (await store.resolve("02079460013")).status == "match"


async def test_values_longer_than_their_column_are_rejected_rows_not_database_errors(
    store: CrmStore, tmp_path: Path
) -> None:
    long_mail = "a" * 250 + "@example.com"
    text = (
        "external_id,name,email,language,organisation,phone\n"
        f"L-1,Ann,{long_mail},,,\n"
        "L-2,Bob,,english-united-kingdom,,\n"
        f"L-3,Cat,,,{'O' * 201},\n"
        f"{'X' * 65},Dan,,,,\n"
        f"L-5,Eve,,,,{'0' * 65}\n"
        "L-6,Fay,fay@example.com,en,Fay Ltd,02079460016\n"
    )
    report = await import_csv(store, write(tmp_path, text))
    reasons = {r.line: r.reason for r in report.rejected}
    assert reasons == {
        2: "email longer than 254 characters",
        3: "language longer than 16 characters",
        4: "organisation longer than 200 characters",
        5: "external_id longer than 64 characters",
        6: "phone: value longer than 64 characters",
    }
    assert report.created == 1
    assert await store.count_customers() == 1


async def test_quoted_fields_parse_as_spreadsheets_write_them(
    store: CrmStore, tmp_path: Path
) -> None:
    text = (
        "external_id,name,address,phone\n"
        'Q-1,"Robert ""Bob"" Smith","=HYPERLINK(""https://example.com/a,b"",""map"")",'
        "02079460021\n"
        'Q-2,"Smith, Jane","1 High Street\nLondon",02079460022\n'
        "Q-3,,,\n"
    )
    report = await import_csv(store, write(tmp_path, text))
    assert report.created == 2
    # The multi-line record above starts on line 3; the bad row after it is on line 5.
    assert [(r.line, r.reason) for r in report.rejected] == [(5, "missing name")]
    bob = await store.view((await store.resolve("02079460021")).customer_id or 0)
    assert bob is not None
    assert bob.name == 'Robert "Bob" Smith'
    assert bob.address == '=HYPERLINK("https://example.com/a,b","map")'
    jane = await store.view((await store.resolve("02079460022")).customer_id or 0)
    assert jane is not None
    assert (jane.name, jane.address) == ("Smith, Jane", "1 High Street\nLondon")


async def test_a_huge_field_is_a_rejected_row_and_the_rows_after_it_import(
    store: CrmStore, tmp_path: Path
) -> None:
    text = (
        "external_id,name,address\n"
        "H-1,Ann,1 High Street\n"
        f"H-2,Bob,{'x' * 200_000}\n"
        "H-3,Cat,3 High Street\n"
    )
    report = await import_csv(store, write(tmp_path, text))
    assert report.created == 2
    assert [r.line for r in report.rejected] == [3]
    assert "field larger than field limit" in report.rejected[0].reason
    assert await store.count_customers() == 2


async def test_a_latin1_byte_after_16_kb_reads_the_whole_file_as_cp1252_with_a_warning(
    store: CrmStore, tmp_path: Path
) -> None:
    rows = [f"P-{i},Person Number {i}" for i in range(700)]  # about 17 KB
    data = ("external_id,name\n" + "\n".join(rows) + "\nZ-1,Zoë Ünal\n").encode("latin-1")
    assert data.index("Zoë".encode("latin-1")) > 16384
    path = tmp_path / "latin1.csv"
    path.write_bytes(data)
    report = await import_csv(store, path)
    assert (report.created, report.rejected) == (701, [])
    assert report.encoding == "cp1252"
    assert report.warnings and "line 702" in report.warnings[0]
    assert [c.name for c in await store.search("Zoë")] == ["Zoë Ünal"]


async def test_one_cp1252_byte_in_a_utf8_file_leaves_the_utf8_names_as_they_are(
    store: CrmStore, tmp_path: Path
) -> None:
    # A UTF-8 export with accented names, one row pasted in from an old Windows file.
    rows = [f"M-{i},Zoë Åström {i}" for i in range(300)]
    data = ("external_id,name\n" + "\n".join(rows) + "\n").encode("utf-8")
    data += "M-300,José Pérez\n".encode("cp1252")
    path = tmp_path / "mixed.csv"
    path.write_bytes(data)
    report = await import_csv(store, path)
    assert (report.created, report.rejected) == (301, [])
    assert "Zoë Åström 7" in [c.name for c in await store.search("Zoë Åström 7")]
    assert [c.name for c in await store.search("José")] == ["José Pérez"]
    assert report.warnings and "line 302" in report.warnings[0]
    assert "cp1252" in report.warnings[0]


async def test_a_quote_never_closed_is_a_rejected_row_and_the_lines_after_it_import(
    store: CrmStore, tmp_path: Path
) -> None:
    text = (
        'external_id,name,phone\nU-1,Ann,02079460041\nU-2,"Bob,02079460042\nU-3,Cat,02079460043\n'
    )
    for dry_run in (True, False):
        report = await import_csv(store, write(tmp_path, text), ImportOptions(dry_run=dry_run))
        assert report.created == 2
        assert [r.line for r in report.rejected] == [3]
        assert "never closed" in report.rejected[0].reason
    assert sorted(c.name for c in await store.search("Ann")) == ["Ann"]
    assert sorted(c.name for c in await store.search("Cat")) == ["Cat"]
    assert await store.count_customers() == 2


async def test_reimporting_a_file_without_some_columns_leaves_those_fields_alone(
    store: CrmStore, tmp_path: Path
) -> None:
    full = (
        "external_id,name,email,flags,phone_mobile,phone_work\n"
        "K-1,Kim Keep,kim@example.com,vip;do_not_call,07700 900301,020 7946 0301\n"
    )
    await import_csv(store, write(tmp_path, full, "full.csv"))
    report = await import_csv(store, write(tmp_path, "external_id,name\nK-1,Kim Kept\n", "b.csv"))
    assert (report.created, report.updated) == (0, 1)
    assert [(c.field, c.old, c.new) for c in report.changes] == [("name", "Kim Keep", "Kim Kept")]
    view = await store.view((await store.resolve("07700 900301")).customer_id or 0)
    assert view is not None
    assert view.name == "Kim Kept"
    assert view.email == "kim@example.com"
    assert {"vip", "do_not_call"} <= set(view.highlights)
    assert sorted(p.e164 or "" for p in view.phones) == ["+442079460301", "+447700900301"]

    # Empty cells leave the fields alone too, and a mobile column leaves the work number.
    text = "external_id,name,email,flags,phone_mobile\nK-1,Kim Kept,,,07700 900302\n"
    await import_csv(store, write(tmp_path, text, "c.csv"))
    view = await store.view((await store.resolve("07700 900302")).customer_id or 0)
    assert view is not None
    assert view.email == "kim@example.com"
    assert {"vip", "do_not_call"} <= set(view.highlights)
    assert sorted(p.e164 or "" for p in view.phones) == ["+442079460301", "+447700900302"]


@pytest.mark.parametrize(("table", "column"), [("customers", "name"), ("customer_words", "word")])
async def test_a_row_the_database_refuses_is_rejected_and_the_rest_of_its_batch_imports(
    store: CrmStore, tmp_path: Path, table: str, column: str
) -> None:
    # A rule only the database knows (a trigger), so that the importer's checks pass the row;
    # on customer_words it fires after the customer and its numbers are written in the batch.
    postgresql = store.engine.dialect.name == "postgresql"
    create = (
        [
            "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
            f"IF lower(NEW.{column}) LIKE '%refuse%' THEN RAISE EXCEPTION 'refused by policy' "
            "USING ERRCODE = '23514'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
            f"CREATE TRIGGER refuse BEFORE INSERT ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION refuse()",
        ]
        if postgresql
        else [
            f"CREATE TRIGGER refuse BEFORE INSERT ON {table} "
            f"WHEN lower(NEW.{column}) LIKE '%refuse%' "
            "BEGIN SELECT RAISE(ABORT, 'refused by policy'); END"
        ]
    )
    async with store.engine.begin() as conn:
        for statement in create:
            await conn.exec_driver_sql(statement)
    try:
        text = (
            "external_id,name,phone\n"
            "R-1,Ann,02079460031\nR-2,Refuse Me,02079460032\nR-3,Cat,02079460033\n"
        )
        report = await import_csv(store, write(tmp_path, text))
    finally:
        async with store.engine.begin() as conn:
            await conn.exec_driver_sql(f"DROP TRIGGER refuse{f' ON {table}' if postgresql else ''}")
            if postgresql:
                await conn.exec_driver_sql("DROP FUNCTION refuse()")
    assert report.created == 2
    assert [(r.line, r.external_id) for r in report.rejected] == [(3, "R-2")]
    assert "refused by policy" in report.rejected[0].reason
    assert await store.count_customers() == 2
    # Nothing of the refused row stays, its numbers included; the others are whole.
    assert (await store.resolve("02079460032")).status == "unknown"
    for number, name in (("02079460031", "Ann"), ("02079460033", "Cat")):
        assert [c.name for c in (await store.resolve(number)).candidates] == [name]


DNC = (
    "external_id,name,email,flags,phone_mobile,phone_work\n"
    "D-1,Dee Nocall,dee@example.com,do_not_call;vip,07700 900401,020 7946 0401\n"
)


async def highlights(store: CrmStore, number: str) -> tuple[str, ...]:
    view = await store.view((await store.resolve(number)).customer_id or 0)
    assert view is not None
    return view.highlights


async def test_do_not_call_is_only_cleared_on_request_and_always_reported(
    store: CrmStore, tmp_path: Path
) -> None:
    await import_csv(store, write(tmp_path, DNC, "dnc.csv"))
    text = "external_id,name,flags\nD-1,Dee Nocall,vip\n"
    report = await import_csv(store, write(tmp_path, text, "flags.csv"))
    assert "do_not_call" in await highlights(store, "07700 900401")
    assert [(k.line, k.external_id) for k in report.kept_do_not_call] == [(2, "D-1")]
    assert report.changes == []
    assert "line 2: D-1: do_not_call kept" in "\n".join(report.lines())

    report = await import_csv(
        store, write(tmp_path, text, "flags.csv"), ImportOptions(clear_do_not_call=True)
    )
    assert "do_not_call" not in await highlights(store, "07700 900401")
    assert [(c.field, c.old, c.new) for c in report.changes] == [("do_not_call", True, False)]
    assert "line 2: D-1: do_not_call True -> False" in "\n".join(report.lines())


async def test_empty_cells_clear_fields_only_with_clear_empty(
    store: CrmStore, tmp_path: Path
) -> None:
    await import_csv(store, write(tmp_path, DNC, "dnc.csv"))
    text = "external_id,name,email,flags,phone_mobile,phone_work\nD-1,Dee Nocall,,,,\n"
    report = await import_csv(store, write(tmp_path, text, "empty.csv"))
    assert (report.updated, report.unchanged, report.changes) == (1, 1, [])

    report = await import_csv(
        store, write(tmp_path, text, "empty.csv"), ImportOptions(clear_empty=True)
    )
    changed = {c.field: (c.old, c.new) for c in report.changes}
    assert changed == {
        "email": ("dee@example.com", None),
        "vip": (True, False),
        "phones": (["07700 900401", "020 7946 0401"], []),
    }
    assert [k.external_id for k in report.kept_do_not_call] == ["D-1"]
    assert (await store.resolve("07700 900401")).status == "unknown"
    found = await store.search("Dee Nocall")
    view = await store.view(found[0].customer_id)
    assert view is not None
    assert (view.email, view.highlights) == (None, ("do_not_call",))


async def test_dry_run_reports_every_change_and_writes_nothing(
    store: CrmStore, tmp_path: Path
) -> None:
    await import_csv(store, write(tmp_path, DNC, "dnc.csv"))
    text = (
        "external_id,name,email,flags,phone_mobile\n"
        "D-1,Dee Renamed,dee@new.example.com,do_not_call,07700 900402\n"
        "D-2,New Person,new@example.com,,07700 900403\n"
    )
    report = await import_csv(store, write(tmp_path, text, "dry.csv"), ImportOptions(dry_run=True))
    assert (report.dry_run, report.created, report.updated) == (True, 1, 1)
    assert [(c.line, c.external_id, c.field, c.old, c.new) for c in report.changes] == [
        (2, "D-1", "name", "Dee Nocall", "Dee Renamed"),
        (2, "D-1", "email", "dee@example.com", "dee@new.example.com"),
        (2, "D-1", "vip", True, False),
        (2, "D-1", "phones", ["07700 900401", "020 7946 0401"], ["020 7946 0401", "07700 900402"]),
    ]
    lines = list(report.lines())
    assert lines[0].startswith("dry run: nothing was written")
    assert "line 2: D-1: name 'Dee Nocall' -> 'Dee Renamed'" in lines
    assert await store.count_customers() == 1
    assert (await store.resolve("07700 900401")).status == "match"
    assert (await store.resolve("07700 900403")).status == "unknown"

    report = await import_csv(store, write(tmp_path, text, "dry.csv"))
    assert [(c.field, c.new) for c in report.changes][:2] == [
        ("name", "Dee Renamed"), ("email", "dee@new.example.com")]  # fmt: skip
    assert await store.count_customers() == 2
    assert (await store.resolve("07700 900402")).status == "match"
    assert (await store.resolve("020 7946 0401")).status == "match"  # the work number stays


async def test_the_store_refuses_a_nul_character_as_invalid_customer_data(
    store: CrmStore,
) -> None:
    with pytest.raises(InvalidCustomer, match="name contains a NUL"):
        await store.upsert_customer(name="Bad\x00Name", external_id="Z")
    with pytest.raises(InvalidCustomer, match="phone number contains a NUL"):
        await store.upsert_customer(name="Ann", phones=["0207\x00"])
    assert await store.count_customers() == 0


async def test_an_update_stores_the_marketing_consent_time_as_the_store_reads_it_back(
    store: CrmStore, tmp_path: Path
) -> None:
    """Updates go by the driver's executemany on SQLite: their timestamps must read back as
    the same instants SQLAlchemy writes, or the next import would see a change."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import select

    from crm_core.models import Customer

    await import_csv(store, write(tmp_path, "external_id,name,flags\nM-1,Mo Market,vip\n"))
    before = datetime.now(UTC)
    report = await import_csv(
        store, write(tmp_path, "external_id,name,flags\nM-1,Mo Market,vip;marketing\n", "b.csv")
    )
    assert [(c.field, c.old, c.new) for c in report.changes] == [("marketing_opt_in", False, True)]
    async with store.engine.connect() as conn:
        consent, updated = (
            await conn.execute(
                select(Customer.marketing_opt_in_at, Customer.updated_at).where(
                    Customer.external_id == "M-1"
                )
            )
        ).one()
        if conn.dialect.name == "sqlite":  # as SQLAlchemy writes them: naive UTC text
            raw = await conn.exec_driver_sql(
                "SELECT marketing_opt_in_at, updated_at FROM customers WHERE external_id = 'M-1'"
            )
            for text in raw.one():
                assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", text), text
    for stamp in (consent, updated):
        stamp = stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
        assert before - timedelta(seconds=1) <= stamp <= datetime.now(UTC)

    again = await import_csv(
        store, write(tmp_path, "external_id,name,flags\nM-1,Mo Market,vip;marketing\n", "c.csv")
    )
    assert (again.updated, again.unchanged, again.changes) == (1, 1, [])


async def test_the_collector_runs_less_often_during_an_import_and_as_before_after_it(
    store: CrmStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gc

    from crm_core import customer_batch

    seen: list[tuple[int, int, int]] = []
    apply = customer_batch.apply

    async def watched(*args: object, **kwargs: object) -> None:
        seen.append(gc.get_threshold())
        if len(seen) > 1:
            raise RuntimeError("the database went away")
        await apply(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(customer_batch, "apply", watched)
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        await import_csv(store, write(tmp_path, "external_id,name\nG-1,Gus\n"))
        assert gc.get_threshold() == (700, 10, 10)
        assert seen == [(50_000, 10, 10)]
        with pytest.raises(RuntimeError):  # an import that fails restores them too
            await import_csv(store, write(tmp_path, "external_id,name\nG-2,Gil\n", "2.csv"))
        assert gc.get_threshold() == (700, 10, 10)
    finally:
        gc.set_threshold(*before)
