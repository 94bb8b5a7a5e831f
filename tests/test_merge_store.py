"""Merging two customers and dividing one, on SQLite and PostgreSQL: nothing is lost (counted
before and after with independent ``SELECT count(*)`` per table), everything is audited."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import insert, text

from crm_core import CrmStore, InteractionRecord
from crm_core.merge import CustomerMaintenance, MergeConflict, NewCustomer
from crm_core.models import Case, Contact, Order, OwnedProduct
from crm_core.testing import empty_store

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
# Every table that holds a customer's records, counted with plain SQL (not the merge's code).
TABLES = ("contacts", "phone_numbers", "cases", "orders", "owned_products", "interactions")


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[CrmStore]:
    crm = await empty_store(db_url)
    try:
        yield crm
    finally:
        await crm.close()


async def count(store: CrmStore, table: str, customer_id: int | None = None) -> int:
    sql = f"SELECT count(*) FROM {table}"
    if customer_id is not None:
        sql += f" WHERE customer_id = {int(customer_id)}"
    async with store.engine.connect() as conn:
        return int((await conn.execute(text(sql))).scalar_one())


async def counts(store: CrmStore, *ids: int) -> dict[str, tuple[int, ...]]:
    return {t: (*[await count(store, t, i) for i in ids], await count(store, t)) for t in TABLES}


async def call(store: CrmStore, call_id: str, caller: str, customer_id: int, day: int) -> int:
    started = NOW.replace(day=day)
    return await store.record_interaction(
        InteractionRecord(
            call_id=call_id, caller=caller, customer_id=customer_id, started_at=started,
            answered_at=started, ended_at=started, queues=["tier1"], tiers=["tier1"],
            agents=["Agent 1001"], outcome="answered", notes=f"call {call_id}",
        )
    )  # fmt: skip


async def records(store: CrmStore, customer_id: int, tag: str) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(insert(Case).values(customer_id=customer_id, subject=f"case {tag}",
                                               status="open", tier="tier1", notes=""))  # fmt: skip
        await conn.execute(insert(Order).values(customer_id=customer_id, reference=f"ORD-{tag}",
                                                status="shipped", placed_at=NOW))  # fmt: skip
        await conn.execute(insert(OwnedProduct).values(customer_id=customer_id, product=tag))
        await conn.execute(insert(Contact).values(customer_id=customer_id, name=f"PA {tag}"))


async def test_two_duplicates_merged_keep_every_record_and_leave_a_tombstone(
    store: CrmStore,
) -> None:
    jon = await store.upsert_customer(
        name="Jon Smith", external_id="A1", phones=["020 7123 4567", "07700 900123"],
        email=None, flags=["vip", "marketing_opt_in"],
    )  # fmt: skip
    john = await store.upsert_customer(
        name="John Smith", external_id="B7", phones=["020 7946 0011"],
        email="john@example.com", address="1 High Street, London N1 9GU",
        flags=["do_not_call", "hearing_impaired"],
    )  # fmt: skip
    other = await store.upsert_customer(name="Someone Else", phones=["020 7946 0999"])
    a, b = jon.customer_id, john.customer_id
    await records(store, a, "a")
    await records(store, b, "b1")
    await records(store, b, "b2")
    await call(store, "c-a", "+442071234567", a, 1)
    await call(store, "c-b1", "+442079460011", b, 2)
    await call(store, "c-b2", "+442079460011", b, 3)
    await records(store, other.customer_id, "x")
    # Cached: the number resolves to John before the merge.
    assert (await store.resolve("02079460011")).customer_id == b
    before = await counts(store, a, b)

    entry = await CustomerMaintenance(store).merge(a, b, actor="Supervisor")

    after = await counts(store, a, b)
    for table in TABLES:
        (a0, b0, total0), (a1, b1, total1) = before[table], after[table]
        assert (a1, b1, total1) == (a0 + b0, 0, total0), table
    assert after["interactions"][0] == 3 and after["cases"][0] == 3
    assert (await store.resolve("+442079460011")).customer_id == a  # cache invalidated
    view = await store.view(a)
    assert view is not None
    assert {"vip", "do_not_call", "hearing_impaired"} <= set(view.flags)
    assert "marketing_opt_in" not in view.flags  # consent only when both gave it
    assert view.email == "john@example.com" and view.address == "1 High Street, London N1 9GU"
    assert view.name == "Jon Smith"
    # The tombstone: the old id leads to the survivor; search no longer offers the old record.
    maintenance = CustomerMaintenance(store)
    assert await maintenance.survivor_of(b) == a
    assert await maintenance.survivor_of(a) is None
    assert [c.customer_id for c in await store.search("John Smith")] == []
    assert await count(store, "customers") == 3
    # The audit entry: who, what moved, counts before and after for both.
    assert (entry["actor"], entry["action"], entry["customer_id"], entry["other_id"]) == (
        "Supervisor", "merge", a, b,
    )  # fmt: skip
    assert entry["detail"]["before"]["cases"] == {str(a): 1, str(b): 2, "total": 4}
    assert entry["detail"]["after"]["cases"] == {str(a): 3, str(b): 0, "total": 4}
    assert len(entry["detail"]["moved"]["interactions"]) == 2
    logged = await maintenance.audit(0, 4e9)
    assert [(e["action"], e["actor"], e["other_id"]) for e in logged] == [
        ("merge", "Supervisor", b)
    ]


async def test_a_merge_of_a_customer_with_itself_or_one_merged_away_is_refused(
    store: CrmStore,
) -> None:
    a = (await store.upsert_customer(name="Ann Example", phones=["02071234567"])).customer_id
    b = (await store.upsert_customer(name="Ann Exemple", phones=["02071234568"])).customer_id
    c = (await store.upsert_customer(name="Anne Example", phones=["02071234569"])).customer_id
    maintenance = CustomerMaintenance(store)
    with pytest.raises(MergeConflict, match="into itself"):
        await maintenance.merge(a, a, actor="Supervisor")
    await maintenance.merge(a, b, actor="Supervisor")
    before = await counts(store, a, b, c)
    for survivor, merged in ((c, b), (b, c)):
        with pytest.raises(MergeConflict, match=f"customer {b} was already merged into"):
            await maintenance.merge(survivor, merged, actor="Supervisor")
    assert await counts(store, a, b, c) == before
    assert len(await maintenance.audit(0, 4e9)) == 1


async def test_dividing_a_household_number_gives_the_second_person_their_calls_and_case(
    store: CrmStore,
) -> None:
    home = await store.upsert_customer(
        name="Ann Smith", phones=["020 7123 4567", "07700 900555"],
        address="4 Mill Lane, Leeds LS1 4AP",
    )  # fmt: skip
    ann = home.customer_id
    await records(store, ann, "ann")
    await records(store, ann, "bob")
    await call(store, "c1", "+442071234567", ann, 1)
    await call(store, "c2", "+447700900555", ann, 2)
    maintenance = CustomerMaintenance(store)
    held = await maintenance.records(ann)
    landline = next(p["id"] for p in held["phones"] if p["e164"] == "+442071234567")
    mobile = next(p["id"] for p in held["phones"] if p["e164"] == "+447700900555")
    bob_case = next(c["id"] for c in held["cases"] if c["subject"] == "case bob")
    bob_call = next(i["id"] for i in held["interactions"] if i["call_id"] == "c2")
    assert (await store.resolve("07700900555")).customer_id == ann  # cached before
    before = {t: await count(store, t) for t in TABLES}

    entry = await maintenance.divide(
        ann, actor="Supervisor", new_customer=NewCustomer("Bob Smith"),
        phone_ids=[mobile], shared_phone_ids=[landline],
        interaction_ids=[bob_call], case_ids=[bob_case],
    )  # fmt: skip

    bob = entry["other_id"]
    assert entry["action"] == "divide" and entry["detail"]["created"] is True
    assert (await store.resolve("07700900555")).customer_id == bob
    shared = await store.resolve("02071234567")
    assert shared.status == "ambiguous"
    assert {c.customer_id for c in shared.candidates} == {ann, bob}
    assert await count(store, "interactions", bob) == 1
    assert await count(store, "cases", bob) == 1
    assert await count(store, "phone_numbers", bob) == 2
    assert await count(store, "phone_numbers", ann) == 1
    after = {t: await count(store, t) for t in TABLES}
    assert after == {**before, "phone_numbers": before["phone_numbers"] + 1}
    bob_view = await store.view(bob)
    assert bob_view is not None and bob_view.address == "4 Mill Lane, Leeds LS1 4AP"
    assert [c.customer_id for c in await store.search("Bob Smith")] == [bob]
    assert entry["detail"]["moved"]["cases"] == [bob_case]


async def test_a_divide_naming_another_customers_record_moves_nothing(store: CrmStore) -> None:
    ann = (await store.upsert_customer(name="Ann", phones=["02071234567"])).customer_id
    bob = (await store.upsert_customer(name="Bob", phones=["02071234568"])).customer_id
    maintenance = CustomerMaintenance(store)
    bobs_phone = (await maintenance.records(bob))["phones"][0]["id"]
    anns_phone = (await maintenance.records(ann))["phones"][0]["id"]
    before = await counts(store, ann, bob)
    with pytest.raises(MergeConflict, match=f"phone_numbers: {bobs_phone} not customer {ann}'s"):
        await maintenance.divide(ann, actor="S", to_customer_id=bob,
                                 phone_ids=[anns_phone, bobs_phone])  # fmt: skip
    assert await counts(store, ann, bob) == before
    assert await maintenance.audit(0, 4e9) == []


async def test_two_merges_of_one_pair_at_once_leave_one_survivor(store: CrmStore) -> None:
    """A into B and B into A at the same moment: one wins, the other is refused (409), and
    there is no tombstone pointing each way."""
    a = (await store.upsert_customer(name="Ann Example", phones=["02071234567"])).customer_id
    b = (await store.upsert_customer(name="Ann Exemple", phones=["02071234568"])).customer_id
    await records(store, a, "a")
    await records(store, b, "b")
    before = await counts(store, a, b)
    maintenance = CustomerMaintenance(store)
    results = await asyncio.gather(
        maintenance.merge(a, b, actor="S1"), maintenance.merge(b, a, actor="S2"),
        return_exceptions=True,
    )  # fmt: skip
    refused = [r for r in results if isinstance(r, MergeConflict)]
    done = [r for r in results if isinstance(r, dict)]
    assert (len(done), len(refused)) == (1, 1), results
    keep, gone = done[0]["customer_id"], done[0]["other_id"]
    after = await counts(store, keep, gone)
    for table in TABLES:
        assert after[table] == (before[table][0] + before[table][1], 0, before[table][2])
    assert await count(store, "customer_merges") == 1
    assert await maintenance.survivor_of(keep) is None


def candidate(customer_id: int, name: str, why: str) -> dict[str, object]:
    return {"customer_id": customer_id, "external_id": None, "name": name, "rank_reason": why}


async def shared_call(store: CrmStore, call_id: str, candidates: list[dict[str, object]]) -> None:
    """A call from a number several customers share, nobody confirmed: unattributed."""
    await store.record_interaction(
        InteractionRecord(
            call_id=call_id, caller="+442071234567", customer_id=None, started_at=NOW,
            ended_at=NOW, outcome="abandoned",
            extra={"candidates": candidates, "resolution": "ambiguous"},
        )
    )  # fmt: skip


async def test_older_calls_listing_the_merged_customer_as_a_candidate_name_the_survivor(
    store: CrmStore,
) -> None:
    jon = await store.upsert_customer(name="Jon Smith", phones=["020 7123 4567"])
    john = await store.upsert_customer(name="John Smith", phones=["020 7123 4567"])
    zed = await store.upsert_customer(name="Zed Other", phones=["020 7123 4567"])
    a, b, c = jon.customer_id, john.customer_id, zed.customer_id
    await shared_call(store, "both", [candidate(b, "John Smith", "latest call"),
                                      candidate(a, "Jon Smith", "open case")])  # fmt: skip
    await shared_call(store, "one", [candidate(b, "John Smith", "latest call"),
                                     candidate(c, "Zed Other", "")])  # fmt: skip
    await shared_call(store, "neither", [candidate(c, "Zed Other", "")])
    before = await count(store, "interactions")

    entry = await CustomerMaintenance(store).merge(a, b, actor="Supervisor")

    both, one, neither = [await store.interaction(k) for k in ("both", "one", "neither")]
    assert both is not None and one is not None and neither is not None

    def listed(row: dict[str, Any]) -> list[tuple[object, ...]]:
        return [
            (k["customer_id"], k["name"], k.get("merged_from")) for k in row["extra"]["candidates"]
        ]

    # Both were candidates: one customer is left, the survivor, said to be the merged one too.
    assert listed(both) == [(a, "Jon Smith", b)]
    assert listed(one) == [(a, "Jon Smith", b), (c, "Zed Other", None)]
    assert neither["extra"]["candidates"] == [candidate(c, "Zed Other", "")]
    assert both["customer_id"] is None and both["extra"]["resolution"] == "ambiguous"
    assert await count(store, "interactions") == before
    assert sorted(entry["detail"]["candidates_renamed"]) == sorted([both["id"], one["id"]])


async def test_the_merged_customers_account_number_still_finds_the_survivor(
    store: CrmStore,
) -> None:
    jon = await store.upsert_customer(name="Jon Smith", external_id="A1", phones=["020 7123 4567"])
    john = await store.upsert_customer(name="John Smith", external_id="B7")
    a, b = jon.customer_id, john.customer_id
    await CustomerMaintenance(store).merge(a, b, actor="Supervisor")

    # The caller reads the account number on their old letter: to the IVR and in the search box.
    assert await store.customer_by_external_id("B7") == a
    assert [(c.customer_id, c.name) for c in await store.search("B7")] == [(a, "Jon Smith")]
    assert await store.customer_by_external_id("A1") == a
    assert await store.customer_by_external_id("nobody") is None


async def test_a_number_both_duplicates_had_is_shown_once_on_the_survivor(store: CrmStore) -> None:
    jon = await store.upsert_customer(name="Jon Smith", phones=["020 7123 4567", "07700 900123"])
    john = await store.upsert_customer(name="John Smith", phones=["+44 20 7123 4567"])
    await CustomerMaintenance(store).merge(jon.customer_id, john.customer_id, actor="Supervisor")

    view = await store.view(jon.customer_id)
    assert view is not None
    assert [p.e164 for p in view.phones] == ["+442071234567", "+447700900123"]
    assert await count(store, "phone_numbers", jon.customer_id) == 3  # every row kept
    assert (await store.resolve("02071234567")).status == "match"
