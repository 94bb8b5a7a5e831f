"""One daemon stopped, calls come and go, the daemon starts again: Asterisk's queue_log (its
file, beside Asterisk) tells what nobody saw, and those calls are recorded, once, with
Asterisk's figures; a call followed until the stop and finished meanwhile is completed.

The simulated PBX writes its queue_log as app_queue does (``cti.sim.queue_log``); the daemon
runs in-process on SQLite and PostgreSQL against the simulator's AMI."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from crm_core.models import Interaction
from crm_core.store import CrmStore
from crm_core.testing import empty_store
from cti.config import Config
from cti.daemon import Daemon, build_daemon
from cti.queuelog.model import calls_from_rows, parse_line
from cti.sim.call import CallSummary
from cti.sim.queue_log import QueueLogFile
from cti.sim.scenarios import AgentBehaviour, CallerProfile, Dialplan
from cti.sim.simulator import AgentSpec, SimSettings, Simulator
from cti.stats.store import legs_of_calls

KNOWN = "+442071234567"  # one customer
SHARED = "+447700900456"  # two customers: stays unattributed
PATIENT = CallerProfile("known", (KNOWN,), patience_s=(600.0, 600.0))
IMPATIENT = CallerProfile("known", (SHARED,), patience_s=(4.0, 4.0))
SCALE = 0.25
SUPERVISOR, SUPERVISOR_TOKEN = "Supervisor", "supervisor-token"


async def until(cond: Callable[[], Any], within_s: float = 20.0) -> None:
    async with asyncio.timeout(within_s):
        while not await cond():  # noqa: ASYNC110 - the daemon writes in the background
            await asyncio.sleep(0.1)


@dataclass
class World:
    sim: Simulator
    store: CrmStore
    config: Config
    queue_log: Path
    daemon: Daemon | None = None

    async def start(self) -> Daemon:
        self.daemon = await build_daemon(self.config, store=self.store)
        await self.daemon.start()
        daemon = self.daemon
        await until(lambda: _true(daemon.resyncs >= 1))
        return daemon

    async def stop(self) -> None:
        if self.daemon is not None:
            await self.daemon.stop()
            self.daemon = None

    async def rows(self) -> dict[str, list[dict[str, Any]]]:
        async with self.store.engine.connect() as conn:
            result = await conn.execute(select(Interaction.__table__))
            found: dict[str, list[dict[str, Any]]] = {}
            for row in result.mappings():
                found.setdefault(row["call_id"], []).append(dict(row))
        return found


async def _true(value: bool) -> bool:
    return value


@pytest.fixture
async def world(db_url: str, tmp_path: Path) -> AsyncIterator[World]:
    # Rings 6 s: an impatient caller (4 s) gives up while the phone rings.
    behaviour = AgentBehaviour(
        ring_s=(6.0, 6.0), miss_rate=0.0, talk_s=(10.0, 14.0), endings={"caller": 1.0}
    )
    async with _world(db_url, tmp_path, behaviour, (1001, 1002, 1003)) as w:
        yield w


@pytest.fixture
async def slow_world(db_url: str, tmp_path: Path) -> AsyncIterator[World]:
    """One agent whose phone rings 2 s and who talks 6 s (scaled): time to stop the daemon
    while it rings and start it again while they talk."""
    behaviour = AgentBehaviour(
        ring_s=(8.0, 8.0), miss_rate=0.0, talk_s=(24.0, 24.0), endings={"caller": 1.0}
    )
    async with _world(db_url, tmp_path, behaviour, (1001,)) as w:
        yield w


@contextlib.asynccontextmanager
async def _world(
    db_url: str, tmp_path: Path, behaviour: AgentBehaviour, extensions: tuple[int, ...]
) -> AsyncIterator[World]:
    store = await empty_store(db_url)
    known = await store.upsert_customer(name="Grace Hopper", external_id="C-1", phones=[KNOWN])
    await store.upsert_customer(name="Ada One", external_id="C-2", phones=[SHARED])
    await store.upsert_customer(name="Ada Two", external_id="C-3", phones=[SHARED])
    assert known is not None
    path = tmp_path / "queue_log"
    sim = Simulator(
        SimSettings(
            dialplan=Dialplan(agi_host=None),
            behaviour=behaviour,
            agents=[AgentSpec(f"Agent {n}", f"Local/{n}@agents/n", ("tier1",)) for n in extensions],
            time_scale=SCALE,
            seed=11,
            queue_log=QueueLogFile(path),
        )
    )
    await sim.start()
    config = Config.model_validate(
        {
            "ami": {
                "port": sim.ami_port,
                "secret": "cti-secret",
                "reconnect_initial_s": 0.05,
                "reconnect_max_s": 0.2,
                "heartbeat_s": 0.2,
            },
            "agi": {"host": "127.0.0.1", "port": 0},
            "http": {"host": "127.0.0.1", "port": 0},
            "database": {"url": db_url},
            "queue_log": {"file": str(path)},
            "agents": [
                {
                    "name": SUPERVISOR,
                    "role": "supervisor",
                    "token_sha256": hashlib.sha256(SUPERVISOR_TOKEN.encode()).hexdigest(),
                }
            ],
        }
    )
    w = World(sim, store, config, path)
    try:
        yield w
    finally:
        await w.stop()
        await sim.stop()
        await store.close()


def check_figures(row: dict[str, Any], truth: CallSummary) -> None:
    """As the simulator knows the call went; Asterisk's whole seconds: within 1 s."""
    assert row["outcome"] == ("answered" if truth.agents else "abandoned"), row
    assert list(row["agents"]) == truth.agents
    assert list(row["queues"]) == truth.queues
    assert row["wait_s"] == pytest.approx(truth.queued_s, abs=1.0)
    if truth.agents:
        assert row["talk_s"] == pytest.approx(truth.talk_s, abs=1.0)
    else:
        assert row["talk_s"] is None
    assert row["ended_at"] is not None and row["ended_at"] >= row["started_at"]


async def test_calls_that_came_and_went_while_the_daemon_was_down_are_recorded_from_queue_log(
    world: World,
) -> None:
    sim = world.sim
    await world.start()
    seen = sim.place_call(PATIENT, KNOWN)  # followed from start to end
    await seen
    # Waiting at the stop, answered and finished while nobody listened: seen in part.
    spanning = sim.place_call(PATIENT, KNOWN)
    await asyncio.sleep(0.5)
    await world.stop()
    # Begin and end while the daemon is down.
    answered = sim.place_call(PATIENT, KNOWN)
    abandoned = sim.place_call(IMPATIENT, SHARED)
    truths = {s.call_id: s for s in await asyncio.gather(seen, spanning, answered, abandoned)}
    assert [s.agents != [] for s in truths.values()] == [True, True, True, False]
    gone = {answered.result().call_id, abandoned.result().call_id}
    assert not gone & set(await world.rows())  # nobody saw them: no record yet

    await world.start()

    async def all_recorded() -> bool:
        rows = await world.rows()
        return all(cid in rows and rows[cid][0]["outcome"] != "unknown" for cid in truths)

    await until(all_recorded)
    await asyncio.sleep(1.0)  # anything written twice would be by now
    rows = await world.rows()
    for call_id, truth in truths.items():
        assert len(rows[call_id]) == 1, call_id  # exactly once
        check_figures(rows[call_id][0], truth)

    seen_row = rows[seen.result().call_id][0]
    assert seen_row["extra"].get("source") != "queue_log"
    assert "queue_log" not in seen_row["extra"]  # complete: left as the tracker wrote it

    a = rows[answered.result().call_id][0]
    assert a["extra"]["source"] == "queue_log"
    assert a["caller"] == KNOWN and a["customer_id"] is not None  # resolved as usual
    assert {"routing", "notes"} <= set(a["extra"]["not_known"])  # not asserted
    assert a["extra"]["estimated"] == ["started_at"]  # it entered the queue then
    assert a["extra"]["hangup_by"] == "caller"

    b = rows[abandoned.result().call_id][0]
    assert b["extra"]["source"] == "queue_log"
    assert b["customer_id"] is None  # two customers share the number: unattributed
    assert {c["external_id"] for c in b["extra"]["candidates"]} == {"C-2", "C-3"}

    # Waiting (or, on a loaded machine, just answered) at the stop, ended while nobody saw:
    # the tracker's estimate of its end (and talk, or its unknown outcome) is replaced.
    s = rows[spanning.result().call_id][0]
    assert s["extra"].get("source") != "queue_log"  # the tracker's record, completed
    assert {"ended_at", "talk_s"} <= set(s["extra"]["queue_log"]["filled"])
    assert not {"outcome", "agents", "ended_at", "talk_s"} & {
        *s["extra"].get("not_known", []),
        *s["extra"].get("estimated", []),
    }


async def test_calls_that_came_and_went_while_the_ami_link_was_down_are_recorded_after_it(
    world: World,
) -> None:
    """The daemon runs on, its link to Asterisk cut (a network outage): what queue_log
    logged meanwhile is recorded once the link is back, as after a restart."""
    sim = world.sim
    daemon = await world.start()
    await sim.ami.stop()  # the link goes; Asterisk's calls go on
    during = [sim.place_call(PATIENT, KNOWN), sim.place_call(IMPATIENT, SHARED)]
    truths = {s.call_id: s for s in await asyncio.gather(*during)}
    await sim.ami.start()  # back on the same port: the daemon reconnects and resyncs
    await until(lambda: _true(daemon.resyncs >= 2))

    async def recorded() -> bool:
        rows = await world.rows()
        return all(cid in rows for cid in truths)

    await until(recorded)
    rows = await world.rows()
    for call_id, truth in truths.items():
        assert len(rows[call_id]) == 1
        assert rows[call_id][0]["extra"]["source"] == "queue_log"
        check_figures(rows[call_id][0], truth)


def queue_log_figures(path: Path, call_id: str) -> tuple[float | None, float | None]:
    """The call's wait (CONNECT's hold time) and talk (COMPLETE*'s talk time) in queue_log."""
    rows = [r for line in path.read_text().splitlines() if (r := parse_line(line))]
    call = next(c for c in calls_from_rows(rows) if c.call_id == call_id)
    return call.wait_s, call.talk_s


@pytest.mark.parametrize("seen", ["ringing", "never"])
async def test_a_call_answered_while_the_daemon_was_down_gets_queue_logs_figures_when_it_ends(
    slow_world: World, seen: str
) -> None:
    """Ringing at the stop (or placed after it), answered while nobody listened, still
    talking at the start: the resync can only estimate the answer (no earlier than the ring
    began: the wait short by the ring, the talk long by it; or, adopted mid-way, its wait not
    known). Once the call ends, queue_log's figures replace it, and stay."""
    world = slow_world
    daemon = await world.start()
    if seen == "never":
        await world.stop()
    placed = world.sim.place_call(PATIENT, KNOWN)

    async def ringing() -> bool:
        return any(c.state == "ringing" for c in daemon.parts.calls.active())

    if seen == "ringing":
        await until(ringing)
        await asyncio.sleep(0.3)  # the ringing call's state saved
        await world.stop()

    async def answered_on_the_pbx() -> bool:
        return "|CONNECT|" in world.queue_log.read_text()

    await until(answered_on_the_pbx)
    daemon = await world.start()
    truth = await placed
    wait_s, talk_s = queue_log_figures(world.queue_log, truth.call_id)
    assert wait_s is not None and talk_s is not None

    async def completed() -> bool:
        rows = (await world.rows()).get(truth.call_id)
        return bool(rows) and "queue_log" in rows[0]["extra"]

    await until(completed)
    rows = await world.rows()
    assert len(rows[truth.call_id]) == 1
    row = rows[truth.call_id][0]
    # The tracker's record (taken back, or adopted by the resync), completed.
    if seen == "ringing":
        assert row["extra"]["restored"] is True
    else:
        assert row["extra"]["unseen"][0] is None  # it began before the daemon was back
    assert row["wait_s"] == pytest.approx(wait_s, abs=0.001)
    assert row["talk_s"] == pytest.approx(talk_s, abs=0.001)
    check_figures(row, truth)
    assert {"wait_s", "talk_s"} <= set(row["extra"]["queue_log"]["filled"])
    guessed = {*row["extra"].get("estimated", ()), *row["extra"].get("not_known", ())}
    assert not {"answered_at", "wait_s", "talk_s"} & guessed

    # The agent then saves a disposition: the record is written again from the live call,
    # with queue_log's figures, not the estimate it had before.
    await daemon.parts.calls.set_disposition(truth.call_id, "sale", "Agent 1001")
    assert await daemon.parts.recorder.flush(10.0)
    row = (await world.rows())[truth.call_id][0]
    assert row["disposition"] == "sale"
    assert row["wait_s"] == pytest.approx(wait_s, abs=0.001)
    assert row["talk_s"] == pytest.approx(talk_s, abs=0.001)
    assert "answered_at" not in row["extra"].get("estimated", ())

    # Its leg in the statistics: answered after queue_log's wait, not the estimate's, also
    # once the wrap-up the disposition ended is written into it.
    supervision = daemon.parts.supervision
    assert supervision is not None and supervision.recorder is not None
    assert await supervision.recorder.flush(10.0)
    [leg] = await legs_of_calls(world.store.engine, [truth.call_id])
    assert leg.agent == "Agent 1001" and leg.wait_s == pytest.approx(wait_s, abs=0.001)
    assert leg.wrap_s is not None
    [counted] = [g for g in supervision.stats.today() if g.call_id == truth.call_id]
    assert counted.wait_s == pytest.approx(wait_s, abs=0.001)  # today's live figures too
