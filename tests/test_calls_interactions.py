"""The interaction recorder: one record per call, never blocking the call flow, kept while the
CRM is down and written when it is back."""

from __future__ import annotations

import asyncio

from crm_core.types import InteractionRecord
from cti.interactions import InteractionRecorder


class Store:
    """Keeps rows by call_id like the store's UPSERT; fails while ``down``."""

    def __init__(self) -> None:
        self.rows: dict[str, InteractionRecord] = {}
        self.writes = 0
        self.down = False
        self.gate: asyncio.Event | None = None

    async def record_interaction(self, record: InteractionRecord) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.down:
            raise ConnectionError("database is down")
        self.writes += 1
        self.rows[record.call_id] = record


def record(call_id: str, notes: str = "") -> InteractionRecord:
    return InteractionRecord(call_id=call_id, customer_id=None, caller="201", notes=notes)


async def test_submitted_records_are_written_once_each() -> None:
    store = Store()
    recorder = InteractionRecorder(store)
    await recorder.start()
    for i in range(5):
        recorder.submit(record(f"c{i}"))
    assert await recorder.flush(2.0)
    assert sorted(store.rows) == ["c0", "c1", "c2", "c3", "c4"] and store.writes == 5
    await recorder.stop()


async def test_a_newer_record_for_the_same_call_replaces_an_unwritten_one() -> None:
    store = Store()
    store.gate = asyncio.Event()
    recorder = InteractionRecorder(store)
    await recorder.start()
    recorder.submit(record("a"))
    await asyncio.sleep(0.01)  # the worker is now writing "a"
    recorder.submit(record("b", "first"))
    recorder.submit(record("b", "second"))
    recorder.submit(record("a", "late note"))  # arrives while the first "a" is being written
    store.gate.set()
    assert await recorder.flush(2.0)
    assert store.rows["b"].notes == "second" and store.rows["a"].notes == "late note"
    assert store.writes == 3
    await recorder.stop()


async def test_records_wait_while_the_crm_is_down_and_are_written_when_it_returns() -> None:
    store = Store()
    store.down = True
    recorder = InteractionRecorder(store, retry_initial_s=0.02, retry_max_s=0.05)
    await recorder.start()
    recorder.submit(record("a"))
    assert not await recorder.flush(0.1)
    assert recorder.pending == 1 and recorder.failures >= 1 and store.rows == {}
    store.down = False
    assert await recorder.flush(1.0)
    assert list(store.rows) == ["a"] and recorder.pending == 0
    await recorder.stop()


async def test_records_submitted_before_start_are_written_after_it() -> None:
    store = Store()
    recorder = InteractionRecorder(store)
    recorder.submit(record("early"))
    await recorder.start()
    assert await recorder.flush(1.0)
    assert list(store.rows) == ["early"]
    await recorder.stop()
