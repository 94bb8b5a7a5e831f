"""Issue 17's acceptance test: three ``cti run`` processes on the real PostgreSQL and Redis
of the machine, the PBX simulator placing calls, and the instance that ingests the PBX
killed (SIGKILL) ten times along the way.

Instances A and B contend for the PBX's lease; C serves FastAGI and desktops only
(``[cluster] pbxs`` without the PBX), so routing never depends on the instance being
killed. Each agent has a desktop on C (never cut) and one on A or B (cut at each kill of its
instance, then reconnected to another live instance: the replay). A killed instance is
started again at once, as its service manager would, and waits as a standby.

The simulated PBX keeps Asterisk's realtime queue_log in the shared PostgreSQL (as
``extconfig.conf`` ``queue_log => pgsql,...`` with ``queue_log_realtime_use_gmt``), and the
instances read it (``[queue_log] table``): a call that came and went while no instance
ingested, or ended then, is recorded or completed from it by the instance that takes over.

Checked: every call recorded exactly once, none unknown, with the outcome, queues and agents
it really had, its wait and talk within 1 s of what the simulator knows they were, and
``ended_at`` not before ``started_at``; each agent's steady desktop got each message
once, never two pops for one call, and for each call it answered a pop (or, for a call that
rang and was answered while no instance ingested, ``answered`` with the call's context; one
answered and ended then was never on a desktop); takeover within 5 s each time; the ingest
log (one line per ingest moment with its fencing token) shows no two tokens ingesting at once.

``CTI_CLUSTER_CALLS`` sets the number of calls (default 1,000, over the same minute as
fewer: the call rate rises with it).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import itertools
import json
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from sqlalchemy import text

from crm_core.store import CrmStore
from crm_core.testing import empty_store
from cti.sim.queue_log import QueueLogTable, create_table
from cti.sim.scenarios import AgentBehaviour
from cti.sim.simulator import SimSettings, Simulator, generated_agents

REDIS_URL = "redis://127.0.0.1:6379/0"
CALLS = int(os.environ.get("CTI_CLUSTER_CALLS", "1000"))
KILLS = 10
# Calls last 4.25 s to 8 s (a takeover takes 2 to 3 s): enough agents for them all.
AGENTS = max(40, CALLS // 5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def token_of(name: str) -> str:
    return "tok-" + hashlib.sha256(name.encode()).hexdigest()[:16]


def _how(extra: dict[str, Any]) -> str:
    """How a record was made, for a failure's message."""
    if extra.get("source") == "queue_log":
        return "from queue_log"
    if "queue_log" in extra:
        return f"completed from queue_log: {extra['queue_log'].get('filled')}"
    return f"tracker (estimated {extra.get('estimated')}, not known {extra.get('not_known')})"


@dataclass
class Instance:
    name: str
    http_port: int
    agi_port: int
    config: Path
    log: Path
    proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cti",
            "run",
            "-c",
            str(self.config),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=self.log.open("ab"),
        )

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def kill(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()


def instance_toml(
    name: str,
    *,
    db_url: str,
    ami_port: int,
    agi_port: int,
    http_port: int,
    prefix: str,
    ingest_log: Path,
    pbxs: list[str],
) -> str:
    lines = [
        "[ami]",
        f"port = {ami_port}",
        'secret = "cti-secret"',
        "reconnect_initial_s = 0.1",
        "reconnect_max_s = 0.5",
        "heartbeat_s = 0.5",
        'pbx_id = "pbx1"',
        "[agi]",
        'host = "127.0.0.1"',
        f"port = {agi_port}",
        "[http]",
        'host = "127.0.0.1"',
        f"port = {http_port}",
        "[database]",
        f'url = "{db_url}"',
        "[logging]",
        'level = "info"',
        "[cluster]",
        f'redis_url = "{REDIS_URL}"',
        f'instance_id = "{name}"',
        f'key_prefix = "{prefix}"',
        "lease_ttl_s = 2.0",
        f"pbxs = {json.dumps(pbxs)}",
        f'ingest_log = "{ingest_log}"',
        "[queue_log]",
        'table = "queue_log"',
        'timezone = "UTC"',
    ]
    for spec in generated_agents(AGENTS, ["tier1", "tier2", "tier3"]):
        digest = hashlib.sha256(token_of(spec.name).encode()).hexdigest()
        lines += [
            "[[agents]]",
            f'name = "{spec.name}"',
            f'member = "{spec.name}"',
            f'interface = "{spec.interface}"',
            f'tiers = ["{spec.queues[0]}"]',
            f'token_sha256 = "{digest}"',
        ]
    return "\n".join(lines) + "\n"


@dataclass
class Desktop:
    """One agent's desktop page: every message it received, in order, and its reconnects."""

    agent: str
    received: list[dict[str, Any]] = field(default_factory=list)
    connections: int = 0


async def keep_desktop(
    session: aiohttp.ClientSession, desk: Desktop, ports: list[int], stop: asyncio.Event
) -> None:
    """Connect to the first live instance of ``ports`` and read; reconnect when cut."""
    i = 0
    while not stop.is_set():
        port = ports[i % len(ports)]
        i += 1
        try:
            async with session.ws_connect(
                f"http://127.0.0.1:{port}/ws?token={token_of(desk.agent)}", heartbeat=None
            ) as ws:
                desk.connections += 1
                i -= 1  # stay on this instance while it lives
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        data = json.loads(msg.data)
                        if "id" in data:  # hub messages (not the connection's hello)
                            desk.received.append(data)
                    if stop.is_set():
                        return
        except (aiohttp.ClientError, OSError):
            pass
        await asyncio.sleep(0.2)


async def lease_holder(client: aioredis.Redis, prefix: str) -> str | None:
    value = await client.get(f"{prefix}:lease:pbx1")
    return value.decode().split()[0] if value else None


async def wait_for(cond: Any, within_s: float, step: float = 0.05) -> float:
    start = time.monotonic()
    async with asyncio.timeout(within_s):
        while not await cond():  # noqa: ASYNC110 - state of other processes
            await asyncio.sleep(step)
    return time.monotonic() - start


@pytest.mark.timeout(600)
async def test_calls_survive_ten_kills_of_the_ingesting_instance(
    pg_server_url: str, redis_prefix: tuple[aioredis.Redis, str], tmp_path: Path
) -> None:
    client, prefix = redis_prefix
    db_url = pg_server_url.replace("postgresql://", "postgresql+asyncpg://", 1)
    pbx_db = await empty_store(db_url)
    await create_table(pbx_db.engine)  # Asterisk's realtime queue_log, as ast-db-manage makes it
    agents = generated_agents(AGENTS, ["tier1", "tier2", "tier3"])
    behaviour = AgentBehaviour(
        ring_s=(1.0, 2.0), miss_rate=0.0, talk_s=(16.0, 30.0), endings={"caller": 0.6, "agent": 0.4}
    )
    time_scale = 0.25
    sim = Simulator(
        SimSettings(
            behaviour=behaviour,
            ami_port=0,
            time_scale=time_scale,
            seed=17,
            agents=agents,
            queues={"tier1": "rrmemory", "tier2": "ringall", "tier3": "rrmemory"},
            queue_timeout_s=60.0,
            queue_log=QueueLogTable(pbx_db.engine, gmt=True),
        )
    )
    await sim.start()
    ingest_log = tmp_path / "ingest.jsonl"
    instances: dict[str, Instance] = {}
    for name in ("A", "B", "C"):
        http_port, agi_port = free_port(), free_port()
        config = tmp_path / f"{name}.toml"
        config.write_text(
            instance_toml(
                name,
                db_url=db_url,
                ami_port=sim.ami_port,
                agi_port=agi_port,
                http_port=http_port,
                prefix=prefix,
                ingest_log=ingest_log,
                pbxs=["pbx1"] if name != "C" else ["elsewhere"],
            )
        )
        instances[name] = Instance(name, http_port, agi_port, config, tmp_path / f"{name}.log")
    sim.settings.dialplan = dataclasses.replace(
        sim.settings.dialplan, agi_host="127.0.0.1", agi_port=instances["C"].agi_port
    )
    for inst in instances.values():
        await inst.start()
    stop = asyncio.Event()
    # Every desktop holds a connection: no pool limit (the default 100 would starve the rest).
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    steady = {a.name: Desktop(a.name) for a in agents}
    roaming = {a.name: Desktop(a.name) for a in agents}
    readers = []
    try:

        async def anyone_ingests() -> bool:
            return await lease_holder(client, prefix) is not None and sim.ami.logins >= 1

        await wait_for(anyone_ingests, 60)
        ports = [instances[n].http_port for n in ("A", "B", "C")]

        async def http_up(port: int = ports[2]) -> bool:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(f"http://127.0.0.1:{port}/healthz") as r:
                    return r.status in (200, 503)
            return False

        for port in ports:
            await wait_for(lambda port=port: http_up(port), 60)
        for i, a in enumerate(agents):
            readers.append(
                asyncio.create_task(keep_desktop(session, steady[a.name], [ports[2]], stop))
            )
            order = [ports[i % 2], ports[1 - i % 2], ports[2]]
            readers.append(asyncio.create_task(keep_desktop(session, roaming[a.name], order, stop)))
        await asyncio.sleep(1.0)
        duration = KILLS * 6.0  # room for each takeover and the restart of the killed one
        cps = CALLS / duration
        load = asyncio.create_task(sim.generate(cps, duration))
        takeovers: list[float] = []
        gap = duration / (KILLS + 1)
        for _ in range(KILLS):
            await asyncio.sleep(gap)
            for inst in instances.values():  # one that exited (lease lost): started again
                if not inst.alive:
                    await inst.start()
                    await wait_for(lambda p=inst.http_port: http_up(p), 30)

            # An ingester starved past its lease's TTL (a loaded machine) gives the PBX up and
            # exits; the other takes it over: kill whichever ingests now.
            async def ingesting() -> bool:
                return await lease_holder(client, prefix) in ("A", "B")

            await wait_for(ingesting, 30)
            holder = await lease_holder(client, prefix)
            assert holder in ("A", "B"), holder
            logins = sim.ami.logins
            await instances[holder].kill()
            killed_at = time.monotonic()

            async def taken_over(was: str = holder, before: int = logins) -> bool:
                now = await lease_holder(client, prefix)
                return now not in (None, was) and sim.ami.logins > before

            await wait_for(taken_over, 10)
            takeovers.append(time.monotonic() - killed_at)
            await instances[holder].start()  # its service manager starts it again: standby
            port = instances[holder].http_port
            # A process starting on 2 cores loaded by the ingester at 17 calls/s (and other
            # jobs) can take a while; what is timed is the takeover, above.
            await wait_for(lambda port=port: http_up(port), 90)
            await asyncio.sleep(1.0)  # its fan-out read, its role started: a standby
        await load
        await sim.drain(120)

        async def all_recorded() -> bool:
            """Each call written, none unknown (the last takeover's queue_log check done)."""
            async with pbx_db.engine.connect() as conn:
                done = (
                    await conn.execute(
                        text("SELECT count(*) FROM interactions WHERE outcome <> 'unknown'")
                    )
                ).scalar_one()
            return int(done) >= len(sim.summaries)

        with contextlib.suppress(TimeoutError):
            await wait_for(all_recorded, 60, step=0.5)
        await asyncio.sleep(2.0)  # anything written twice would be by now
        stop.set()
    finally:
        stop.set()
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        await session.close()
        for inst in instances.values():
            if inst.alive:
                assert inst.proc is not None
                inst.proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(15):
                        await inst.proc.wait()
                await inst.kill()
        await sim.stop()
        async with pbx_db.engine.begin() as conn:  # the PBX's table, not one of the CRM's
            await conn.execute(text("DROP TABLE IF EXISTS queue_log"))
        await pbx_db.close()

    assert len(sim.summaries) >= CALLS * 0.8  # Poisson arrivals over CALLS / cps seconds
    # Takeover within 5 s of each kill (the lease's TTL, a login and a resync).
    assert len(takeovers) == KILLS
    assert max(takeovers) < 5.0, takeovers

    # No two instances ever ingested the PBX at once: per token, its ingest moments lie
    # after every moment of a smaller token.
    spans: dict[int, list[float]] = {}
    for line in ingest_log.read_text().splitlines():
        entry = json.loads(line)
        spans.setdefault(entry["token"], []).append(entry["at"])
    tokens = sorted(spans)
    assert len(tokens) >= KILLS + 1
    for older, newer in itertools.pairwise(tokens):
        assert max(spans[older]) < min(spans[newer]), (older, newer)

    # Every call recorded exactly once, as it happened: none unknown, none missing.
    store = await CrmStore.open(db_url)
    try:
        async with store.engine.connect() as conn:
            rows = (
                (
                    await conn.execute(
                        text(
                            "SELECT call_id, outcome, agents, queues, started_at, ended_at,"
                            " wait_s, talk_s, extra FROM interactions"
                        )
                    )
                )
                .mappings()
                .all()
            )
    finally:
        await store.close()
    by_id: dict[str, list[Any]] = {}
    for row in rows:
        by_id.setdefault(row["call_id"], []).append(row)
    problems: list[Any] = []
    answered_by: dict[str, str] = {}
    from_queue_log: list[str] = []  # nobody saw them: recorded from Asterisk's queue_log
    completed: list[str] = []  # seen in part, completed from it
    never_shown: set[str] = set()  # answered and ended unseen: no desktop could be told
    for call in sim.summaries:
        found = by_id.get(call.call_id, [])
        if len(found) != 1:
            problems.append(("recorded", len(found), call.call_id))
            continue
        row = found[0]
        extra = row["extra"] or {}
        if extra.get("source") == "queue_log":
            from_queue_log.append(call.call_id)
            never_shown.add(call.call_id)
        elif "queue_log" in extra:
            completed.append(call.call_id)
            if "agents" in extra["queue_log"]["filled"]:
                never_shown.add(call.call_id)  # answered and ended while nobody ingested
        if call.agents:
            answered_by[call.call_id] = call.agents[-1]
        want = "answered" if call.agents else "abandoned"
        if row["outcome"] != want or list(row["agents"]) != call.agents:
            problems.append(("figures", call.call_id, row["outcome"], row["agents"], call.agents))
        elif list(row["queues"]) != call.queues:
            problems.append(("queues", call.call_id, row["queues"], call.queues))
        # Wait: time in queues; talk: time bridged with agents (queue_log's table has them to
        # the microsecond, AMI to the event): within 1 s of the truth.
        if row["wait_s"] is None or abs(row["wait_s"] - call.queued_s) > 1.0:
            problems.append(
                ("wait_s", call.call_id, row["wait_s"], round(call.queued_s, 3), _how(extra))
            )
        talk = row["talk_s"] if call.agents else None
        if call.agents and (talk is None or abs(talk - call.talk_s) > 1.0):
            problems.append(
                ("talk_s", call.call_id, row["talk_s"], round(call.talk_s, 3), _how(extra))
            )
        if row["ended_at"] is not None and row["ended_at"] < row["started_at"]:
            problems.append(("ended_before_started", call.call_id))
    assert not problems, (len(problems), problems[:10])
    # The kills did leave calls nobody saw, or saw in part: queue_log was what told them.
    assert from_queue_log or completed

    # Desktops: the steady one got each message once and a pop for every call its agent
    # answered; the roaming one, after its replays (same ids), has the same pops.
    missing: list[Any] = []
    for agent, desk in steady.items():
        ids = [m["id"] for m in desk.received]
        assert len(ids) == len(set(ids)), agent
        pops = {m["call_id"] for m in desk.received if m["type"] == "pop"}
        # A call that rang and was answered while no instance ingested is shown at its
        # answer (Asterisk's state read back): ``answered`` with the call's context.
        shown = pops | {
            m["call_id"] for m in desk.received if m["type"] == "answered" and "call" in m
        }
        popped_ids: dict[str, set[str]] = {}
        for m in desk.received:
            if m["type"] == "pop":
                popped_ids.setdefault(m["call_id"], set()).add(m["id"])
        assert all(len(v) == 1 for v in popped_ids.values()), agent  # one pop per call
        for call_id, who in answered_by.items():
            if who == agent and call_id not in shown and call_id not in never_shown:
                missing.append((agent, call_id))
        roam = {m["id"] for m in roaming[agent].received if m["type"] == "pop"}
        assert roam <= {i for s in popped_ids.values() for i in s}, agent
    assert not missing, (len(missing), missing[:10])
