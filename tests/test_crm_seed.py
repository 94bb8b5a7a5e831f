"""Demo data: the well-known customers, realistic and valid generated ones, deterministic."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from crm_core import CrmStore, CustomerView
from crm_core.models import Case, Customer, Order, PhoneNumber
from crm_core.phone import normalise
from crm_core.seed import DEMO_NUMBERS, DEMO_UNKNOWN_NUMBER, seed
from crm_core.testing import empty_store

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


async def phones(store: CrmStore) -> list[tuple[int, str, str | None]]:
    async with store.engine.connect() as conn:
        rows = await conn.execute(
            select(PhoneNumber.customer_id, PhoneNumber.number, PhoneNumber.e164).order_by(
                PhoneNumber.id
            )
        )
        return [(r[0], r[1], r[2]) for r in rows]


async def test_demo_customers_answer_on_their_numbers_and_are_written_once(db_url: str) -> None:
    store = await empty_store(db_url)
    try:
        first = await seed(store, 20, seed=1, now=NOW, progress=False)
        second = await seed(store, 20, seed=2, now=NOW, progress=False)
        assert (first.demo_customers, second.demo_customers) == (9, 0)
        assert await store.count_customers() == 9 + 40
        # Ids written in bulk do not collide with the ones the database hands out next.
        assert (await store.upsert_customer(name="After Seeding")).customer_id == 50

        expected = {
            "known": ("match", ()),
            "vip": ("match", ("vip",)),
            "arrears": ("match", ("payment_arrears",)),
            "hearing_impaired": ("match", ("hearing_impaired",)),
            "switchboard": ("ambiguous", ()),
            "open_case": ("match", ()),
            "in_transit": ("match", ()),
            "wheelchair": ("match", ("wheelchair_user",)),
        }
        for role, number in DEMO_NUMBERS.items():
            result = await store.resolve(number)
            view = await store.view(result.customer_id or 0)
            assert view is not None
            assert (result.status, view.highlights) == expected[role], role
        assert (await store.resolve(DEMO_UNKNOWN_NUMBER)).status == "unknown"

        async def view_of(role: str) -> CustomerView:
            view = await store.view((await store.resolve(DEMO_NUMBERS[role])).customer_id or 0)
            assert view is not None
            return view

        assert (await view_of("vip")).external_id == "CUST-000456"  # as in the traces
        assert [c.tier for c in (await view_of("open_case")).open_cases] == ["tier2"]
        assert (await view_of("in_transit")).orders[0].status == "in_transit"
    finally:
        await store.close()


async def test_every_seeded_number_is_valid_and_stored_in_its_normalised_form(
    db_url: str,
) -> None:
    store = await empty_store(db_url)
    try:
        await seed(store, 300, seed=5, now=NOW, progress=False)
        rows = await phones(store)
        assert len(rows) > 300
        for _customer, typed, e164 in rows:
            assert e164 is not None
            assert normalise(typed, "GB").e164 == e164, typed
        typed_forms = {typed[:2] for _c, typed, _e in rows}
        assert {"+4", "07", "00"} <= typed_forms  # international, national and 00 forms
        codes = ("+44", "+1", "+49", "+33", "+55", "+353")
        countries = {next(c for c in codes if e164.startswith(c)) for _c, _t, e164 in rows if e164}
        assert len(countries) >= 4 and {"+44", "+1"} <= countries, countries
    finally:
        await store.close()


@pytest.mark.parametrize("region", ["US", "DE", "FR"])
async def test_national_formats_follow_the_store_region(tmp_path: Path, region: str) -> None:
    store = await CrmStore.open(f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}", region=region)
    try:
        await seed(store, 300, seed=9, now=NOW, progress=False, demo=False)
        for _customer, typed, e164 in await phones(store):
            assert normalise(typed, region).e164 == e164, (region, typed)
    finally:
        await store.close()


async def test_the_same_seed_gives_the_same_customers(tmp_path: Path) -> None:
    snapshots = []
    for name in ("a.db", "b.db"):
        store = await CrmStore.open(f"sqlite+aiosqlite:///{tmp_path / name}")
        try:
            await seed(store, 100, seed=11, now=NOW, progress=False)
            async with store.engine.connect() as conn:
                customers = (await conn.execute(select(Customer.name, Customer.email))).all()
            snapshots.append((customers, await phones(store)))
        finally:
            await store.close()
    assert snapshots[0] == snapshots[1]


async def test_generated_data_has_what_routing_and_the_view_need(tmp_path: Path) -> None:
    store = await CrmStore.open(f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}")
    try:
        report = await seed(store, 1000, seed=3, now=NOW, progress=False, demo=False)
        assert report.customers == 1000
        async with store.engine.connect() as conn:
            open_tiers = set(
                (
                    await conn.execute(select(Case.tier).where(Case.status != "closed").distinct())
                ).scalars()
            )
            in_transit = (
                await conn.execute(
                    select(func.count()).select_from(Order).where(Order.status == "in_transit")
                )
            ).scalar_one()
            flags = {
                flag: (
                    await conn.execute(
                        select(func.count()).select_from(Customer).where(getattr(Customer, flag))
                    )
                ).scalar_one()
                for flag in ("vip", "hearing_impaired", "payment_arrears")
            }
            shared = (
                (
                    await conn.execute(
                        select(PhoneNumber.e164)
                        .group_by(PhoneNumber.e164)
                        .having(func.count(func.distinct(PhoneNumber.customer_id)) > 1)
                    )
                )
                .scalars()
                .all()
            )
        assert {"tier2", "tier3"} <= open_tiers
        assert in_transit > 0
        assert all(count > 0 for count in flags.values()), flags
        assert shared, "households sharing a home number"
        assert (await store.resolve(shared[0])).status == "ambiguous"
    finally:
        await store.close()
