"""Several instances: pop latency through Redis beside one instance, routing over three.

Pop latency (one run, the same load for both): ``--cps`` new calls a second (each rings one
agent, then ends) for ``--duration`` seconds, ``--desktops`` desktops connected.

- ``single``: one ``PopHub`` with every desktop, as one instance today;
- ``cluster``: the ingesting instance's hub sends through a ``RedisFanout`` (the real Redis);
  the desktops are spread over two instances (half on the ingester, half on the other), each
  reading the stream. Latency is from ``publish`` of the ringing event to the desktop's
  reader having the pop (both instances in this process: same CPU, Redis round trips real).

Routing: ``--agi-rate`` FastAGI sessions a second for ``--agi-duration`` seconds, spread over
three ``cti run`` processes of one cluster (same PostgreSQL and Redis), then all to one of
them; latency is the dialplan's, connect to close (``cti.sim.agi.run_agi``).

Sizes are counted, not taken from the arguments: the calls rung, the desktops connected (the
hubs' own count), the pops the desktops' readers got (each call once, on its agent's desktop),
the FastAGI sessions placed against the routing decisions each instance counted
(``cti_route_decisions_total`` on its ``/metrics``). A run whose counts disagree prints no
figure and the benchmark fails.

The failover acceptance run with 1,000 calls is ``CTI_CLUSTER_CALLS=1000 pytest
tests/test_cluster_failover.py`` (``--failover`` here runs it).

    .venv/bin/python bench/bench_cluster.py [--cps 300] [--duration 10] [--desktops 2000]
        [--agi-rate 200] [--agi-duration 10] [--failover]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import redis.asyncio as aioredis

from crm_core.testing import empty_store
from cti.cluster.fanout import RedisFanout
from cti.config import AgentConfig
from cti.hub import PopHub, Subscription
from cti.sim.agi import AgiRequest, run_agi
from cti.tracker.events import CallEvent

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("CTI_BENCH_REDIS", "redis://127.0.0.1:6379/0")
PG_ADMIN = os.environ.get("CTI_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000


class Mismatch(Exception):
    """A size counted is not the size asked for: no figure is printed for it."""


def check(what: str, expected: int, found: int) -> None:
    if found != expected:
        raise Mismatch(f"{what}: expected {expected:,}, found {found:,}")


@dataclass
class PopCounts:
    """What one pop run did, counted where it happened."""

    placed: int = 0  # calls rung (one ringing event each: one pop expected)
    desktops: int = 0  # desktops connected, by the hubs' own count
    pops: Counter[str] = field(default_factory=Counter)  # pops read, by call
    reached: set[str] = field(default_factory=set)  # desktops that read a pop
    misdelivered: int = 0  # pops read on the desktop of another agent
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def verify(self, name: str, desktops: int) -> None:
        check(f"{name}: desktops connected", desktops, self.desktops)
        check(f"{name}: pops read", self.placed, sum(self.pops.values()))
        check(f"{name}: calls popped", self.placed, len(self.pops))
        check(f"{name}: desktops that read a pop", min(desktops, self.placed), len(self.reached))
        check(f"{name}: pops on another agent's desktop", 0, self.misdelivered)


async def read(sub: Subscription, sent: dict[str, float], counts: PopCounts) -> None:
    while True:
        message = await sub.next()
        if message is None:
            return
        if message.type == "pop":
            counts.latencies.append(time.perf_counter() - sent[message.call_id or ""])
            counts.pops[message.call_id or ""] += 1
            counts.reached.add(sub.agent.name)
            counts.misdelivered += message.agent != sub.agent.name


async def pop_run(hubs: list[PopHub], ingester: PopHub, args: argparse.Namespace) -> PopCounts:
    agents = [AgentConfig(name=f"a{i}", member=f"a{i}") for i in range(args.desktops)]
    counts = PopCounts()
    sent: dict[str, float] = {}
    readers = []
    for i, agent in enumerate(agents):
        sub = hubs[i % len(hubs)].subscribe(agent)
        readers.append(asyncio.create_task(read(sub, sent, counts)))
    counts.desktops = sum(hub.connected() for hub in hubs)
    loop = asyncio.get_running_loop()
    start, n = loop.time(), 0
    pending: list[tuple[float, str]] = []
    while loop.time() - start < args.duration:
        due = int((loop.time() - start) * args.cps)
        while n < due:
            call = f"c{n}"
            sent[call] = time.perf_counter()
            ingester.publish(
                CallEvent(call, "ringing", time.time(), {"member": f"a{n % len(agents)}"}), None
            )
            pending.append((loop.time() + 2.0, call))
            n += 1
        while pending and pending[0][0] <= loop.time():
            _, call = pending.pop(0)
            ingester.publish(CallEvent(call, "ended", time.time(), {"hangup_by": "caller"}), None)
        await asyncio.sleep(0.005)
    counts.placed, counts.seconds = n, loop.time() - start
    # Every pop read, or 10 s more for the last ones (the check then says how many are missing).
    settle = loop.time() + 10.0
    while sum(counts.pops.values()) < n and loop.time() < settle:  # noqa: ASYNC110 - readers count
        await asyncio.sleep(0.05)
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    return counts


async def pops(args: argparse.Namespace) -> dict[str, PopCounts]:
    agents = [AgentConfig(name=f"a{i}", member=f"a{i}") for i in range(args.desktops)]
    single = PopHub(agents)
    one = await pop_run([single], single, args)
    prefix = f"cti-bench-{uuid.uuid4().hex[:8]}"
    clients = [aioredis.from_url(REDIS_URL), aioredis.from_url(REDIS_URL)]
    fans = [RedisFanout(c, prefix) for c in clients]
    hubs = [PopHub(agents, fanout=f) for f in fans]
    for hub, fan in zip(hubs, fans, strict=True):
        await fan.start(hub.deliver_local)
    try:
        two = await pop_run(hubs, hubs[0], args)
    finally:
        for fan in fans:
            await fan.stop()
        keys = [k async for k in clients[0].scan_iter(match=f"{prefix}:*")]
        if keys:
            await clients[0].delete(*keys)
        for c in clients:
            await c.aclose()
    return {"single": one, "cluster": two}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def routing(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    name = f"cti_bench_cluster_{uuid.uuid4().hex[:6]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    db_url = (
        PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + "/" + name
    )
    store = await empty_store(db_url)
    await store.upsert_customer(name="Grace Hopper", external_id="C1", phones=["+442079460000"])
    await store.close()
    prefix = f"cti-bench-{uuid.uuid4().hex[:8]}"
    procs, ports, http_ports = [], [], []
    try:
        for i in range(3):
            agi, http = free_port(), free_port()
            config = workdir / f"i{i}.toml"
            config.write_text(
                "\n".join(
                    [
                        "[ami]",
                        "enabled = false",
                        "[agi]",
                        'host = "127.0.0.1"',
                        f"port = {agi}",
                        "[http]",
                        'host = "127.0.0.1"',
                        f"port = {http}",
                        "[database]",
                        f'url = "{db_url}"',
                        "[logging]",
                        'level = "error"',
                        "[cluster]",
                        f'redis_url = "{REDIS_URL}"',
                        f'key_prefix = "{prefix}"',
                    ]
                )
                + "\n"
            )
            procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "cti",
                    "run",
                    "-c",
                    str(config),
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=(workdir / f"i{i}.log").open("ab"),
                )
            )
            ports.append(agi)
            http_ports.append(http)
        for port in ports:
            for _ in range(300):
                try:
                    _, w = await asyncio.open_connection("127.0.0.1", port)
                    w.close()
                    break
                except OSError:
                    await asyncio.sleep(0.1)
        warm = argparse.Namespace(agi_rate=50.0, agi_duration=3.0)
        await agi_load(ports, warm)  # started, connected to the database, caches warm
        three = await counted(http_ports, agi_load(ports, args))
        one = await counted(http_ports, agi_load(ports[:1], args))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            await p.wait()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
        client = aioredis.from_url(REDIS_URL)
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    return {"three": three, "one": one}


@dataclass
class AgiCounts:
    """One routing load: sessions placed and their results, and the decisions each instance
    says it made meanwhile (``cti_route_decisions_total``)."""

    placed: int
    latencies: list[float]
    failures: int
    decided: list[int] = field(default_factory=list)

    def verify(self, name: str, instances: int) -> None:
        check(
            f"{name}: sessions answered or failed", self.placed, len(self.latencies) + self.failures
        )
        check(f"{name}: decisions counted by the instances", self.placed, sum(self.decided))
        check(f"{name}: instances that decided", instances, sum(1 for d in self.decided if d))


async def decisions(http_ports: list[int]) -> list[int]:
    """Each instance's own count of routing decisions, from its ``/metrics``."""
    found = []
    async with aiohttp.ClientSession() as session:
        for port in http_ports:
            async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
                body = await resp.text()
            total = [
                float(line.split()[-1])
                for line in body.splitlines()
                if line.startswith("cti_route_decisions_total ")
            ]
            found.append(int(total[0]) if total else 0)
    return found


async def counted(http_ports: list[int], load: Awaitable[AgiCounts]) -> AgiCounts:
    before = await decisions(http_ports)
    result = await load
    after = await decisions(http_ports)
    result.decided = [a - b for a, b in zip(after, before, strict=True)]
    return result


async def agi_load(ports: list[int], args: argparse.Namespace) -> AgiCounts:
    latencies: list[float] = []
    failures = 0
    turn = itertools.cycle(ports)
    builtins = {"CALLERID(num)": "+442079460000"}

    async def one(i: int, port: int) -> None:
        nonlocal failures
        request = AgiRequest(
            f"PJSIP/trunk-{i}",
            f"1.{i}",
            "+442079460000",
            "",
            0,
            "from-pstn",
            "0800",
            1,
            args=("0800",),
        )
        t0 = time.perf_counter()
        result = await run_agi("127.0.0.1", port, request, builtins=builtins, timeout_s=5.0)
        if result.status != "SUCCESS":
            failures += 1
        else:
            latencies.append(time.perf_counter() - t0)

    tasks = []
    loop = asyncio.get_running_loop()
    start = loop.time()
    n = 0
    while loop.time() - start < args.agi_duration:
        due = int((loop.time() - start) * args.agi_rate)
        while n < due:
            tasks.append(asyncio.create_task(one(n, next(turn))))
            n += 1
        await asyncio.sleep(0.005)
    await asyncio.gather(*tasks)
    return AgiCounts(placed=n, latencies=latencies, failures=failures)


def report(args: argparse.Namespace) -> None:
    """Each figure after the counts that say what it measured (``Mismatch``: none)."""
    result = asyncio.run(pops(args))
    for name, counts in result.items():
        counts.verify(name, args.desktops)
    print(f"pop latency, {args.desktops} desktops (ms):")
    for name, c in result.items():
        where = "1 instance" if name == "single" else "2 instances via Redis stream"
        print(f"  {where:30} calls {c.placed:6} ({c.placed / c.seconds:4.0f}/s)  "
              f"pops {sum(c.pops.values()):6} to {len(c.reached):5} desktops  "
              f"p50 {pct(c.latencies, 0.5):7.2f}  p99 {pct(c.latencies, 0.99):7.2f}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        routed = asyncio.run(routing(args, Path(tmp)))
    for name, r in routed.items():
        r.verify(name, 3 if name == "three" else 1)
    print(f"routing (FastAGI) at {args.agi_rate:.0f} sessions/s (ms):")
    for name, r in routed.items():
        where = "3 instances sharing the load" if name == "three" else "1 instance"
        split = "+".join(str(d) for d in r.decided)
        print(f"  {where:30} placed {r.placed:6}  decided {split:>17}  ok {len(r.latencies):6}  "
              f"failed {r.failures:4}  p50 {pct(r.latencies, 0.5):7.2f}  "
              f"p99 {pct(r.latencies, 0.99):7.2f}")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--cps", type=float, default=300.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--desktops", type=int, default=2000)
    parser.add_argument("--agi-rate", type=float, default=200.0)
    parser.add_argument("--agi-duration", type=float, default=10.0)
    parser.add_argument("--failover", action="store_true", help="the 1,000-call failover run")
    args = parser.parse_args()
    try:
        report(args)
    except Mismatch as exc:
        print(f"refusing to report: {exc}", file=sys.stderr)
        return 1
    if args.failover:
        env = dict(os.environ, CTI_CLUSTER_CALLS="1000")
        test = [
            "-m",
            "pytest",
            "-q",
            "-x",
            "tests/test_cluster_failover.py",
            "-p",
            "no:cacheprovider",
        ]
        return subprocess.call([sys.executable, *test], cwd=ROOT, env=env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
