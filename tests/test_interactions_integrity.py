"""A record the database refuses never blocks the interaction log: it is set aside where it can
be seen and retried, counted, and /healthz says so; caller IDs are made storable without lying.
On SQLite and PostgreSQL, through the daemon fed by the fake AMI server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from interaction_world import metric, recorded, renumbered, unique_shift, world

from crm_core.errors import CrmError, CrmUnavailable, InvalidInteraction
from crm_core.store import CrmStore
from crm_core.types import InteractionRecord


async def test_a_record_the_database_refuses_is_set_aside_and_the_other_23_are_written(
    db_url: str, tmp_path: Path, traces_dir: Path
) -> None:
    trace = recorded(traces_dir)
    shift = unique_shift()
    async with world(db_url, tmp_path) as w:
        daemon = await w.start()
        calls = daemon.parts.calls
        call_ids = []
        for n in range(24):
            call_id = await w.call(renumbered(trace, shift + n * 10))
            call_ids.append(call_id)
            text = "caller asked\x00 for a refund" if n == 4 else f"note {n}"
            await calls.add_note(call_id, "Agent 1001", text)
        bad = call_ids[4]
        assert await daemon.parts.recorder.flush(30.0)

        for call_id in call_ids:
            row = await w.store.interaction(call_id)
            if call_id == bad:
                assert row is None or "\x00" not in row["notes"]
            else:
                assert row is not None and row["notes"].endswith(f"note {call_ids.index(call_id)}")
        status, health = await w.get("/healthz")
        assert status == 200 and health["status"] == "degraded"
        assert health["interactions"]["dead_letters"] == 1
        assert "1 interaction record(s) refused" in health["problems"][0]
        _, metrics = await w.get("/metrics")
        assert metric(metrics, "cti_interactions_refused_total") == 1
        assert metric(metrics, "cti_interactions_dead_letters") == 1
        assert metric(metrics, "cti_interactions_written_total") >= 23  # type: ignore[operator]
        assert metric(metrics, "cti_interactions_pending") == 0

        letters = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
        assert [(x["call_id"], x["state"]) for x in letters] == [(bad, "refused")]
        assert "notes" in letters[0]["error"] and "NUL" in letters[0]["error"]
        assert "unavailable" not in letters[0]["error"].lower()

        # Retriable: the operator corrects the record in the file; the next start writes it.
        await w.stop()
        dead = tmp_path / "dead.jsonl"
        letter = json.loads(dead.read_text())
        letter["record"] = json.loads(json.dumps(letter["record"]).replace("\\u0000", ""))
        dead.write_text(json.dumps(letter) + "\n")
        daemon = await w.start()
        assert await daemon.parts.recorder.flush(10.0)
        row = await w.store.interaction(bad)
        assert row is not None and row["notes"].endswith("caller asked for a refund")
        assert not (tmp_path / "dead.jsonl").exists(), (tmp_path / "dead.jsonl").read_text()
        _, health = await w.get("/healthz")
        assert health["status"] == "ok" and health["interactions"]["dead_letters"] == 0


async def test_an_over_long_caller_id_with_a_nul_is_stored_cut_and_marked(
    db_url: str, tmp_path: Path, traces_dir: Path
) -> None:
    spoofed = "+44207\x00" + "9" * 200
    events = renumbered(recorded(traces_dir), unique_shift(), caller=spoofed)
    async with world(db_url, tmp_path) as w:
        daemon = await w.start()
        call_id = await w.call(events)
        assert await daemon.parts.recorder.flush(10.0)
        row = await w.store.interaction(call_id)
        assert row is not None
        assert row["caller"] == ("+44207" + "9" * 200)[:64]
        assert row["extra"]["caller_truncated"] is True
        assert row["extra"]["caller_sanitized"] is True
        assert row["extra"]["caller_length"] == len(spoofed)
        assert daemon.parts.recorder.dead_letters == 0


async def test_the_store_refuses_what_it_cannot_store_as_invalid_not_unavailable(
    db_url: str,
) -> None:
    async with await CrmStore.open(db_url) as store:
        call_id = f"refused-{unique_shift()}"
        with pytest.raises(InvalidInteraction) as refused:
            await store.record_interaction(
                InteractionRecord(call_id=call_id, customer_id=None, caller="201", notes="a\x00b")
            )
        assert refused.value.field == "notes" and not isinstance(refused.value, CrmUnavailable)
        with pytest.raises(InvalidInteraction, match="disposition"):
            await store.record_interaction(
                InteractionRecord(
                    call_id=call_id, customer_id=None, caller="201", disposition="x" * 65
                )
            )
        assert await store.interaction(call_id) is None


async def test_a_data_error_from_postgresql_is_a_refusal_not_an_outage(pg_server_url: str) -> None:
    url = pg_server_url.replace("postgresql://", "postgresql+asyncpg://", 1)
    async with await CrmStore.open(url) as store:
        call_id = f"pg-{unique_shift()}"
        await store.record_interaction(InteractionRecord(call_id, None, "201"))
        with pytest.raises(CrmError, match="rejected") as raised:
            await store.add_interaction_note(call_id, "a\x00b", "Agent 1001")
        assert not isinstance(raised.value, CrmUnavailable)
        assert "unavailable" not in str(raised.value)
