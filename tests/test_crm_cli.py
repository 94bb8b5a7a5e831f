"""`cti seed`, `cti import`, `cti lookup` and `cti migrate` as a user runs them."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from contextlib import closing
from pathlib import Path

import asyncpg
import pytest

from crm_core import CrmStore, schema
from crm_core.seed import DEMO_NUMBERS, DEMO_UNKNOWN_NUMBER
from crm_core.testing import empty_store
from cti.cli import main


@pytest.fixture
def cli_db(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """An empty migrated store that `cti` finds through CTI_DATABASE_URL."""

    async def prepare() -> None:
        store = await empty_store(db_url)
        await store.close()

    asyncio.run(prepare())
    monkeypatch.setenv("CTI_DATABASE_URL", db_url)
    monkeypatch.delenv("CTI_CONFIG", raising=False)
    return db_url


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def lookup(capsys: pytest.CaptureFixture[str], number: str) -> dict[str, object]:
    code, out, _ = run(capsys, "lookup", number, "--json")
    assert code == 0
    result: dict[str, object] = json.loads(out)
    return result


def test_seed_then_lookup_json_of_every_kind_of_caller(
    cli_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "seed", "--customers", "50", "--seed", "3", "--quiet")
    assert code == 0
    assert out.startswith("seeded 50 customers (9 demo customers added)")

    known = lookup(capsys, "020 7123 4567")
    assert set(known) == {"status", "e164", "candidates", "view"}
    assert (known["status"], known["e164"]) == ("match", DEMO_NUMBERS["known"])
    assert known["candidates"] == [
        {"customer_id": 1, "external_id": "CUST-000001", "name": "Alice Whitaker"}
    ]
    view = known["view"]
    assert isinstance(view, dict)
    assert view["name"] == "Alice Whitaker"
    assert view["orders"][0]["reference"] == "ORD-1001"

    vip = lookup(capsys, "07700900456")
    assert isinstance(vip["view"], dict)
    assert vip["view"]["highlights"] == ["vip"]

    shared = lookup(capsys, "00442079460833")
    assert shared["status"] == "ambiguous"
    assert [c["external_id"] for c in shared["candidates"]] == ["CUST-000833", "CUST-000834"]
    assert isinstance(shared["view"], dict)
    assert shared["view"]["external_id"] == "CUST-000833"  # the first candidate's view

    for number, status, e164 in [
        (DEMO_UNKNOWN_NUMBER, "unknown", DEMO_UNKNOWN_NUMBER),
        ("anonymous", "anonymous", None),
        ("<unknown>", "anonymous", None),
        ("201", "internal", None),
    ]:
        assert lookup(capsys, number) == {
            "status": status, "e164": e164, "candidates": [], "view": None}  # fmt: skip


def test_lookup_prints_the_view_for_a_person(
    cli_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "seed", "--customers", "0", "--quiet")
    code, out, _ = run(capsys, "lookup", "+442079460652")
    assert code == 0
    assert "status: match" in out
    assert "Paula Grant" in out
    assert "!! PAYMENT ARREARS" in out


def test_import_prints_the_report_and_json_on_request(
    cli_db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    csv = tmp_path / "contacts.csv"
    csv.write_text(
        "external_id,name,phone,flags,shoe_size\n"
        "A1,Ann,020 7123 4567,vip,5\n"
        "A2,,020 7946 0001,,6\n"
        "A3,Bob,12,,7\n",
        encoding="utf-8",
    )
    code, out, _ = run(capsys, "import", str(csv))
    assert code == 0
    assert "3 rows: 2 customers created, 0 updated, 1 rejected" in out
    assert "unknown columns (ignored): shoe_size" in out
    assert "line 3: rejected (A2): missing name" in out
    assert "line 4: A3: invalid number in phone: '12'" in out

    code, out, _ = run(capsys, "import", str(csv), "--json")
    report = json.loads(out)
    assert (report["created"], report["updated"]) == (0, 2)


def test_import_of_a_file_without_required_columns_fails_with_the_reason(
    cli_db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text("who,phone\nAnn,02071234567\n", encoding="utf-8")
    code, _, err = run(capsys, "import", str(csv))
    assert code == 2
    assert "missing required column(s) external_id, name" in err


def test_migrate_reports_the_schema_revision(
    cli_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "migrate")
    assert code == 0
    assert f"schema already at {schema.head_revision()}" in out


def test_lookup_against_a_dead_database_exits_1_with_a_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CTI_DATABASE_URL", "postgresql://postgres@127.0.0.1:1/crm")
    monkeypatch.delenv("CTI_CONFIG", raising=False)
    code, out, err = run(capsys, "lookup", "02071234567", "--json")
    assert code == 1
    assert out == ""
    assert "cti lookup: CRM database unavailable" in err


def independent_count(url: str, table: str = "customers") -> int:
    """``SELECT count(*)`` on a fresh driver connection: what a later reader sees, not what
    the writer believes it wrote."""
    if url.startswith("sqlite"):
        with closing(sqlite3.connect(url.split(":///", 1)[1])) as conn:
            return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])

    async def count() -> int:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
        try:
            return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
        finally:
            await conn.close()

    return asyncio.run(count())


def test_seed_keeps_every_batch_it_reports(cli_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "seed", "--customers", "2500", "--batch", "1000", "--quiet")
    assert code == 0
    assert out.startswith("seeded 2500 customers (9 demo customers added)")
    assert independent_count(cli_db) == 2500 + 9
    # Every generated customer has at least one number, in the same committed batches.
    assert independent_count(cli_db, "phone_numbers") > 2500

    code, out, _ = run(capsys, "seed", "--customers", "1200", "--batch", "500", "--quiet")
    assert code == 0
    assert independent_count(cli_db) == 2500 + 9 + 1200


def test_import_dry_run_and_the_new_flags_from_the_command_line(
    cli_db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    first = tmp_path / "first.csv"
    first.write_text("external_id,name,flags,phone\nA1,Ann,vip;dnc,020 7123 4567\n", "utf-8")
    assert run(capsys, "import", str(first), "--quiet")[0] == 0
    second = tmp_path / "second.csv"
    second.write_text("external_id,name,flags\nA1,Ann Other,\n", "utf-8")

    code, out, _ = run(capsys, "import", str(second), "--dry-run", "--clear-empty", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["dry_run"] is True
    assert [(c["field"], c["old"], c["new"]) for c in report["changes"]] == [
        ("name", "Ann", "Ann Other"), ("vip", True, False)]  # fmt: skip
    assert report["kept_do_not_call"] == [{"line": 2, "external_id": "A1"}]
    assert independent_count(cli_db) == 1

    code, out, _ = run(capsys, "import", str(second), "--clear-empty", "--clear-do-not-call")
    assert code == 0
    assert "line 2: A1: do_not_call True -> False" in out
    assert "line 2: A1: name 'Ann' -> 'Ann Other'" in out

    with pytest.raises(SystemExit):
        run(capsys, "import", "--help")
    help_text = capsys.readouterr().out
    for flag in ("--dry-run", "--clear-empty", "--clear-do-not-call"):
        assert flag in help_text


def test_seed_that_the_database_refuses_exits_1_with_the_reason_and_keeps_nothing(
    cli_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    postgresql = cli_db.startswith("postgresql")
    create = (
        [
            "CREATE FUNCTION refuse_seed() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'refused by policy' USING ERRCODE = '23514'; END $$ "
            "LANGUAGE plpgsql",
            "CREATE TRIGGER refuse_seed BEFORE INSERT ON phone_numbers "
            "FOR EACH ROW EXECUTE FUNCTION refuse_seed()",
        ]
        if postgresql
        else [
            "CREATE TRIGGER refuse_seed BEFORE INSERT ON phone_numbers "
            "BEGIN SELECT RAISE(ABORT, 'refused by policy'); END"
        ]
    )
    drop = ["DROP TRIGGER refuse_seed ON phone_numbers", "DROP FUNCTION refuse_seed()"]

    async def admin(statements: list[str]) -> None:
        store = await CrmStore.open(cli_db)
        try:
            async with store.engine.begin() as conn:
                for statement in statements:
                    await conn.exec_driver_sql(statement)
        finally:
            await store.close()

    asyncio.run(admin(create))
    try:
        code, _, err = run(capsys, "seed", "--customers", "30", "--no-demo", "--quiet")
    finally:
        asyncio.run(admin(drop if postgresql else ["DROP TRIGGER refuse_seed"]))
    assert code == 1
    assert "cti seed: CRM seed rejected: " in err and "refused by policy" in err
    assert independent_count(cli_db) == 0  # the batch went whole or not at all
