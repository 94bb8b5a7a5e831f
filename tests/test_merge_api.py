"""The clean-data API (supervisors only) over a real CrmStore on SQLite and PostgreSQL:
duplicates, merge, divide, the audit log, and old customer ids leading to the survivor."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from http_world import CALLER, World, headers, running_api

from crm_core import CrmStore
from crm_core.callbacks import CallbackBook
from crm_core.merge import CustomerMaintenance
from crm_core.testing import empty_store
from cti.hub import Subscription

SUPER = headers("Supervisor")
AGENT = headers("Agent 1001")


@pytest.fixture
async def world(db_url: str) -> AsyncIterator[tuple[World, CrmStore, dict[str, int]]]:
    store = await empty_store(db_url)
    ids = {
        name: (await store.upsert_customer(name=name, external_id=ext, phones=[phone])).customer_id
        for name, ext, phone in (
            ("Jon Smith", "A", "020 7123 4567"),
            ("John Smith", "B", "+44 20 7123 4567"),
            ("Zed Other", "C", "020 7946 0999"),
        )
    }
    try:
        async with running_api(
            crm=store,
            customers_admin=CustomerMaintenance(store),
            callbacks=CallbackBook(store.engine),
        ) as w:
            yield w, store, ids
    finally:
        await store.close()


async def test_agents_may_not_list_merge_divide_or_read_the_audit(
    world: tuple[World, CrmStore, dict[str, int]],
) -> None:
    w, store, ids = world
    a, b = ids["Jon Smith"], ids["John Smith"]
    calls: list[tuple[str, str, Any]] = [
        ("GET", "/api/crm/duplicates", None),
        ("GET", f"/api/crm/customers/{a}/records", None),
        ("POST", "/api/crm/merge", {"survivor_id": a, "merged_id": b}),
        ("POST", "/api/crm/divide", {"customer_id": a, "to_customer_id": b, "phone_ids": [1]}),
        ("GET", "/api/crm/audit", None),
    ]
    for method, path, body in calls:
        resp = await w.client.request(method, path, json=body, headers=AGENT)
        assert resp.status == 403, path
        assert "supervisors" in (await resp.json())["error"]
    assert (await CustomerMaintenance(store).survivor_of(b)) is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"survivor_id": 1}, "merged_id"),
        ({"survivor_id": "1", "merged_id": 2}, "survivor_id"),
        ({"survivor_id": 1, "merged_id": 0}, "merged_id"),
        ({"survivor_id": 1, "merged_id": 2, "extra": 1}, "extra"),
    ],
)
async def test_a_bad_merge_body_is_a_400_naming_the_field(
    world: tuple[World, CrmStore, dict[str, int]], body: dict[str, Any], message: str
) -> None:
    w, _store, _ids = world
    resp = await w.client.post("/api/crm/merge", json=body, headers=SUPER)
    assert resp.status == 400
    assert message in (await resp.json())["error"]


async def test_a_supervisor_merges_by_the_api_and_the_old_id_leads_to_the_survivor(
    world: tuple[World, CrmStore, dict[str, int]],
) -> None:
    w, _store, ids = world
    a, b = ids["Jon Smith"], ids["John Smith"]
    found = await (await w.client.get("/api/crm/duplicates", headers=SUPER)).json()
    pair = found["pairs"][0]
    assert (pair["first_id"], pair["second_id"]) == (a, b) and pair["score"] >= 50
    assert [r["kind"] for r in pair["reasons"]] == ["number", "name"]

    resp = await w.client.post("/api/crm/merge", json={"survivor_id": a, "merged_id": b},
                               headers=SUPER)  # fmt: skip
    assert resp.status == 200
    entry = await resp.json()
    assert (entry["action"], entry["actor"]) == ("merge", "Supervisor")
    assert entry["detail"]["after"]["phone_numbers"] == {str(a): 2, str(b): 0, "total": 3}

    old = await (await w.client.get(f"/api/customers/{b}", headers=AGENT)).json()
    assert (old["customer_id"], old["merged_into"], old["requested_id"]) == (a, a, b)
    again = await w.client.post("/api/crm/merge", json={"survivor_id": a, "merged_id": b},
                                headers=SUPER)  # fmt: skip
    assert again.status == 409
    assert f"customer {b} was already merged into customer {a}" in (await again.json())["error"]
    same = await w.client.post("/api/crm/merge", json={"survivor_id": a, "merged_id": a},
                               headers=SUPER)  # fmt: skip
    assert same.status == 409
    missing = await w.client.post("/api/crm/merge", json={"survivor_id": a, "merged_id": 999},
                                  headers=SUPER)  # fmt: skip
    assert missing.status == 404
    audit = await (await w.client.get("/api/crm/audit", headers=SUPER)).json()
    assert [(e["action"], e["customer_id"], e["other_id"]) for e in audit["entries"]] == [
        ("merge", a, b)
    ]
    listed = await (await w.client.get("/api/crm/duplicates", headers=SUPER)).json()
    assert listed["pairs"] == []


async def test_a_supervisor_divides_a_number_to_a_new_customer_by_the_api(
    world: tuple[World, CrmStore, dict[str, int]],
) -> None:
    w, store, ids = world
    z = ids["Zed Other"]
    held = await (await w.client.get(f"/api/crm/customers/{z}/records", headers=SUPER)).json()
    phone = held["phones"][0]["id"]
    for body, status in (
        ({"customer_id": z, "phone_ids": [phone]}, 400),  # neither picked nor created
        ({"customer_id": z, "new_customer": {"name": "Zoe"}}, 400),  # nothing to move
        ({"customer_id": z, "new_customer": {"name": "Zoe"}, "phone_ids": [9999]}, 409),
        ({"customer_id": z, "new_customer": {"name": "Zoe\n"}, "phone_ids": [phone]}, 400),
    ):
        resp = await w.client.post("/api/crm/divide", json=body, headers=SUPER)
        assert resp.status == status, (body, await resp.text())
    resp = await w.client.post(
        "/api/crm/divide",
        json={"customer_id": z, "new_customer": {"name": "Zoe Other"}, "shared_phone_ids": [phone]},
        headers=SUPER,
    )
    assert resp.status == 200
    zoe = (await resp.json())["other_id"]
    shared = await store.resolve("02079460999")
    assert {c.customer_id for c in shared.candidates} == {z, zoe}


def received(sub: Subscription) -> list[dict[str, Any]]:
    out = []
    while (message := sub.take_nowait()) is not None:
        out.append(json.loads(message.text))
    return out


async def test_a_merge_follows_the_merged_id_into_live_calls_and_callback_tasks_on_every_desktop(
    world: tuple[World, CrmStore, dict[str, int]],
) -> None:
    w, store, ids = world
    a, b = ids["Jon Smith"], ids["John Smith"]
    agent = next(x for x in w.config.agents if x.name == "Agent 1001")
    boss = next(x for x in w.config.agents if x.role == "supervisor")
    desk, console = w.hub.subscribe(agent), w.hub.subscribe(boss)
    # c1: from the number both share, nobody confirmed yet; c2: withheld, the agent found John.
    await w.queued_call("c1", caller=CALLER)
    await w.calls.lookup_settled("c1")
    await w.ring("c1", "1001")
    await w.queued_call("c2", caller="anonymous")
    await w.calls.lookup_settled("c2")
    await w.ring("c2", "1001")
    await w.answer("c2", "1001")
    found = {"customer_id": b, "method": "search"}
    resp = await w.client.post("/api/calls/c2/customer", json=found, headers=AGENT)
    assert resp.status == 200, await resp.text()
    # c3: John called earlier; the call ended, the agent is still writing its wrap-up.
    await w.queued_call("c3", caller="anonymous")
    await w.calls.lookup_settled("c3")
    await w.ring("c3", "1001")
    await w.answer("c3", "1001")
    found = {"customer_id": b, "method": "search"}
    resp = await w.client.post("/api/calls/c3/customer", json=found, headers=AGENT)
    assert resp.status == 200, await resp.text()
    await w.event("ended", "c3", hangup_by="caller")
    task = await CallbackBook(store.engine).abandoned(
        queue="tier1", e164="+442079460777", customer_id=b, call_id="c0", wait_s=30.0, at=1.0
    )
    assert task is not None and task.customer_name == "John Smith"
    received(desk), received(console)

    resp = await w.client.post("/api/crm/merge", json={"survivor_id": a, "merged_id": b},
                               headers=SUPER)  # fmt: skip
    assert resp.status == 200, await resp.text()
    followed = (await resp.json())["followed"]
    assert followed == {"live_calls": ["c1", "c2", "c3"], "callback_tasks": [task.task_id]}

    c1, c2 = w.calls.get("c1"), w.calls.get("c2")
    assert c1 is not None and c2 is not None
    # The shared number has one holder now: the call is Jon's, shown as such.
    assert (c1.status, c1.customer_id, c1.view and c1.view["name"]) == ("match", a, "Jon Smith")
    assert [(k["customer_id"], k.get("merged_from")) for k in c1.candidates] == [(a, b)]
    assert (c2.customer_id, c2.confirmed_by, c2.view and c2.view["name"]) == (
        a, "Agent 1001", "Jon Smith")  # fmt: skip
    for sub in (desk, console):
        got = received(sub)
        updates = {m["call_id"]: m["call"] for m in got if m["type"] == "update"}
        assert {k: (v["customer_id"], v["view"]["name"]) for k, v in updates.items()} == {
            "c1": (a, "Jon Smith"), "c2": (a, "Jon Smith"), "c3": (a, "Jon Smith")}  # fmt: skip
        [pushed] = [m["task"] for m in got if m["type"] == "callback"]
        assert (pushed["task_id"], pushed["customer_id"], pushed["customer_name"]) == (
            task.task_id, a, "Jon Smith")  # fmt: skip


async def test_a_customer_merged_away_meanwhile_is_attached_as_the_survivor(
    world: tuple[World, CrmStore, dict[str, int]],
) -> None:
    w, _store, ids = world
    a, b = ids["Jon Smith"], ids["John Smith"]
    for call in ("c1", "c2"):
        await w.queued_call(call, caller=CALLER)  # the number both share: John is a candidate
        await w.calls.lookup_settled(call)
        await w.ring(call, "1001")
    shown = w.calls.get("c1")
    assert shown is not None and {c["customer_id"] for c in shown.candidates} == {a, b}
    resp = await w.client.post("/api/crm/merge", json={"survivor_id": a, "merged_id": b},
                               headers=SUPER)  # fmt: skip
    assert resp.status == 200

    # A desktop that still shows John (found by search, or as a candidate) attaches Jon.
    for call, method in (("c1", "search"), ("c2", "candidate")):
        body = {"customer_id": b, "method": method}
        resp = await w.client.post(f"/api/calls/{call}/customer", json=body, headers=AGENT)
        assert resp.status == 200, await resp.text()
        attached = (await resp.json())["call"]
        assert (attached["customer_id"], attached["view"]["name"]) == (a, "Jon Smith"), call
    assert w.ami.names() == ["Setvar", "Setvar"]
    assert [(x["Variable"], x["Value"]) for x in w.ami.actions] == [("CTI_CUSTOMER_ID", str(a))] * 2


async def test_a_candidate_merged_twice_since_the_pop_is_attached_as_the_last_survivor(
    world: tuple[World, CrmStore, dict[str, int]],
) -> None:
    w, store, ids = world
    a, b, z = ids["Jon Smith"], ids["John Smith"], ids["Zed Other"]
    dee = (await store.upsert_customer(name="Dee Fourth", external_id="D")).customer_id
    await w.queued_call("c1", caller=CALLER)  # the desktop lists Jon and John
    await w.calls.lookup_settled("c1")
    await w.ring("c1", "1001")
    for survivor, merged in ((z, b), (dee, z)):  # John into Zed, then Zed into Dee
        resp = await w.client.post("/api/crm/merge", json={"survivor_id": survivor,
                                   "merged_id": merged}, headers=SUPER)  # fmt: skip
        assert resp.status == 200, await resp.text()
    call = w.calls.get("c1")
    assert call is not None and call.status == "ambiguous"
    assert {c["customer_id"] for c in call.candidates} == {a, dee}

    # The agent picks John, as the pop first showed him: John's records are Dee's now.
    body = {"customer_id": b, "method": "candidate"}
    resp = await w.client.post("/api/calls/c1/customer", json=body, headers=AGENT)
    assert resp.status == 200, await resp.text()
    attached = (await resp.json())["call"]
    assert (attached["customer_id"], attached["view"]["name"]) == (dee, "Dee Fourth")
    assert [(x["Variable"], x["Value"]) for x in w.ami.actions] == [("CTI_CUSTOMER_ID", str(dee))]


async def test_the_record_of_a_call_waiting_during_a_merge_says_whom_a_candidate_was_merged_from(
    world: tuple[World, CrmStore, dict[str, int]],
) -> None:
    w, _store, ids = world
    a, b, z = ids["Jon Smith"], ids["John Smith"], ids["Zed Other"]
    await w.queued_call("c1", caller=CALLER)  # Jon and John share the number
    await w.calls.lookup_settled("c1")
    await w.ring("c1", "1001")
    resp = await w.client.post("/api/crm/merge", json={"survivor_id": z, "merged_id": b},
                               headers=SUPER)  # fmt: skip
    assert resp.status == 200, await resp.text()
    call = w.calls.get("c1")
    assert call is not None and call.status == "ambiguous"
    # Zed holds no such number: the record says he is listed as John's records' survivor.
    listed = w.calls.record_of(call).extra["candidates"]
    assert [(c["customer_id"], c["name"], c.get("merged_from")) for c in listed] == [
        (a, "Jon Smith", None), (z, "Zed Other", b)]  # fmt: skip
