"""The CRM store on SQLite and PostgreSQL: resolution, ranking, the 360° view, history writes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert

from crm_core import CrmStore, InteractionRecord, PhoneInput
from crm_core.models import Case, Order, OwnedProduct
from crm_core.testing import empty_store
from crm_core.types import ContactView

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[CrmStore]:
    crm = await empty_store(db_url)
    try:
        yield crm
    finally:
        await crm.close()


async def add_case(store: CrmStore, customer_id: int, **values: object) -> None:
    row = {"subject": "Broken router", "status": "open", "tier": "tier2", "notes": "", **values}
    async with store.engine.begin() as conn:
        await conn.execute(insert(Case).values(customer_id=customer_id, **row))


async def add_order(store: CrmStore, customer_id: int, **values: object) -> None:
    row = {"reference": "ORD-1", "status": "shipped", "placed_at": NOW, **values}
    async with store.engine.begin() as conn:
        await conn.execute(insert(Order).values(customer_id=customer_id, **row))


@pytest.mark.parametrize("presented", ["+442071234567", "02071234567", "00442071234567",
                                       "442071234567", "+44 20 7123 4567"])  # fmt: skip
async def test_all_forms_of_a_stored_number_find_the_same_customer(
    store: CrmStore, presented: str
) -> None:
    alice = await store.upsert_customer(name="Alice Smith", external_id="C1",
                                        phones=["020 7123 4567"])  # fmt: skip
    result = await store.resolve(presented)
    assert result.status == "match"
    assert result.e164 == "+442071234567"
    assert result.caller == presented
    assert result.customer_id == alice.customer_id
    assert result.candidates[0].external_id == "C1"


async def test_unknown_number_is_unknown_with_its_e164(store: CrmStore) -> None:
    await store.upsert_customer(name="Alice", phones=["02071234567"])
    result = await store.resolve("+442079460999")
    assert (result.status, result.e164, result.candidates) == ("unknown", "+442079460999", ())


@pytest.mark.parametrize("caller", ["anonymous", "restricted", "", "<unknown>", None])
async def test_withheld_numbers_are_anonymous_and_never_a_customer(
    store: CrmStore, caller: str | None
) -> None:
    await store.upsert_customer(name="Nobody", phones=["02071234567"])
    result = await store.resolve(caller)
    assert result.status == "anonymous"
    assert result.candidates == ()


async def test_extensions_are_internal_even_if_a_customer_number_ends_the_same(
    store: CrmStore,
) -> None:
    await store.upsert_customer(name="Alice", phones=["02071234567"])
    result = await store.resolve("4567")
    assert result.status == "internal"
    assert result.candidates == ()


async def test_garbage_caller_id_is_unknown_not_an_error(store: CrmStore) -> None:
    result = await store.resolve("not a number")
    assert (result.status, result.e164) == ("unknown", None)


async def test_shared_number_is_ambiguous_and_ranked_by_open_case_order_then_last_call(
    store: CrmStore,
) -> None:
    switchboard = "020 7946 0100"
    quiet = await store.upsert_customer(name="Quiet Ltd", external_id="Q", phones=[switchboard])
    caller = await store.upsert_customer(name="Caller Ltd", external_id="K", phones=[switchboard])
    buyer = await store.upsert_customer(name="Buyer Ltd", external_id="B", phones=[switchboard])
    cased = await store.upsert_customer(name="Cased Ltd", external_id="X", phones=[switchboard])
    await store.record_interaction(
        InteractionRecord(call_id="old-call", customer_id=caller.customer_id,
                          caller="02079460100", started_at=NOW - timedelta(days=3))
    )  # fmt: skip
    await add_order(store, buyer.customer_id, placed_at=NOW - timedelta(days=2))
    await add_order(store, quiet.customer_id, placed_at=NOW - timedelta(days=400))
    await add_case(store, cased.customer_id, tier="tier3")

    result = await store.resolve("+442079460100")

    assert result.status == "ambiguous"
    assert [c.external_id for c in result.candidates] == ["X", "B", "K", "Q"]
    reasons = [c.rank_reason for c in result.candidates]
    assert reasons[0].startswith("open case #") and "(tier3)" in reasons[0]
    assert reasons[1] == "order placed 2 days ago"
    assert reasons[2] == "last call 3 days ago"
    assert reasons[3] == "no open case, recent order or past call"
    assert result.customer_id == cased.customer_id


async def test_cache_is_invalidated_when_a_customers_numbers_change(db_url: str) -> None:
    store = await empty_store(db_url, cache_ttl_s=3600, cache_size=100)
    try:
        bob = await store.upsert_customer(name="Bob", external_id="B", phones=["02071234567"])
        assert (await store.resolve("02071234567")).status == "match"
        assert (await store.resolve("02079460555")).status == "unknown"
        hits = store.cache.hits
        assert (await store.resolve("+442071234567")).status == "match"
        assert store.cache.hits == hits + 1  # served from the cache

        # Bob changes his number: the old one is no longer his, the new one is.
        await store.upsert_customer(name="Bob", external_id="B", phones=["02079460555"])
        assert (await store.resolve("02071234567")).status == "unknown"
        moved = await store.resolve("02079460555")
        assert (moved.status, moved.customer_id) == ("match", bob.customer_id)

        await store.add_phone(bob.customer_id, "07700 900123")
        assert (await store.resolve("+447700900123")).customer_id == bob.customer_id
        await store.remove_phone(bob.customer_id, "+447700900123")
        assert (await store.resolve("+447700900123")).status == "unknown"
    finally:
        await store.close()


async def test_cache_entries_expire_after_their_ttl(db_url: str) -> None:
    store = await empty_store(db_url, cache_ttl_s=3600, cache_size=100)
    try:
        clock = [0.0]
        store.cache._clock = lambda: clock[0]
        await store.upsert_customer(name="Ann", external_id="A", phones=["02071234567"])
        await store.resolve("02071234567")
        # Another process adds a second customer on the same number behind our back.
        other = await CrmStore.open(store.engine.url.render_as_string(hide_password=False),
                                    cache_size=0, migrate=False)  # fmt: skip
        await other.upsert_customer(name="Ben", external_id="B", phones=["02071234567"])
        await other.close()
        assert (await store.resolve("02071234567")).status == "match"  # still cached
        clock[0] = 3601.0
        assert (await store.resolve("02071234567")).status == "ambiguous"
    finally:
        await store.close()


async def test_view_shows_identity_highlights_cases_orders_products_and_history(
    store: CrmStore,
) -> None:
    ann = await store.upsert_customer(
        name="Ann Example", external_id="CUST-1", email="ann@example.com", language="en",
        address="1 High Street, London", flags=["vip", "hearing_impaired", "marketing_opt_in"],
        phones=[PhoneInput("020 7123 4567", "home"), PhoneInput("07700 900456", "mobile")],
        contacts=[ContactView("Raj Patel", "carer", None)],
    )  # fmt: skip
    cid = ann.customer_id
    deadline = NOW + timedelta(hours=4)
    await add_case(store, cid, subject="No signal", tier="tier2", sla_deadline=deadline,
                   product="Fibre 500", notes="engineer booked")  # fmt: skip
    await add_case(store, cid, subject="Old complaint", status="closed")
    for day in range(7):
        await add_order(store, cid, reference=f"ORD-{day}", placed_at=NOW - timedelta(days=day),
                        status="in_transit" if day == 0 else "delivered",
                        delivery_state="out for delivery" if day == 0 else "delivered",
                        tracking_ref=f"TRK{day}")  # fmt: skip
    async with store.engine.begin() as conn:
        await conn.execute(insert(OwnedProduct).values(customer_id=cid, product="Fibre 500"))
    for n in range(12):
        await store.record_interaction(
            InteractionRecord(call_id=f"call-{n}", customer_id=cid, caller="02071234567",
                              started_at=NOW - timedelta(hours=n), queues=("tier1",),
                              agents=("Agent 1001",), notes=f"call {n}")
        )  # fmt: skip
    await store.add_interaction_note("call-0", "promised a callback", "Agent 1001")

    view = await store.view(cid)

    assert view is not None
    assert (view.name, view.external_id, view.email, view.language) == (
        "Ann Example", "CUST-1", "ann@example.com", "en")  # fmt: skip
    assert [(p.kind, p.e164) for p in view.phones] == [
        ("home", "+442071234567"), ("mobile", "+447700900456")]  # fmt: skip
    assert view.flags == ("vip", "hearing_impaired", "marketing_opt_in")
    assert view.highlights == ("vip", "hearing_impaired")
    assert [(c.subject, c.tier, c.product) for c in view.open_cases] == [
        ("No signal", "tier2", "Fibre 500")]  # fmt: skip
    assert view.open_cases[0].sla_deadline == deadline
    assert [o.reference for o in view.orders] == ["ORD-0", "ORD-1", "ORD-2", "ORD-3", "ORD-4"]
    assert view.orders[0].delivery_state == "out for delivery"
    assert view.products == ("Fibre 500",)
    assert view.contacts == (ContactView("Raj Patel", "carer", None),)
    assert len(view.interactions) == 10
    latest = view.interactions[0]
    assert (latest.queue, latest.agent) == ("tier1", "Agent 1001")
    assert latest.notes == "call 0\nAgent 1001: promised a callback"
    assert view.to_dict()["open_cases"][0]["sla_deadline"] == deadline.isoformat()


async def test_view_of_a_missing_customer_is_none(store: CrmStore) -> None:
    assert await store.view(424242) is None


async def test_an_interaction_is_written_once_per_call_and_later_reports_update_it(
    store: CrmStore,
) -> None:
    ann = await store.upsert_customer(name="Ann", phones=["02071234567"])
    first = InteractionRecord(call_id="1700000000.1", customer_id=ann.customer_id,
                              caller="02071234567", started_at=NOW, queues=("tier1",),
                              outcome="answered", wait_s=4.0)  # fmt: skip
    interaction_id = await store.record_interaction(first)
    await store.add_interaction_note("1700000000.1", "wants a refund", "Agent 1")
    await store.set_disposition("1700000000.1", "refund")
    # The daemon restarts and reports the same call again, now finished and transferred.
    again = InteractionRecord(call_id="1700000000.1", customer_id=None, caller="02071234567",
                              queues=("tier1", "tier2"), talk_s=95.5, ended_at=NOW,
                              transfers=({"kind": "blind", "to": "tier2"},))  # fmt: skip
    assert await store.record_interaction(again) == interaction_id

    row = await store.interaction("1700000000.1")
    assert row is not None
    assert row["customer_id"] == ann.customer_id
    assert row["started_at"] == NOW
    assert row["queues"] == ["tier1", "tier2"]
    assert (row["wait_s"], row["talk_s"]) == (4.0, 95.5)
    assert row["transfers"] == [{"kind": "blind", "to": "tier2"}]
    assert row["disposition"] == "refund"
    assert row["agent_notes"] == [{"author": "Agent 1", "text": "wants a refund"}]


async def test_a_note_during_a_live_call_is_kept_until_the_call_is_recorded(
    store: CrmStore,
) -> None:
    ann = await store.upsert_customer(name="Ann", phones=["02071234567"])
    await store.add_interaction_note("live-1", "caller is upset", "Agent 7")
    await store.record_interaction(
        InteractionRecord(call_id="live-1", customer_id=ann.customer_id, caller="02071234567",
                          started_at=NOW)
    )  # fmt: skip
    view = await store.view(ann.customer_id)
    assert view is not None
    assert [i.notes for i in view.interactions] == ["Agent 7: caller is upset"]


async def test_upsert_keyed_on_external_id_updates_instead_of_duplicating(
    store: CrmStore,
) -> None:
    first = await store.upsert_customer(name="Ann", external_id="E1", phones=["02071234567"],
                                        flags=["vip"])  # fmt: skip
    second = await store.upsert_customer(name="Ann Smith", external_id="E1",
                                         phones=["02071234567", "nonsense"], flags=[])  # fmt: skip
    assert first.created and not second.created
    assert second.customer_id == first.customer_id
    assert second.invalid_numbers == ("nonsense",)
    assert await store.count_customers() == 1
    view = await store.view(first.customer_id)
    assert view is not None
    assert (view.name, view.flags) == ("Ann Smith", ())
    assert [p.e164 for p in view.phones] == ["+442071234567", None]  # kept as entered


async def test_search_finds_by_number_external_id_email_and_name(store: CrmStore) -> None:
    ann = await store.upsert_customer(name="Ann Example", external_id="CUST-9",
                                      email="Ann@Example.com", phones=["02071234567"])  # fmt: skip
    await store.upsert_customer(name="Bob Other", external_id="CUST-10", phones=["02079460001"])
    for query in ("+44 20 7123 4567", "CUST-9", "ann@example.com", "ann ex", "EXAMPLE", "exa"):
        found = await store.search(query)
        assert [c.customer_id for c in found] == [ann.customer_id], query
    assert await store.search("100%_") == []
    assert await store.search("") == []
    assert await store.search("ann bob") == []  # every word must match
    others = await store.search("other")
    assert [c.external_id for c in others] == ["CUST-10"]
    # Renaming replaces the searchable words.
    await store.upsert_customer(name="Ann Renamed", external_id="CUST-9")
    assert await store.search("example") == []
    assert [c.name for c in await store.search("renamed")] == ["Ann Renamed"]


async def test_a_call_for_a_customer_deleted_meanwhile_is_still_recorded(store: CrmStore) -> None:
    record = InteractionRecord(call_id="gone-1", customer_id=987654, caller="02071234567")
    await store.record_interaction(record)
    row = await store.interaction("gone-1")
    assert row is not None
    assert (row["customer_id"], row["extra"]) == (None, {"missing_customer_id": 987654})


async def test_an_in_memory_store_resolves_and_ranks_like_a_file() -> None:
    store = await CrmStore.open("sqlite+aiosqlite:///:memory:")
    try:
        a = await store.upsert_customer(name="A", phones=["02079460100"])
        b = await store.upsert_customer(name="B", phones=["02079460100"])
        await add_case(store, b.customer_id)
        result = await store.resolve("+442079460100")
        assert result.status == "ambiguous"
        assert [c.customer_id for c in result.candidates] == [b.customer_id, a.customer_id]
    finally:
        await store.close()
