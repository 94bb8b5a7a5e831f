"""`cti duplicates` and the scoring behind it: likely duplicates by number, email and similar
names at one address, each with its score and reasons; found by blocking, not all pairs."""

from __future__ import annotations

import asyncio
import json
import random
import time

import pytest

from crm_core.duplicates import _Customer, find_duplicates
from crm_core.testing import empty_store
from cti.cli import main


@pytest.fixture
def cli_db(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Customers with two duplicates, one household and strangers; `cti` finds the store
    through CTI_DATABASE_URL."""

    async def prepare() -> None:
        store = await empty_store(db_url)
        try:
            add = store.upsert_customer
            await add(name="Jon Smith", external_id="A", phones=["020 7123 4567"])
            await add(name="John Smith", external_id="B", phones=["+44 20 7123 4567"])
            await add(name="Mary Jones", external_id="C", email="Mary.Jones@Example.com")
            await add(name="Jones, Mary", external_id="D", email="mary.jones@example.com")
            await add(name="Ann Taylor", external_id="E", phones=["0113 496 0000"],
                      address="4 Mill Lane, Leeds LS1 4AP")  # fmt: skip
            await add(name="Bob Taylor", external_id="F", phones=["01134960000"],
                      address="4 Mill Lane, Leeds LS1 4AP")  # fmt: skip
            await add(name="Peter Brown", external_id="G", address="9 Elm Road, York YO1 7HH")
            await add(name="Petra Brown", external_id="H", address="9 elm road, york yo17hh")
            await add(name="Zed Unique", external_id="I", phones=["020 7946 0999"])
        finally:
            await store.close()

    asyncio.run(prepare())
    monkeypatch.setenv("CTI_DATABASE_URL", db_url)
    monkeypatch.delenv("CTI_CONFIG", raising=False)
    return db_url


def test_cti_duplicates_lists_each_pair_with_its_score_and_reasons(
    cli_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["duplicates", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    found = {(p["first_name"], p["second_name"]): p for p in report["pairs"]}
    assert set(found) == {("Jon Smith", "John Smith"), ("Mary Jones", "Jones, Mary")}
    same_number = found[("Jon Smith", "John Smith")]
    assert [r["kind"] for r in same_number["reasons"]] == ["number", "name"]
    assert same_number["reasons"][0]["detail"] == "same number +442071234567"
    assert same_number["score"] == sum(r["points"] for r in same_number["reasons"])
    same_email = found[("Mary Jones", "Jones, Mary")]
    assert same_email["score"] == 100  # same email (case aside), same name (order aside)
    assert [p["score"] for p in report["pairs"]] == sorted(
        (p["score"] for p in report["pairs"]), reverse=True
    )
    assert report["customers"] == 9

    # The household (one number, one address, two first names) and Peter/Petra at one
    # address are compared but score below the default; a lower bar lists them with why.
    assert main(["duplicates", "--min-score", "0"]) == 0
    out = capsys.readouterr().out
    assert "Ann Taylor  ~  #6 Bob Taylor" in out
    assert "same address 4 Mill Lane, Leeds LS1 4AP" in out
    assert "Peter Brown  ~  #8 Petra Brown" in out and "same postcode YO1 7HH" in out
    assert "Zed Unique" not in out
    assert main(["duplicates"]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0].startswith("100  #") and "Mary Jones" in lines[0]
    assert any(line.strip() == "+45  same email mary.jones@example.com" for line in lines)
    assert "2 likely duplicate pair(s) scoring 50+ among 9 customers" in lines[-1]


def test_a_household_sharing_a_number_is_not_a_duplicate_but_one_name_spelt_twice_is() -> None:
    customers = {
        1: _Customer("Ann Smith", None, "1 Rose Row, Bath BA1 1AA"),
        2: _Customer("Bob Smith", None, "1 Rose Row, Bath BA1 1AA"),
        3: _Customer("Catherine Green", None, None),
        4: _Customer("Katherine Green", None, None),
    }
    numbers = [(1, "+441225000001"), (2, "+441225000001"), (3, "+447700900001"),
               (4, "+447700900001")]  # fmt: skip
    report = find_duplicates(customers, numbers)
    assert [(p.first_id, p.second_id) for p in report.pairs] == [(3, 4)]
    assert report.compared == 2
    scores = {(p.first_id, p.second_id): p.score for p in find_duplicates(
        customers, numbers, min_score=0).pairs}  # fmt: skip
    assert scores[(1, 2)] < 50 <= scores[(3, 4)]


def test_a_switchboard_number_shared_by_many_is_skipped_not_compared_pair_by_pair() -> None:
    customers = {i: _Customer(f"Person {i}", None, None) for i in range(1, 101)}
    report = find_duplicates(customers, [(i, "+442079460000") for i in customers], min_score=0)
    assert (report.compared, report.skipped_blocks, report.pairs) == (0, 1, ())


def test_100000_customers_are_checked_in_seconds_by_blocking() -> None:
    rng = random.Random(7)
    first = ["Ann", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Harry", "Isla", "Jack"]
    last = ["Smith", "Jones", "Taylor", "Brown", "Wilson", "Evans", "Thomas", "Roberts"]
    customers = {}
    numbers = []
    for i in range(1, 100_001):
        name = f"{rng.choice(first)} {rng.choice(last)}"
        address = f"{rng.randrange(1, 200)} High Street, Town{rng.randrange(500)}"
        customers[i] = _Customer(name, f"user{i}@example.com", address)
        numbers.append((i, f"+447700{i:06d}"))
    # 50 planted duplicates: the same person entered twice, with the same number.
    for n in range(50):
        twin = 100_001 + n
        customers[twin] = _Customer(customers[n + 1].name + "e", None, None)
        numbers.append((twin, f"+447700{n + 1:06d}"))
    started = time.perf_counter()
    report = find_duplicates(customers, numbers)
    took = time.perf_counter() - started
    print(f"100,050 customers: {report.compared} pairs compared, {took:.2f} s")
    planted = {(n + 1, 100_001 + n) for n in range(50)}
    assert planted <= {(p.first_id, p.second_id) for p in report.pairs}
    assert took < 30  # about 1 s on an idle core; generous for the shared machine
