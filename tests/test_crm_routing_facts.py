"""``CrmStore.routing_facts``: what routing needs of a customer, in one query, as in the view."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert

from crm_core import CrmStore
from crm_core.models import Case, Order, OwnedProduct
from crm_core.testing import empty_store
from crm_core.types import OrderFact, RoutingFacts, RoutingFactsDirectory, RoutingResolver

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[CrmStore]:
    crm = await empty_store(db_url)
    try:
        yield crm
    finally:
        await crm.close()


async def add(store: CrmStore, model: Any, rows: list[dict[str, Any]]) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(insert(model), rows)


async def busy_customer(store: CrmStore) -> int:
    """A customer with something in every table routing reads, in an order ids do not give."""
    cid = (
        await store.upsert_customer(
            name="Ann Example",
            phones=["020 7123 4567"],
            language="fr-BE",
            flags=["vip", "payment_arrears"],
        )
    ).customer_id
    case = {"customer_id": cid, "subject": "Fault", "notes": ""}
    await add(store, Case, [
        {**case, "status": "open", "tier": "tier1", "sla_deadline": None},
        {**case, "status": "closed", "tier": "tier3", "sla_deadline": NOW},
        {**case, "status": "escalated", "tier": "tier3", "sla_deadline": NOW + timedelta(hours=2)},
        {**case, "status": "pending", "tier": None, "sla_deadline": NOW + timedelta(hours=1)},
    ])  # fmt: skip
    await add(store, OwnedProduct, [
        {"customer_id": cid, "product": "Fibre 500"}, {"customer_id": cid, "product": "TV Max"},
    ])  # fmt: skip
    await add(store, Order, [
        {"customer_id": cid, "reference": f"ORD-{i}", "status": "shipped" if i % 2 else "placed",
         "delivery_state": "in transit" if i == 6 else None,
         "placed_at": NOW - timedelta(days=(i * 3) % 8)}
        for i in range(8)
    ])  # fmt: skip
    return cid


async def test_routing_facts_agree_with_the_360_view(store: CrmStore) -> None:
    cid = await busy_customer(store)
    view = await store.view(cid)
    assert view is not None
    facts = await store.routing_facts(cid)
    assert facts == RoutingFacts.from_view(view)
    assert facts.open_case_tiers == (None, "tier3", "tier1")  # soonest SLA first, none last
    assert facts.flags == ("vip", "payment_arrears")
    assert (facts.language, facts.products) == ("fr-BE", ("Fibre 500", "TV Max"))
    assert len(facts.orders) == store.view_orders == 5
    assert facts.orders[0] == OrderFact("ORD-0", "placed", None)


async def test_a_customer_with_nothing_but_a_name_has_empty_routing_facts(
    store: CrmStore,
) -> None:
    cid = (await store.upsert_customer(name="Bob Bare")).customer_id
    view = await store.view(cid)
    assert view is not None
    facts = await store.routing_facts(cid)
    assert facts == RoutingFacts(cid, None, (), (), (), ()) == RoutingFacts.from_view(view)


async def test_routing_facts_of_a_customer_who_is_not_there_are_none(store: CrmStore) -> None:
    assert await store.routing_facts(424242) is None


async def test_resolution_and_routing_facts_share_one_connection_after_a_reopen(
    store: CrmStore,
) -> None:
    cid = await busy_customer(store)
    await store.resolve("02071234567")
    await store._lookup.close(graceful=False)  # as after a failure: the next call reopens
    facts = await store.routing_facts(cid)
    assert facts is not None and facts.customer_id == cid
    assert (await store.resolve("+44 20 7123 4568")).status == "unknown"


async def test_in_memory_store_answers_routing_facts_like_the_view() -> None:
    crm = await empty_store("sqlite+aiosqlite:///:memory:")
    try:
        cid = await busy_customer(crm)
        view = await crm.view(cid)
        assert view is not None
        assert await crm.routing_facts(cid) == RoutingFacts.from_view(view)
    finally:
        await crm.close()


def test_the_store_offers_routing_facts_to_the_router() -> None:
    assert issubclass(CrmStore, RoutingFactsDirectory)


async def resolve_then_facts(store: CrmStore, caller: str | None) -> tuple[Any, Any]:
    resolution = await store.resolve(caller)
    if resolution.status != "match" or resolution.customer_id is None:
        return resolution, None
    return resolution, await store.routing_facts(resolution.customer_id)


async def test_resolve_for_routing_agrees_with_resolve_then_routing_facts(db_url: str) -> None:
    crm = await empty_store(db_url, cache_size=0)  # every call asks the database
    try:
        cid = await busy_customer(crm)
        shared = ["0161 496 0000"]
        first = await crm.upsert_customer(name="Shared One", phones=shared)
        second = await crm.upsert_customer(name="Shared Two", phones=shared)
        callers = ["02071234567", "+441614960000", "+447700900999", "anonymous", None, "2001"]
        for caller in callers:
            expected = await resolve_then_facts(crm, caller)
            assert await crm.resolve_for_routing(caller) == expected, caller
        match, facts = await crm.resolve_for_routing("02071234567")
        assert (match.status, match.customer_id) == ("match", cid)
        assert facts is not None and facts.flags == ("vip", "payment_arrears")
        shared_number, none = await crm.resolve_for_routing("+441614960000")
        assert shared_number.status == "ambiguous" and none is None
        assert {c.customer_id for c in shared_number.candidates} == {
            first.customer_id,
            second.customer_id,
        }
    finally:
        await crm.close()


async def test_resolve_for_routing_without_facts_only_resolves(store: CrmStore) -> None:
    cid = await busy_customer(store)
    resolution, facts = await store.resolve_for_routing("02071234567", facts=False)
    assert (resolution.status, resolution.customer_id, facts) == ("match", cid, None)


async def test_resolve_for_routing_uses_and_fills_the_resolution_cache(db_url: str) -> None:
    crm = await empty_store(db_url, cache_size=100, cache_ttl_s=60)
    try:
        cid = await busy_customer(crm)
        first = await crm.resolve_for_routing("02071234567")
        assert crm.cache.get("+442071234567") == first[0]
        again, facts = await crm.resolve_for_routing("+44 20 7123 4567")  # cached resolution
        assert (again.customer_id, again.caller) == (cid, "+44 20 7123 4567")
        assert facts == first[1] and facts is not None
    finally:
        await crm.close()


async def test_resolve_for_routing_reports_a_dead_database_as_crm_unavailable(
    tmp_path: Any,
) -> None:
    from crm_core.errors import CrmUnavailable

    crm = await empty_store(f"sqlite+aiosqlite:///{tmp_path / 'crm.sqlite'}", cache_size=0)
    try:
        await busy_customer(crm)
        (tmp_path / "crm.sqlite").unlink()  # the file is gone: reopening cannot find it
        await crm._lookup.close(graceful=False)
        with pytest.raises(CrmUnavailable):
            await crm.resolve_for_routing("02071234567")
    finally:
        await crm.close()


async def test_in_memory_store_resolves_for_routing_like_resolve_then_facts() -> None:
    crm = await empty_store("sqlite+aiosqlite:///:memory:", cache_size=0)
    try:
        await busy_customer(crm)
        assert await crm.resolve_for_routing("02071234567") == await resolve_then_facts(
            crm, "02071234567"
        )
    finally:
        await crm.close()


def test_the_store_offers_a_one_hop_routing_lookup_to_the_router() -> None:
    assert issubclass(CrmStore, RoutingResolver)
