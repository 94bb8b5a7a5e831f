"""What the IVR asks of the built-in store: who holds an account number, or an order reference."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import insert

from crm_core import CrmStore
from crm_core.models import Order
from crm_core.testing import empty_store
from crm_core.types import OrderFact


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[CrmStore]:
    crm = await empty_store(db_url)
    try:
        yield crm
    finally:
        await crm.close()


async def add_order(store: CrmStore, customer_id: int, reference: str, state: str | None) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(
            insert(Order).values(
                customer_id=customer_id, reference=reference, status="shipped", delivery_state=state
            )
        )


async def test_an_account_number_finds_its_customer_and_nothing_else(store: CrmStore) -> None:
    ann = await store.upsert_customer(name="Ann Example", external_id="CUST-010042")
    await store.upsert_customer(name="Bob Other", external_id="CUST-010043")
    assert await store.customer_by_external_id("CUST-010042") == ann.customer_id
    assert await store.customer_by_external_id("CUST-10042") is None
    assert await store.customer_by_external_id("") is None


async def test_an_order_reference_gives_its_customer_and_latest_delivery_state(
    store: CrmStore,
) -> None:
    ann = await store.upsert_customer(name="Ann Example")
    await add_order(store, ann.customer_id, "ORD-1924", "in_transit")
    await add_order(store, ann.customer_id, "ORD-1924", "out_for_delivery")
    assert await store.order_by_reference("ORD-1924") == (
        ann.customer_id,
        OrderFact("ORD-1924", "shipped", "out_for_delivery"),
    )
    assert await store.order_by_reference("ORD-0000") is None


async def test_an_order_reference_two_customers_share_identifies_nobody(store: CrmStore) -> None:
    ann = await store.upsert_customer(name="Ann Example")
    bob = await store.upsert_customer(name="Bob Other")
    await add_order(store, ann.customer_id, "ORD-7", "delivered")
    await add_order(store, bob.customer_id, "ORD-7", "in_transit")
    assert await store.order_by_reference("ORD-7") is None
