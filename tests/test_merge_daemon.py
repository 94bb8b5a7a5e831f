"""The whole daemon serves the clean-data API on its own CRM store, and a merged-away id
found through it leads to the survivor."""

from __future__ import annotations

from test_e2e_calls import SUPERVISOR, Harness, harness

__all__ = ["harness"]


async def test_the_daemon_merges_on_its_store_and_the_old_id_leads_to_the_survivor(
    harness: Harness,
) -> None:
    jon = await harness.store.upsert_customer(name="Jon Merge", phones=["+441632960771"])
    john = await harness.store.upsert_customer(name="John Merge", phones=["01632 960771"])
    a, b = jon.customer_id, john.customer_id
    await harness.start_daemon()
    status, found = await harness.api("GET", "/api/crm/duplicates", SUPERVISOR)
    assert status == 200, found
    assert (a, b) in {(p["first_id"], p["second_id"]) for p in found["pairs"]}
    status, entry = await harness.api(
        "POST", "/api/crm/merge", SUPERVISOR, json={"survivor_id": a, "merged_id": b}
    )
    assert status == 200, entry
    status, view = await harness.api("GET", f"/api/customers/{b}", SUPERVISOR)
    assert (status, view["customer_id"], view["merged_into"]) == (200, a, a)
    resolved = await harness.store.resolve("+441632960771")
    assert (resolved.status, resolved.customer_id) == ("match", a)
