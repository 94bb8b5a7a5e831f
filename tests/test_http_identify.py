"""Identifying the caller from the pop, through the API, on the real CRM store (SQLite and
PostgreSQL): search by what a caller can say, attach a customer to a live call everywhere,
create one, and remember the caller's number only when the agent says so."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from http_world import SHARED_NUMBER, World, headers, running_api
from sqlalchemy import func, insert, select

from crm_core.models import Order, PhoneNumber
from crm_core.store import CrmStore, PhoneInput
from crm_core.testing import empty_store
from cti.hub import HubMessage, Subscription

NEW_NUMBER = "+442071110000"
WITHHELD = "anonymous"


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[CrmStore]:
    store = await empty_store(db_url)
    try:
        yield store
    finally:
        await store.close()


async def grace(store: CrmStore) -> int:
    """A customer with an account number, an email, a postcode and an order."""
    created = await store.upsert_customer(
        name="Grace Hopper",
        external_id="ACC-1001",
        email="grace@example.com",
        address="12 Navy Row, London SW1A 1AA",
        flags=["hearing_impaired", "wheelchair_user"],
    )
    async with store.engine.begin() as conn:
        await conn.execute(
            insert(Order).values(customer_id=created.customer_id, reference="ORD-555")
        )
    return int(created.customer_id)


async def shared(store: CrmStore) -> tuple[int, int]:
    a = await store.upsert_customer(name="Acme Ltd", phones=[PhoneInput(SHARED_NUMBER, "work")])
    b = await store.upsert_customer(
        name="Acme Holdings", phones=[PhoneInput(SHARED_NUMBER, "work")]
    )
    return int(a.customer_id), int(b.customer_id)


async def phones_of(store: CrmStore, customer_id: int) -> list[str]:
    async with store.engine.connect() as conn:
        rows = await conn.execute(
            select(PhoneNumber.e164).where(PhoneNumber.customer_id == customer_id)
        )
        return [r for (r,) in rows.all()]


async def phone_rows(store: CrmStore) -> int:
    async with store.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(PhoneNumber))).scalar())


def drain(sub: Subscription) -> list[dict[str, Any]]:
    out = []
    while (message := sub.take_nowait()) is not None:
        assert isinstance(message, HubMessage)
        out.append(json.loads(message.text))
    return out


async def ringing(world: World, call: str, caller: str) -> None:
    await world.queued_call(call, caller=caller)
    await world.calls.lookup_settled(call)
    await world.ring(call, "1001")


async def post(world: World, path: str, body: Any, who: str = "Agent 1001") -> tuple[int, Any]:
    resp = await world.client.post(path, json=body, headers=headers(who))
    return resp.status, await resp.json()


async def test_search_finds_a_caller_by_account_number_postcode_email_order_or_name(
    store: CrmStore,
) -> None:
    customer = await grace(store)
    await store.upsert_customer(name="Grace Kelly", address="1 Palace Rd, Monaco M1 1AE")
    async with running_api(crm=store) as world:
        for query, reason in (
            ("ACC-1001", "external id"),
            ("sw1a 1aa", "postcode"),
            ("SW1A1AA", "postcode"),
            ("Grace@Example.com", "email"),
            ("ORD-555", "order reference"),
            ("hopper", "name"),
        ):
            resp = await world.client.get(
                "/api/customers", params={"q": query}, headers=headers("Agent 1001")
            )
            assert resp.status == 200, query
            found = (await resp.json())["customers"]
            got = [(c["customer_id"], c["rank_reason"]) for c in found]
            assert got == [(customer, reason)], query


async def test_a_searched_customer_attached_to_a_withheld_call_reaches_every_desktop_the_channel_and_the_record(  # noqa: E501
    store: CrmStore,
) -> None:
    customer = await grace(store)
    async with running_api(crm=store) as world:
        agents = {a.name: a for a in world.config.agents}
        agent_sub = world.hub.subscribe(agents["Agent 1001"])
        super_sub = world.hub.subscribe(agents["Supervisor"])
        await ringing(world, "c1", WITHHELD)
        await world.answer("c1", "1001")
        drain(agent_sub), drain(super_sub)

        status, body = await post(
            world, "/api/calls/c1/customer", {"customer_id": customer, "method": "search"}
        )
        assert status == 200, body
        assert body["call"]["customer_id"] == customer
        assert body["call"]["view"]["name"] == "Grace Hopper"
        # The dialplan's later AGI on the caller's channel sees who it is.
        assert world.ami.actions == [
            {
                "Action": "Setvar",
                "Channel": "Local/08005550100@from-pstn-c1;2",
                "Variable": "CTI_CUSTOMER_ID",
                "Value": str(customer),
            }
        ]
        for sub in (agent_sub, super_sub):
            updates = [m for m in drain(sub) if m["type"] == "update"]
            assert updates and updates[-1]["call"]["view"]["name"] == "Grace Hopper"
            assert updates[-1]["call"]["confirmed_by"] == "Agent 1001"

        # A later escalation carries her: the next tier's agent gets her pop.
        tier2_sub = world.hub.subscribe(agents["Agent 2001"])
        status, body = await post(
            world, "/api/calls/c1/escalate", {"tier": "tier2", "reason": "needs an engineer"}
        )
        assert status == 200, body
        await world.event("transferred", "c1", kind="blind", from_agent="Agent 1001", to="8002")
        await world.ring("c1", "2001", queue="tier2")
        pops = [m for m in drain(tier2_sub) if m["type"] == "pop"]
        assert pops and pops[-1]["call"]["view"]["name"] == "Grace Hopper"
        assert pops[-1]["call"]["customer_id"] == customer

        await world.event("ended", "c1", hangup_by="caller")
        ctx = world.calls.get("c1")
        assert ctx is not None
        record = world.calls.record_of(ctx)
        assert record.customer_id == customer
        assert record.extra["confirmed_by"] == "Agent 1001"
        assert record.extra["method"] == "search"
        await store.record_interaction(record)
        view = await store.view(customer)
        assert view is not None and len(view.interactions) == 1
        # Nothing about a withheld number was remembered.
        assert await phones_of(store, customer) == []


async def test_the_number_is_remembered_only_when_the_agent_says_so(store: CrmStore) -> None:
    customer = await grace(store)
    async with running_api(crm=store) as world:
        await ringing(world, "c1", NEW_NUMBER)
        status, body = await post(
            world, "/api/calls/c1/customer", {"customer_id": customer, "method": "search"}
        )
        assert status == 200 and body["number_added"] is None

        await ringing(world, "c2", NEW_NUMBER)
        c2 = world.calls.get("c2")
        assert c2 is not None and c2.status == "unknown" and c2.customer_id is None
        status, body = await post(
            world,
            "/api/calls/c2/customer",
            {"customer_id": customer, "method": "search", "remember_number": True},
        )
        assert status == 200 and body["number_added"] == NEW_NUMBER

        await ringing(world, "c3", NEW_NUMBER)
        c3 = world.calls.get("c3")
        assert c3 is not None and c3.status == "match" and c3.customer_id == customer
        # Asking again does not add the number twice.
        status, body = await post(world, "/api/calls/c3/number", {})
        assert status == 201 and body["number_added"] == NEW_NUMBER
        assert await phones_of(store, customer) == [NEW_NUMBER]


async def test_a_customer_created_from_the_pop_is_attached_with_the_number_when_asked(
    store: CrmStore,
) -> None:
    async with running_api(crm=store) as world:
        await ringing(world, "c1", NEW_NUMBER)
        status, body = await post(
            world,
            "/api/calls/c1/customer/new",
            {
                "name": "Katherine Johnson",
                "email": "kj@example.com",
                "address": "3 Orbit Lane, Leeds LS1 4AP",
                "remember_number": True,
            },
        )
        assert status == 201, body
        created = body["call"]["customer_id"]
        assert body["call"]["confirmed_method"] == "created"
        assert await phones_of(store, created) == [NEW_NUMBER]
        found = await store.search("LS1 4AP")
        assert [c.customer_id for c in found] == [created]

        await ringing(world, "c2", WITHHELD)
        status, body = await post(world, "/api/calls/c2/customer/new", {"name": "Anon Caller"})
        assert status == 201 and body["number_added"] is None
        ctx = world.calls.get("c2")
        assert ctx is not None
        assert world.calls.record_of(ctx).extra["method"] == "created"


async def test_an_ambiguous_caller_confirmed_keeps_who_and_how(store: CrmStore) -> None:
    ltd, holdings = await shared(store)
    async with running_api(crm=store) as world:
        await ringing(world, "c1", SHARED_NUMBER)
        status, body = await post(
            world, "/api/calls/c1/customer", {"customer_id": holdings, "method": "candidate"}
        )
        assert status == 200, body
        ctx = world.calls.get("c1")
        assert ctx is not None and ctx.customer_id == holdings
        extra = world.calls.record_of(ctx).extra
        assert (extra["confirmed_by"], extra["method"]) == ("Agent 1001", "candidate")
        assert {c["customer_id"] for c in extra["candidates"]} == {ltd, holdings}


async def test_bad_identify_requests_are_refused_and_nothing_reaches_asterisk(
    store: CrmStore,
) -> None:
    customer = await grace(store)
    ltd, _ = await shared(store)
    async with running_api(crm=store) as world:
        await ringing(world, "w1", WITHHELD)
        await ringing(world, "s1", SHARED_NUMBER)
        rows = await phone_rows(store)
        refused: list[tuple[str, Any, int, str]] = [
            ("/api/calls/w1/customer", {"customer_id": "1"}, 400, "customer_id"),
            ("/api/calls/w1/customer", {"customer_id": True}, 400, "customer_id"),
            ("/api/calls/w1/customer", {"customer_id": 0}, 400, "customer_id"),
            ("/api/calls/w1/customer", {"customer_id": 2**63}, 400, "customer_id"),
            ("/api/calls/w1/customer", {"customer_id": "１"}, 400, "customer_id"),
            ("/api/calls/w1/customer", {"customer_id": 1, "method": "x"}, 400, "method"),
            ("/api/calls/w1/customer", {"customer_id": 1, "extra": 1}, 400, "extra"),
            ("/api/calls/w1/customer", {"customer_id": customer}, 400, "customer_id"),
            ("/api/calls/s1/customer", {"customer_id": customer}, 400, "customer_id"),
            (
                "/api/calls/w1/customer",
                {"customer_id": 999999, "method": "search"},
                404,
                "customer_id",
            ),
            (
                "/api/calls/nope/customer",
                {"customer_id": customer, "method": "search"},
                404,
                "call_id",
            ),
            (
                "/api/calls/w1/customer",
                {"customer_id": customer, "method": "search", "remember_number": True},
                400,
                "remember_number: the caller's number is withheld",
            ),
            (
                "/api/calls/w1/customer/new",
                {"name": "X", "remember_number": True},
                400,
                "remember_number: the caller's number is withheld",
            ),
            ("/api/calls/w1/customer/new", {"name": ""}, 400, "name"),
            ("/api/calls/w1/customer/new", {"name": "A\rB"}, 400, "name"),
            ("/api/calls/w1/customer/new", {"name": "A", "email": "no"}, 400, "email"),
            ("/api/calls/w1/number", {}, 400, "number: the caller's number is withheld"),
            ("/api/calls/s1/number", {"kind": "fax"}, 400, "kind"),
        ]
        for path, body, code, field in refused:
            status, answer = await post(world, path, body)
            assert status == code, (path, body, answer)
            assert field in answer["error"], (path, body, answer)
        # A call of another agent is not this agent's to identify.
        status, _ = await post(
            world, "/api/calls/s1/customer", {"customer_id": ltd}, who="Agent 2001"
        )
        assert status in (403, 404)
        assert world.ami.actions == []
        assert await phone_rows(store) == rows
        w1 = world.calls.get("w1")
        assert w1 is not None and w1.customer_id is None and w1.confirmed_by is None
