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
from crm_core.types import OrderFact, RoutingFacts, RoutingFactsDirectory

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
