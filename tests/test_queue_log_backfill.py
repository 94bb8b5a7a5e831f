"""The queue_log backfill against a real store: which calls it records, which it completes,
which it leaves, and how a queue entry finds the call the tracker recorded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from crm_core.models import Interaction
from crm_core.store import CrmStore
from crm_core.types import InteractionRecord
from cti.interactions import InteractionRecorder
from cti.queuelog.backfill import QueueLogBackfill
from cti.queuelog.model import QueueLogRow, parse_line

T0 = 1_795_394_556.0


class Rows:
    """A queue_log source holding fixed rows (the file's shape)."""

    fine = False

    def __init__(self, text: str) -> None:
        self.rows = [r for r in map(parse_line, text.splitlines()) if r is not None]

    async def read(self, since: float) -> list[QueueLogRow]:
        return [r for r in self.rows if r.time >= since]

    async def close(self) -> None:
        return None


class NoLiveCalls:
    def get(self, call_id: str) -> Any:
        return None

    def queue_log_completed(self, record: Any) -> bool:
        return False


def at(offset: float) -> datetime:
    return datetime.fromtimestamp(T0 + offset, UTC)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[CrmStore]:
    s = await CrmStore.open(f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}")
    yield s
    await s.close()


async def backfill(store: CrmStore, text: str) -> tuple[Any, dict[str, dict[str, Any]]]:
    recorder = InteractionRecorder(store)
    await recorder.start()
    filler = QueueLogBackfill(
        Rows(text),
        store.engine,
        recorder,
        NoLiveCalls(),
        resolver=store,
        tiers_by_queue={"tier1": "T1"},
        pbx_id="pbx1",
        settle_s=0.0,
        clock=lambda: T0 + 1000,
    )
    report = await filler.run(T0, T0 + 500)
    await recorder.stop()
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(Interaction.__table__))).mappings().all()
    return report, {r["call_id"]: dict(r) for r in rows}


# No Linkedid rows: a customer's own dialplan. The waiting channel 9.1 belongs to call 9.0.
UNLINKED = f"""\
{int(T0)}|9.1|tier1|NONE|ENTERQUEUE||+442071234567|1
{int(T0) + 3}|9.1|tier1|Agent 1001|CONNECT|3|9.4|1
{int(T0) + 20}|9.1|tier1|Agent 1001|COMPLETEAGENT|3|17|1
"""


async def test_a_queue_entry_finds_the_call_the_tracker_recorded_by_its_channels_uniqueid(
    store: CrmStore,
) -> None:
    """The tracker saw the call wait, then lost it (a restart): outcome unknown. queue_log
    names the entry 9.1, the interaction is 9.0: completed, not written twice."""
    await store.record_interaction(
        InteractionRecord(
            call_id="9.0",
            customer_id=None,
            caller="+442071234567",
            started_at=at(-2),
            ended_at=at(1),
            queues=("tier1",),
            outcome="unknown",
            routing_reason="open case: billing",
            extra={
                "queue_legs": [{"queue": "tier1", "wait_s": None, "uniqueid": "9.1"}],
                "not_known": ["outcome", "agents"],
                "estimated": ["ended_at"],
                "restored": True,
            },
        )
    )
    report, rows = await backfill(store, UNLINKED)
    assert set(rows) == {"9.0"} and report.completed == ["9.0"]
    row = rows["9.0"]
    assert (row["outcome"], row["agents"], row["wait_s"], row["talk_s"]) == (
        "answered",
        ["Agent 1001"],
        3.0,
        17.0,
    )
    assert row["ended_at"].replace(tzinfo=UTC) == at(20)
    assert row["routing_reason"] == "open case: billing"  # what the tracker knew stays
    assert row["extra"]["not_known"] == [] and row["extra"]["estimated"] == []
    assert row["extra"]["hangup_by"] == "agent"
    assert "outcome" in row["extra"]["queue_log"]["filled"]


async def test_a_call_nobody_recorded_is_written_under_its_queue_entry_when_unlinked(
    store: CrmStore,
) -> None:
    report, rows = await backfill(store, UNLINKED)
    assert report.recorded == ["9.1"]
    row = rows["9.1"]
    assert row["extra"]["source"] == "queue_log"
    assert "linkedid" in row["extra"]["not_known"]  # the call's own id was not logged
    assert row["started_at"].replace(tzinfo=UTC) == at(0)
    assert row["extra"]["estimated"] == ["started_at"]


async def test_a_call_the_tracker_saw_whole_is_left_as_it_wrote_it(store: CrmStore) -> None:
    record = InteractionRecord(
        call_id="9.0",
        customer_id=None,
        caller="+442071234567",
        started_at=at(-2),
        answered_at=at(3.4),
        ended_at=at(20.2),
        queues=("tier1",),
        agents=("Agent 1001",),
        wait_s=3.41,
        talk_s=16.8,
        extra={"queue_legs": [{"queue": "tier1", "wait_s": 3.41, "uniqueid": "9.1"}]},
    )
    await store.record_interaction(record)
    report, rows = await backfill(store, UNLINKED)
    assert report.already == 1 and not report.completed and not report.recorded
    assert (rows["9.0"]["wait_s"], rows["9.0"]["talk_s"]) == (3.41, 16.8)
    assert "queue_log" not in rows["9.0"]["extra"]


async def test_a_record_missing_a_figure_queue_log_gives_is_completed_even_if_unmarked(
    store: CrmStore,
) -> None:
    """Seen in the failover run: the tracker wrote a queued, answered call with no wait and
    no mark saying it was unknown. queue_log knows the wait: it is filled, not left empty."""
    record = InteractionRecord(
        call_id="9.0",
        customer_id=None,
        caller="+442071234567",
        started_at=at(-2),
        answered_at=at(3),
        ended_at=at(20),
        queues=("tier1",),
        agents=("Agent 1001",),
        outcome="answered",
        wait_s=None,
        talk_s=17.0,
        extra={"queue_legs": [{"queue": "tier1", "wait_s": None, "uniqueid": "9.1"}]},
    )
    await store.record_interaction(record)
    report, rows = await backfill(store, UNLINKED)
    assert report.completed == ["9.0"]
    assert rows["9.0"]["wait_s"] == 3.0
    assert "wait_s" in rows["9.0"]["extra"]["queue_log"]["filled"]
