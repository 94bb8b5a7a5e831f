"""An ambiguous caller is not filed as a definite one: until an agent confirms who is calling, the
call stays unattributed, with its candidates, in no customer's history. On SQLite and
PostgreSQL, through the daemon fed by the fake AMI server."""

from __future__ import annotations

import secrets
from pathlib import Path

from interaction_world import recorded, renumbered, unique_shift, world


async def test_a_call_from_a_shared_number_is_recorded_unattributed_with_its_candidates(
    db_url: str, tmp_path: Path, traces_dir: Path
) -> None:
    number = f"+4420794{secrets.randbelow(10**5):05d}"  # a number no other test uses
    events = renumbered(recorded(traces_dir), unique_shift(), caller=number)
    async with world(db_url, tmp_path) as w:
        acme = await w.store.upsert_customer(name="Acme Ltd", phones=[number])
        umbrella = await w.store.upsert_customer(name="Umbrella plc", phones=[number])
        await w.start()
        daemon = w.running
        call_id = await w.call(events)
        ctx = daemon.parts.calls.get(call_id)
        assert ctx is not None
        # What the hub publishes: one of several, none chosen, no one's 360° view.
        assert (ctx.status, ctx.customer_id, ctx.view) == ("ambiguous", None, None)
        assert {c["customer_id"] for c in ctx.candidates} == {
            acme.customer_id,
            umbrella.customer_id,
        }

        assert await daemon.parts.recorder.flush(10.0)
        row = await w.store.interaction(call_id)
        assert row is not None and row["customer_id"] is None
        assert row["extra"]["resolution"] == "ambiguous"
        candidates = row["extra"]["candidates"]
        assert {c["customer_id"] for c in candidates} == {acme.customer_id, umbrella.customer_id}
        assert all(c["name"] and c["rank_reason"] for c in candidates)
        for customer in (acme, umbrella):
            view = await w.store.view(customer.customer_id)
            assert view is not None and view.interactions == ()


async def test_a_call_from_a_customers_own_number_is_still_filed_in_their_history(
    db_url: str, tmp_path: Path, traces_dir: Path
) -> None:
    number = f"+4420794{secrets.randbelow(10**5):05d}"
    events = renumbered(recorded(traces_dir), unique_shift(), caller=number)
    async with world(db_url, tmp_path) as w:
        grace = await w.store.upsert_customer(name="Grace Hopper", phones=[number])
        await w.start()
        call_id = await w.call(events)
        assert await w.running.parts.recorder.flush(10.0)
        row = await w.store.interaction(call_id)
        assert row is not None and row["customer_id"] == grace.customer_id
        assert "candidates" not in row["extra"]
