"""What PostgreSQL refuses in one call's row never stops the rows of the calls after it.

A spoofed SIP ``From`` gives a caller ID of any length, Asterisk's own ids run to 150
characters (``systemname``, an Originate's ``ChannelId``), a phone's pause reason is whatever
the dialplan says: PostgreSQL refuses each beyond its ``VARCHAR``, where SQLite stores it. The
interaction log sets such a record aside (``test_interactions_integrity``); the statistics (call
legs, agent activity) and the saved live call state are written the same way: what can be
stored without lying is (a caller ID is cut, as in the interaction record), a row the database
still refuses is dropped, logged and counted in ``/metrics``, and the rows after it are written.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from interaction_world import metric, recorded, renumbered, unique_shift, world
from sqlalchemy import text
from test_queue_log_backfill import NoLiveCalls, Rows

from crm_core.db import create_engine
from crm_core.store import CrmStore
from cti.dead_letters import DeadLetterFile
from cti.interactions import InteractionRecorder
from cti.queuelog.backfill import QueueLogBackfill
from cti.stats.legs import Activity, Leg
from cti.stats.store import StatsRecorder, legs_of_calls

SPOOFED = "+44207\x00" + "9" * 200


def with_call_id(events: list[dict[str, str]], call_id: str) -> list[dict[str, str]]:
    """The trace with its Linkedid (the daemon's call id) replaced."""
    linkedid = next(e["Linkedid"] for e in events if e.get("Event") == "Newchannel")
    return [{k: call_id if v == linkedid else v for k, v in e.items()} for e in events]


async def test_a_spoofed_caller_id_and_an_over_long_call_id_stop_neither_statistics_nor_saved_calls(
    db_url: str, tmp_path: Path, traces_dir: Path
) -> None:
    trace = recorded(traces_dir)
    shift = unique_shift()
    postgresql = db_url.startswith("postgresql")
    async with world(db_url, tmp_path) as w:
        daemon = await w.start()
        spoofed = await w.call(renumbered(trace, shift, caller=SPOOFED))
        long_id = "L" * 70 + f"-{shift}"
        await w.call(with_call_id(renumbered(trace, shift + 10), long_id))
        after = [await w.call(renumbered(trace, shift + 20 + 10 * n)) for n in range(5)]
        supervision = daemon.parts.supervision
        assert supervision is not None and supervision.recorder is not None
        assert await supervision.recorder.flush(10.0)

        engine = w.store.engine
        legs = await legs_of_calls(engine, [spoofed, long_id, *after])
        written = {leg.call_id for leg in legs}
        assert {spoofed, *after} <= written
        assert (
            next(leg for leg in legs if leg.call_id == spoofed).caller
            == ("+44207" + "9" * 200)[:64]
        )
        # The calls in their wrap-up grace are kept for a restart, the spoofed one too.
        writer = daemon.parts.call_state
        assert writer is not None
        have: set[str] = set()
        async with asyncio.timeout(10):
            while not {spoofed, *after} <= have:
                await asyncio.sleep(0.05)
                have = {c.call_id for c in (await writer.load()).calls}

        _, metrics = await w.get("/metrics")
        refused = 1.0 if postgresql else 0.0  # SQLite stores an id of 80-odd characters
        assert (long_id in written) is not postgresql
        assert metric(metrics, "cti_stats_refused_total") == refused
        assert metric(metrics, "cti_call_state_refused_total") == refused
        assert (long_id in have) is not postgresql


async def test_a_row_postgresql_refuses_is_dropped_and_counted_and_the_rest_of_its_batch_written(
    pg_server_url: str,
) -> None:
    url = pg_server_url.replace("postgresql://", "postgresql+asyncpg://", 1)
    async with await CrmStore.open(url):  # migrated
        pass
    engine = create_engine(url)
    recorder = StatsRecorder(engine, retry_initial_s=0.01)
    await recorder.start()
    try:
        base = f"refused-{unique_shift()}"
        now = time.time()
        good = Leg(f"{base}-1", 1, "tier1", "tier1", now - 60, caller="201", agent="Agent 1001",
                   answered_at=now - 50, ended_at=now - 10, outcome="answered")  # fmt: skip
        bad = Leg(f"{base}-2", 1, "tier1" * 20, "tier1", now - 60, outcome="abandoned",
                  left_at=now - 30)  # fmt: skip
        later = Leg(f"{base}-3", 1, "tier1", "tier1", now - 40, outcome="abandoned",
                    left_at=now - 20)  # fmt: skip
        recorder.submit_legs([good, bad, later])
        recorder.submit_activity(
            [
                Activity("A" * 101, "login", now - 100, ended_at=now - 90),
                Activity(
                    "Agent 1001",
                    "pause",
                    now - 80,
                    ended_at=now - 70,
                    reason="a pause reason of the dialplan " * 6,
                ),
                Activity("Agent 1001", "login", now - 100, ended_at=now - 5),
            ]
        )
        assert await recorder.flush(10.0)
        legs = await legs_of_calls(engine, [good.call_id, bad.call_id, later.call_id])
        assert [leg.call_id for leg in legs] == [good.call_id, later.call_id]
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT kind, reason FROM agent_activity WHERE agent = 'Agent 1001'"
                        " AND started_at >= :t ORDER BY started_at"
                    ),
                    {"t": now - 100},
                )
            ).all()
        assert [kind for kind, _ in rows] == ["login", "pause"]
        assert rows[1][1] == ("a pause reason of the dialplan " * 6)[:100]
        assert recorder.refused == 2  # the leg with a 100-character queue, the 101-character agent
        assert recorder.pending == 0
    finally:
        await recorder.stop()
        await engine.dispose()


async def test_calls_recovered_from_queue_log_get_their_legs_beside_one_postgresql_refuses(
    pg_server_url: str, tmp_path: Path
) -> None:
    url = pg_server_url.replace("postgresql://", "postgresql+asyncpg://", 1)
    t0 = int(time.time()) - 600
    base = unique_shift()
    long_id = "L" * 70 + f"-{base}"
    ids = [f"{base}.1", long_id, f"{base}.3"]
    text = "".join(
        f"{t0 + n}|{call_id}|tier1|NONE|ENTERQUEUE||+44207946{n:04d}|1\n"
        f"{t0 + n + 3}|{call_id}|tier1|NONE|ABANDON|1|1|3\n"
        for n, call_id in enumerate(ids)
    )
    async with await CrmStore.open(url) as store:
        recorder = InteractionRecorder(store, dead_letters=DeadLetterFile(tmp_path / "d.jsonl"))
        stats = StatsRecorder(store.engine)
        await recorder.start()
        await stats.start()
        try:
            filler = QueueLogBackfill(
                Rows(text),
                store.engine,
                recorder,
                NoLiveCalls(),
                resolver=store,
                tiers_by_queue={"tier1": "T1"},
                pbx_id="pbx1",
                settle_s=0.0,
                clock=lambda: t0 + 1000.0,
                stats=stats,
            )
            report = await filler.run(t0, t0 + 500.0)
        finally:
            await recorder.stop()
            await stats.stop()
        legs = await legs_of_calls(store.engine, ids)
        assert sorted({leg.call_id for leg in legs}) == sorted([ids[0], ids[2]])
        assert sorted({leg.call_id for leg in report.legs}) == sorted([ids[0], ids[2]])
