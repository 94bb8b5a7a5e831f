"""Several PBXs over several instances, and the supervisor console on a standby: real
``cti run`` processes on the real PostgreSQL and Redis of the machine, against the PBX
simulator's fake AMI servers.

- Three instances configured with the same three PBXs (``[[pbx]]``) split them, one each;
  the instance ingesting a PBX is killed (SIGKILL), then a second one: each time its PBX is
  taken over within 5 s by a survivor, which ends up ingesting all three. No PBX is ever
  ingested under two tokens at once (the ingest log), ``live_pbx.fence`` holds each PBX's
  last token, and every call of every PBX is recorded once, keyed by its PBX.
- A supervisor console connected to a standby instance shows the ingester's board.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import itertools
import json
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from sqlalchemy import text

from crm_core.store import CrmStore
from crm_core.testing import empty_store
from cti.sim.scenarios import AgentBehaviour
from cti.sim.simulator import SimSettings, Simulator, generated_agents

REDIS_URL = "redis://127.0.0.1:6379/0"
PBXS = ("pbx1", "pbx2", "pbx3")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def token_of(name: str) -> str:
    return "tok-" + hashlib.sha256(name.encode()).hexdigest()[:16]


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

    async def stop(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(15):
                    await self.proc.wait()
            await self.kill()


def common_toml(
    name: str, *, db_url: str, agi_port: int, http_port: int, prefix: str, ingest_log: Path
) -> list[str]:
    return [
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
        "settle_s = 6.0",  # the three start together under load: they see each other first
        f'ingest_log = "{ingest_log}"',
    ]


def ami_toml(port: int | None) -> list[str]:
    lines = [
        "[ami]",
        'secret = "cti-secret"',
        "reconnect_initial_s = 0.1",
        "reconnect_max_s = 0.5",
        "heartbeat_s = 0.5",
    ]
    return [*lines, f"port = {port}", 'pbx_id = "pbx1"'] if port is not None else lines


async def wait_for(cond: Callable[[], Awaitable[bool]], within_s: float) -> float:
    start = time.monotonic()
    async with asyncio.timeout(within_s):
        while not await cond():  # noqa: ASYNC110 - state of other processes
            await asyncio.sleep(0.05)
    return time.monotonic() - start


async def holders(client: aioredis.Redis, prefix: str) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for pbx in PBXS:
        value = await client.get(f"{prefix}:lease:{pbx}")
        out[pbx] = value.decode().split()[0] if value else None
    return out


def simulator(seed: int) -> Simulator:
    behaviour = AgentBehaviour(
        ring_s=(0.5, 1.0), miss_rate=0.0, talk_s=(4.0, 8.0), endings={"caller": 0.5, "agent": 0.5}
    )
    return Simulator(
        SimSettings(
            behaviour=behaviour,
            ami_port=0,
            time_scale=0.25,
            seed=seed,
            agents=generated_agents(6, ["tier1", "tier2", "tier3"]),
            queue_timeout_s=30.0,
        )
    )


def point_agi(sims: list[Simulator], port: int) -> None:
    for sim in sims:
        sim.settings.dialplan = dataclasses.replace(
            sim.settings.dialplan, agi_host="127.0.0.1", agi_port=port
        )


async def calls_on_every_pbx(sims: list[Simulator], seconds: float) -> None:
    await asyncio.gather(*(sim.generate(1.5, seconds) for sim in sims))
    await asyncio.gather(*(sim.drain(60) for sim in sims))


@pytest.mark.timeout(300)
async def test_three_pbxs_are_spread_over_three_instances_and_taken_over_when_one_dies(
    pg_server_url: str, redis_prefix: tuple[aioredis.Redis, str], tmp_path: Path
) -> None:
    client, prefix = redis_prefix
    db_url = pg_server_url.replace("postgresql://", "postgresql+asyncpg://", 1)
    await (await empty_store(db_url)).close()
    sims = [simulator(seed=17) for _ in PBXS]  # the same seed: the same call ids on each PBX
    for sim in sims:
        await sim.start()
    ingest_log = tmp_path / "ingest.jsonl"
    instances: dict[str, Instance] = {}
    for name in ("A", "B", "C"):
        http_port, agi_port = free_port(), free_port()
        lines = common_toml(
            name,
            db_url=db_url,
            agi_port=agi_port,
            http_port=http_port,
            prefix=prefix,
            ingest_log=ingest_log,
        )
        lines += ami_toml(None)
        for pbx, sim in zip(PBXS, sims, strict=True):
            lines += ["[[pbx]]", f'id = "{pbx}"', f"port = {sim.ami_port}"]
        config = tmp_path / f"{name}.toml"
        config.write_text("\n".join(lines) + "\n")
        instances[name] = Instance(name, http_port, agi_port, config, tmp_path / f"{name}.log")
    takeovers: list[float] = []
    try:
        await asyncio.gather(*(inst.start() for inst in instances.values()))

        async def all_ingested() -> bool:
            held = await holders(client, prefix)
            return all(held.values()) and all(sim.ami.logins >= 1 for sim in sims)

        await wait_for(all_ingested, 90)
        spread = await holders(client, prefix)
        # Spread: each instance took its fair share, one PBX, not every lease it could.
        assert sorted(h for h in spread.values() if h) == ["A", "B", "C"], spread

        survivors = dict(instances)
        for _kill in range(2):
            busy = {h for h in (await holders(client, prefix)).values()}
            point_agi(sims, next(i.agi_port for n, i in survivors.items() if n in busy))
            await calls_on_every_pbx(sims, 3.0)
            held = await holders(client, prefix)
            victim = held["pbx2"] if _kill == 0 else next(n for n in survivors if n != held["pbx2"])
            assert victim is not None
            lost = [pbx for pbx, h in held.items() if h == victim]
            logins = {pbx: sims[PBXS.index(pbx)].ami.logins for pbx in lost}
            await survivors.pop(victim).kill()
            point_agi(sims, next(iter(survivors.values())).agi_port)

            async def taken_over(
                victim: str = victim, lost: list[str] = lost, logins: dict[str, int] = logins
            ) -> bool:
                now = await holders(client, prefix)
                return all(
                    now[pbx] in survivors and sims[PBXS.index(pbx)].ami.logins > logins[pbx]
                    for pbx in lost
                )

            takeovers.append(await wait_for(taken_over, 15))
        await calls_on_every_pbx(sims, 3.0)
        final = await holders(client, prefix)
        (last,) = survivors
        assert set(final.values()) == {last}, final  # the last instance ingests every PBX
        await asyncio.sleep(3.0)  # the last records are written
    finally:
        for inst in instances.values():
            await inst.stop()
        for sim in sims:
            await sim.stop()

    assert max(takeovers) < 5.0, takeovers  # each takeover within 5 s of the kill

    # No PBX ingested by two instances at once: per PBX, the moments each token ingested lie
    # after every moment of the smaller tokens.
    spans: dict[str, dict[int, list[float]]] = {}
    for line in ingest_log.read_text().splitlines():
        entry = json.loads(line)
        spans.setdefault(entry["pbx"], {}).setdefault(entry["token"], []).append(entry["at"])
    assert sorted(spans) == list(PBXS)
    for pbx, by_token in spans.items():
        for older, newer in itertools.pairwise(sorted(by_token)):
            assert max(by_token[older]) < min(by_token[newer]), (pbx, older, newer)

    store = await CrmStore.open(db_url)
    try:
        async with store.engine.connect() as conn:
            fences = dict((await conn.execute(text("SELECT pbx_id, fence FROM live_pbx"))).all())
            rows = (
                await conn.execute(text("SELECT call_id, outcome, agents FROM interactions"))
            ).all()
    finally:
        await store.close()
    # The database's fence is each PBX's last token: an older ingester's writes are refused.
    assert fences == {pbx: max(by_token) for pbx, by_token in spans.items()}

    # Every call of every PBX recorded once, under its PBX, as it happened.
    recorded: dict[str, list[Any]] = {}
    for call_id, outcome, agents in rows:
        recorded.setdefault(call_id, []).append((outcome, list(agents)))
    placed = 0
    problems = []
    for pbx, sim in zip(PBXS, sims, strict=True):
        for call in sim.summaries:
            placed += 1
            want = ("answered" if call.agents else "abandoned", call.agents)
            found = recorded.get(f"{pbx}:{call.call_id}", [])
            if found != [want]:
                problems.append((pbx, call.call_id, found, want))
    assert placed >= 3 * 3 * 1.5 * 3 * 0.5  # three rounds of ~3 s at 1.5 calls/s on 3 PBXs
    assert not problems, problems[:10]
    assert len(rows) == placed  # nothing else recorded, nothing twice


@pytest.mark.timeout(180)
async def test_a_supervisor_console_on_a_standby_instance_shows_the_ingesters_board(
    pg_server_url: str, redis_prefix: tuple[aioredis.Redis, str], tmp_path: Path
) -> None:
    client, prefix = redis_prefix
    db_url = pg_server_url.replace("postgresql://", "postgresql+asyncpg://", 1)
    await (await empty_store(db_url)).close()
    sim = simulator(seed=5)
    sim.settings.behaviour = dataclasses.replace(sim.settings.behaviour, talk_s=(40.0, 60.0))
    await sim.start()
    agents = sim.settings.agents
    instances: dict[str, Instance] = {}
    for name in ("A", "B"):
        http_port, agi_port = free_port(), free_port()
        lines = ami_toml(sim.ami_port)
        lines += common_toml(
            name,
            db_url=db_url,
            agi_port=agi_port,
            http_port=http_port,
            prefix=prefix,
            ingest_log=tmp_path / "ingest.jsonl",
        )
        # B never ingests: a standby for as long as the test runs.
        lines.append(f"pbxs = {json.dumps(['pbx1'] if name == 'A' else ['elsewhere'])}")
        for spec in agents:
            digest = hashlib.sha256(token_of(spec.name).encode()).hexdigest()
            lines += [
                "[[agents]]",
                f'name = "{spec.name}"',
                f'member = "{spec.name}"',
                f'interface = "{spec.interface}"',
                f'tiers = ["{spec.queues[0]}"]',
                f'token_sha256 = "{digest}"',
            ]
        lines += [
            "[[agents]]",
            'name = "sup"',
            'role = "supervisor"',
            f'token_sha256 = "{hashlib.sha256(token_of("sup").encode()).hexdigest()}"',
        ]
        config = tmp_path / f"{name}.toml"
        config.write_text("\n".join(lines) + "\n")
        instances[name] = Instance(name, http_port, agi_port, config, tmp_path / f"{name}.log")
    point_agi([sim], instances["A"].agi_port)
    session = aiohttp.ClientSession()
    console: list[dict[str, Any]] = []
    stop = asyncio.Event()
    auth = {"Authorization": f"Bearer {token_of('sup')}"}
    a_url = f"http://127.0.0.1:{instances['A'].http_port}"
    b_url = f"http://127.0.0.1:{instances['B'].http_port}"

    async def watch_console() -> None:
        async with session.ws_connect(f"{b_url}/ws/supervisor") as ws:
            await ws.send_json({"type": "auth", "token": token_of("sup")})
            async for msg in ws:
                console.append(json.loads(msg.data))
                if stop.is_set():
                    return

    async def board(url: str) -> dict[str, Any]:
        async with session.get(f"{url}/api/supervisor/board", headers=auth) as r:
            assert r.status == 200, await r.text()
            result: dict[str, Any] = await r.json()
            return result

    watcher = None
    try:
        for inst in instances.values():
            await inst.start()

        async def both_up() -> bool:
            value = await client.get(f"{prefix}:lease:pbx1")
            if value is None or sim.ami.logins < 1:
                return False
            for url in (a_url, b_url):
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with session.get(f"{url}/healthz") as r:
                        if r.status not in (200, 503):
                            return False
                    continue
                return False
            return True

        await wait_for(both_up, 60)
        watcher = asyncio.create_task(watch_console())
        await asyncio.sleep(1.0)
        await sim.generate(3.0, 3.0)

        # Calls keep moving while the boards are read (a call placed near the end of the burst
        # reaches the board after its routing), so each comparison is of two boards read
        # together, retried until they agree.
        agreed: dict[str, str] = {}

        async def boards_agree() -> bool:
            on_a, on_b = await board(a_url), await board(b_url)
            rows_a = {r["call_id"]: r["state"] for r in on_a["calls"]}
            rows_b = {r["call_id"]: r["state"] for r in on_b["calls"]}
            names_a = [r["name"] for r in on_a["agents"]]
            names_b = [r["name"] for r in on_b["agents"]]
            agreed.clear()
            agreed.update(rows_a)
            return len(rows_a) >= 3 and rows_a == rows_b and names_a == names_b

        await wait_for(boards_agree, 20)  # the standby's board is the ingester's
        # The console on the standby got the rows as they changed, for every call on the board.
        rows_seen = {m["row"]["call_id"] for m in console if m.get("type") == "call_row"}
        for m in console:  # and the whole board when it appeared
            if m.get("type") == "snapshot":
                rows_seen |= {r["call_id"] for r in m["board"]["calls"]}
        assert set(agreed) <= rows_seen, set(agreed) - rows_seen

        # A console connecting to the standby now starts from the ingester's board.
        async def snapshot_is_the_board() -> bool:
            async with session.ws_connect(f"{b_url}/ws/supervisor") as ws:
                await ws.send_json({"type": "auth", "token": token_of("sup")})
                hello = await ws.receive_json(timeout=10)
                snapshot = await ws.receive_json(timeout=10)
            assert hello["type"] == "hello" and snapshot["type"] == "snapshot"
            on_a = await board(a_url)
            return {r["call_id"] for r in snapshot["board"]["calls"]} == {
                r["call_id"] for r in on_a["calls"]
            }

        await wait_for(snapshot_is_the_board, 20)
    finally:
        stop.set()
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        await session.close()
        for inst in instances.values():
            await inst.stop()
        await sim.stop()
