"""The clean-data API (supervisors only) over a real CrmStore on SQLite and PostgreSQL:
duplicates, merge, divide, the audit log, and old customer ids leading to the survivor."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from http_world import World, headers, running_api

from crm_core import CrmStore
from crm_core.merge import CustomerMaintenance
from crm_core.testing import empty_store

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
        async with running_api(crm=store, customers_admin=CustomerMaintenance(store)) as w:
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
