"""The recorder tells a CRM that is down (wait, retry in order) from a record it refuses (set it
aside, go on), and at stop saves what it could not write instead of dropping it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from crm_core.errors import CrmUnavailable, InvalidInteraction
from crm_core.types import InteractionRecord
from cti.dead_letters import DeadLetterFile
from cti.interactions import InteractionRecorder


class Store:
    """Rows by call_id like the store's UPSERT; down while ``down``; refuses NUL notes."""

    def __init__(self) -> None:
        self.rows: dict[str, InteractionRecord] = {}
        self.order: list[str] = []
        self.down = False

    async def record_interaction(self, record: InteractionRecord) -> None:
        if self.down:
            raise CrmUnavailable("CRM database unavailable during record_interaction: refused")
        if "\x00" in record.notes:
            raise InvalidInteraction(record.call_id, "notes", "contains a NUL character")
        self.rows[record.call_id] = record
        self.order.append(record.call_id)


def record(call_id: str, notes: str = "") -> InteractionRecord:
    return InteractionRecord(call_id=call_id, customer_id=None, caller="201", notes=notes)


async def test_a_refused_record_is_set_aside_and_the_next_ones_are_written(tmp_path: Path) -> None:
    store = Store()
    recorder = InteractionRecorder(store, dead_letters=DeadLetterFile(tmp_path / "dead.jsonl"))
    await recorder.start()
    for n in range(24):
        recorder.submit(record(f"c{n}", "bad\x00" if n == 3 else "fine"))
    assert await recorder.flush(5.0)
    assert len(store.rows) == 23 and "c3" not in store.rows
    assert (recorder.written, recorder.refused, recorder.dead_letters) == (23, 1, 1)
    (letter,) = [json.loads(x) for x in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert letter["call_id"] == "c3" and letter["state"] == "refused"
    assert letter["record"]["notes"] == "bad\x00"  # kept as it was, to be corrected

    # A later, storable version of the same call (the note edited) supersedes the dead letter.
    recorder.submit(record("c3", "fine"))
    assert await recorder.flush(5.0)
    assert store.rows["c3"].notes == "fine" and recorder.dead_letters == 0
    assert not (tmp_path / "dead.jsonl").exists()
    await recorder.stop()


async def test_a_call_refused_again_when_its_record_is_rewritten_counts_once(
    tmp_path: Path,
) -> None:
    """A call's record is written again when its wrap-up is measured: a second refusal of the
    same call replaces its dead letter with the newer version and is not a second record."""
    store = Store()
    recorder = InteractionRecorder(store, dead_letters=DeadLetterFile(tmp_path / "dead.jsonl"))
    await recorder.start()
    recorder.submit(record("c1", "bad\x00"))
    assert await recorder.flush(5.0)
    recorder.submit(record("c1", "bad\x00 and wrapped up"))
    assert await recorder.flush(5.0)
    assert (recorder.refused, recorder.dead_letters) == (1, 1)
    (letter,) = [json.loads(x) for x in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert letter["record"]["notes"] == "bad\x00 and wrapped up"
    await recorder.stop()


async def test_during_an_outage_records_wait_and_are_written_in_order_afterwards() -> None:
    store = Store()
    store.down = True
    recorder = InteractionRecorder(store, retry_initial_s=0.01, retry_max_s=0.05)
    await recorder.start()
    for n in range(10):
        recorder.submit(record(f"c{n}"))
    await asyncio.sleep(0.2)
    assert recorder.pending == 10 and recorder.refused == 0 and recorder.failures >= 3
    assert "unavailable" in recorder.status()["last_error"]
    store.down = False
    assert await recorder.flush(5.0)
    assert store.order == [f"c{n}" for n in range(10)]
    # /healthz tells what is wrong now: once a record is written the outage is over.
    assert recorder.status()["last_error"] is None
    await recorder.stop()


async def test_at_stop_unwritten_records_are_saved_and_written_at_the_next_start(
    tmp_path: Path,
) -> None:
    store = Store()
    store.down = True
    dead = DeadLetterFile(tmp_path / "dead.jsonl")
    recorder = InteractionRecorder(store, dead_letters=dead, retry_initial_s=0.01)
    await recorder.start()
    for n in range(30):
        recorder.submit(record(f"c{n}"))
    assert await recorder.stop(drain_timeout_s=0.1) == 0  # nothing lost
    saved = [json.loads(x) for x in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert [x["call_id"] for x in saved] == [f"c{n}" for n in range(30)]
    assert {x["state"] for x in saved} == {"unwritten"}
    assert "CRM database unavailable" in saved[0]["error"]

    store.down = False
    again = InteractionRecorder(store, dead_letters=dead)
    await again.start()
    assert await again.flush(5.0)
    assert store.order == [f"c{n}" for n in range(30)]
    assert not (tmp_path / "dead.jsonl").exists()
    assert await again.stop() == 0


async def test_records_that_cannot_be_saved_either_are_counted_as_lost(tmp_path: Path) -> None:
    store = Store()
    store.down = True
    (tmp_path / "a-file").write_text("")
    dead = DeadLetterFile(tmp_path / "a-file" / "dead.jsonl")  # cannot be created
    recorder = InteractionRecorder(store, dead_letters=dead, retry_initial_s=0.01)
    await recorder.start()
    for n in range(5):
        recorder.submit(record(f"c{n}"))
    assert await recorder.stop(drain_timeout_s=0.1) == 5
    assert recorder.lost == 5


async def test_records_set_aside_can_be_retried_once_the_cause_is_fixed(tmp_path: Path) -> None:
    class Strict(Store):
        strict = True

        async def record_interaction(self, record: InteractionRecord) -> None:
            if self.strict and record.call_id == "c1":
                raise InvalidInteraction(record.call_id, "caller", "too long for this CRM")
            await super().record_interaction(record)

    store = Strict()
    recorder = InteractionRecorder(store, dead_letters=DeadLetterFile(tmp_path / "dead.jsonl"))
    await recorder.start()
    for n in range(3):
        recorder.submit(record(f"c{n}"))
    assert await recorder.flush(5.0)
    assert sorted(store.rows) == ["c0", "c2"] and recorder.dead_letters == 1
    store.strict = False  # e.g. the connector's field was widened
    assert recorder.retry_dead_letters() == 1
    assert await recorder.flush(5.0)
    assert sorted(store.rows) == ["c0", "c1", "c2"] and recorder.dead_letters == 0
    assert not (tmp_path / "dead.jsonl").exists()
    await recorder.stop()
