"""Several instances: pop latency through Redis beside one instance, routing over three.

Pop latency, real processes, one run, the same load for both set-ups: the fake Asterisk of
``bench_pop.py`` (another process: the recorded ``answered_tier1`` call, renamed per call)
offers ``--cps`` new calls a second for ``--duration`` seconds, open loop; each rings one of
``--desktops`` agents 0.2 s later, is answered 1 s and ends 2 s after its offer. The desktops
(WebSocket clients in a third process) measure from the ring's *scheduled* time to the pop
frame (CLOCK_MONOTONIC, shared by the processes).

- ``1 instance``: one ``cti run`` (no Redis) with every desktop;
- ``2 instances``: two ``cti run`` of one cluster (Redis, PostgreSQL); the one holding the
  PBX's lease ingests and publishes through the Redis stream, the desktops are spread over
  both (half on each), each instance delivering to its own.

Each set-up has its own fresh PostgreSQL database. Inputs are counted independently: calls
placed (the fake Asterisk's own count), pops received (the desktops'), and rows in the
database (``SELECT count(*) FROM interactions`` once the calls ended).

Routing: ``--agi-rate`` FastAGI sessions a second for ``--agi-duration`` seconds, spread over
three ``cti run`` processes of one cluster (same PostgreSQL and Redis), then all to one of
them; latency is the dialplan's, connect to close (``cti.sim.agi.run_agi``).

The failover acceptance run with 1,000 calls is ``CTI_CLUSTER_CALLS=1000 pytest
tests/test_cluster_failover.py`` (``--failover`` here runs it).

    .venv/bin/python bench/bench_cluster.py [--cps 300] [--duration 10] [--desktops 2000]
        [--agi-rate 200] [--agi-duration 10] [--failover]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_pop import TRACE, member, pbx_process, token

from crm_core.testing import empty_store
from cti.http.auth import hash_token
from cti.sim.agi import AgiRequest, run_agi

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("CTI_BENCH_REDIS", "redis://127.0.0.1:6379/0")
PG_ADMIN = os.environ.get("CTI_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def redis_cpu_s() -> float:
    client = aioredis.from_url(REDIS_URL)
    try:
        info = await client.info("cpu")
    finally:
        await client.aclose()
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000


# ---- the desktops (another process), spread over the instances -------------------------------


async def desktops_main(ports: list[int], count: int, pipe: Connection) -> None:
    """Desktop i on ``ports[i % len(ports)]``; says how many connected, then records pops."""
    received: list[tuple[str, float]] = []
    connected = 0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def desktop(i: int) -> None:
            nonlocal connected
            port = ports[i % len(ports)]
            url = f"http://127.0.0.1:{port}/ws?token={token(i)}"
            for _attempt in range(50):
                try:
                    async with session.ws_connect(url, heartbeat=None) as ws:
                        connected += 1
                        async for msg in ws:
                            now = time.monotonic()
                            data = json.loads(msg.data)
                            if data.get("type") == "pop":
                                received.append((data["call_id"], now))
                    return
                except (aiohttp.ClientError, OSError):
                    await asyncio.sleep(0.2)

        tasks = [asyncio.create_task(desktop(i)) for i in range(count)]
        deadline = time.monotonic() + 60
        while connected < count and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # the instances registered them (hello sent before)
        pipe.send(connected)
        await asyncio.to_thread(pipe.recv)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    pipe.send(received)


def desktops_process(ports: list[int], count: int, pipe: Connection) -> None:
    asyncio.run(desktops_main(ports, count, pipe))


# ---- the instances ----------------------------------------------------------------------------


def instance_toml(
    *, db_url: str, ami_port: int, desktops: int, cluster: dict[str, Any] | None
) -> str:
    lines = [
        "[ami]",
        f"port = {ami_port}",
        'username = "cti"',
        'secret = "cti-secret"',
        "[agi]",
        'host = "127.0.0.1"',
        f"port = {free_port()}",
        "[http]",
        'host = "127.0.0.1"',
        "port = {http_port}",
        "[database]",
        f'url = "{db_url}"',
        "[logging]",
        'level = "warning"',
    ]
    if cluster is not None:
        lines += ["[cluster]", *(f"{k} = {json.dumps(v)}" for k, v in cluster.items())]
    for i in range(desktops):
        lines += [
            "[[agents]]",
            f'name = "{member(i)}"',
            f'member = "{member(i)}"',
            f'interface = "Local/{1000 + i}@agents"',
            f'token_sha256 = "{hash_token(token(i))}"',
        ]
    return "\n".join(lines) + "\n"


async def new_database(admin: asyncpg.Connection) -> tuple[str, str]:
    name = f"cti_bench_pops_{uuid.uuid4().hex[:6]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    db_url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    db_url += "/" + name
    await (await empty_store(db_url)).close()
    return name, db_url


async def wait_port(port: int, within_s: float = 60.0) -> None:
    deadline = time.monotonic() + within_s
    while True:
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def pop_setup(
    name: str,
    args: argparse.Namespace,
    pbx: Connection,
    ami_port: int,
    admin: asyncpg.Connection,
    workdir: Path,
) -> dict[str, Any]:
    """One set-up (1 or 2 instances): start, connect the desktops, run the load, count."""
    count = 1 if name == "single" else 2
    db_name, db_url = await new_database(admin)
    prefix = f"cti-bench-{uuid.uuid4().hex[:8]}"
    procs, ports = [], []
    try:
        for i in range(count):
            cluster: dict[str, Any] | None = None
            if count > 1:
                cluster = {"redis_url": REDIS_URL, "key_prefix": prefix, "instance_id": f"i{i}"}
                # Latency, not failover, is measured: a loaded machine's stall must not move
                # the lease in the middle of the run.
                cluster["lease_ttl_s"] = 10.0
            http = free_port()
            text = instance_toml(
                db_url=db_url, ami_port=ami_port, desktops=args.desktops, cluster=cluster
            )
            config = workdir / f"{name}-{i}.toml"
            config.write_text(text.replace("{http_port}", str(http)))
            procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "cti",
                    "run",
                    "-c",
                    str(config),
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=(workdir / f"{name}-{i}.log").open("ab"),
                )
            )
            ports.append(http)
        for port in ports:
            await wait_port(port)
        await asyncio.sleep(3.0)  # the lease taken, AMI logged in and resynced
        parent, child = multiprocessing.Pipe()
        desks = multiprocessing.get_context("spawn").Process(
            target=desktops_process, args=(ports, args.desktops, child), daemon=True
        )
        desks.start()
        try:
            connected: int = await asyncio.to_thread(parent.recv)
            cpu_before = [cpu_s(p.pid) for p in procs] + [await redis_cpu_s()]
            pbx.send((args.cps, args.duration, args.desktops))
            due, lag = await asyncio.to_thread(pbx.recv)
            await asyncio.sleep(2.0)
            cpu_after = [cpu_s(p.pid) for p in procs] + [await redis_cpu_s()]
            parent.send("stop")
            received: list[tuple[str, float]] = await asyncio.to_thread(parent.recv)
        finally:
            desks.join(timeout=10)
        rows = 0
        deadline = time.monotonic() + 60
        conn = await asyncpg.connect(PG_ADMIN.rsplit("/", 1)[0] + "/" + db_name)
        try:
            while time.monotonic() < deadline:  # every call ended: its record is written
                rows = int(await conn.fetchval("SELECT count(*) FROM interactions"))
                if rows >= len(due):
                    break
                await asyncio.sleep(0.5)
        finally:
            await conn.close()
    finally:
        for p in procs:
            if p.returncode is None:
                p.terminate()
        for p in procs:
            await p.wait()
        await admin.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        if count > 1:
            client = aioredis.from_url(REDIS_URL)
            keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
            if keys:
                await client.delete(*keys)
            await client.aclose()
    pops_per_call: dict[str, int] = {}
    for call, _at in received:
        pops_per_call[call] = pops_per_call.get(call, 0) + 1
    latencies = [at - due[call] for call, at in received if call in due]
    return {
        "desktops": connected,
        "placed": len(due),
        "pops": len(received),
        "twice": sum(1 for n in pops_per_call.values() if n > 1),
        "rows": rows,
        "p50": pct(latencies, 0.5),
        "p99": pct(latencies, 0.99),
        "lag": lag * 1000,
        # CPU seconds per 1,000 calls: each instance, then Redis (a machine's saturation shows
        # here first; latencies on a loaded machine move with whatever else runs).
        "cpu": [
            (b - a) * 1000 / max(1, len(due)) for a, b in zip(cpu_before, cpu_after, strict=True)
        ],
    }


async def pops(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    parent, child = multiprocessing.Pipe()
    pbx = multiprocessing.get_context("spawn").Process(
        target=pbx_process, args=(child,), daemon=True
    )
    pbx.start()
    ami_port: int = await asyncio.to_thread(parent.recv)
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        single = await pop_setup("single", args, parent, ami_port, admin, workdir)
        cluster = await pop_setup("cluster", args, parent, ami_port, admin, workdir)
    finally:
        await admin.close()
        parent.send(None)
        pbx.join(timeout=10)
    return {"single": single, "cluster": cluster}


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
    procs, ports = [], []
    try:
        for i in range(3):
            agi = free_port()
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
                        f"port = {free_port()}",
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
        three = await agi_load(ports, args)
        one = await agi_load(ports[:1], args)
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


async def agi_load(ports: list[int], args: argparse.Namespace) -> tuple[int, int, float, float]:
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
    return (len(latencies), failures, pct(latencies, 0.5), pct(latencies, 0.99))


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--cps", type=float, default=300.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--desktops", type=int, default=2000)
    parser.add_argument("--agi-rate", type=float, default=200.0)
    parser.add_argument("--agi-duration", type=float, default=10.0)
    parser.add_argument("--failover", action="store_true", help="the 1,000-call failover run")
    args = parser.parse_args()
    if not TRACE.exists():
        print(f"recorded trace not found at {TRACE}")
        return 1
    with tempfile.TemporaryDirectory(prefix="bench-cluster-pops-") as tmp:
        result = asyncio.run(pops(args, Path(tmp)))
    print(
        f"pop latency at {args.cps:.0f} new calls/s open loop for {args.duration:g} s, "
        f"{args.desktops} desktops (ring due -> pop frame at the desktop, ms):"
    )
    for name, r in result.items():
        where = "1 instance (cti run)" if name == "single" else "2 instances via Redis stream"
        print(
            f"  {where:30} desktops {r['desktops']:5}  calls placed {r['placed']:6}  "
            f"pops {r['pops']:6} (twice {r['twice']})  rows in DB {r['rows']:6}  "
            f"p50 {r['p50']:8.2f}  p99 {r['p99']:8.2f}  driver lag {r['lag']:6.1f}"
        )
        *instances, redis_s = r["cpu"]
        each = " + ".join(f"{c:.2f}" for c in instances)
        print(
            f"  {'':30} CPU s per 1,000 calls: instances {each} = {sum(instances):.2f}"
            f"  (Redis {redis_s:.2f})"
        )
    print(f"load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    short = [n for n, r in result.items() if not r["placed"] == r["pops"] == r["rows"]]
    if short:  # a latency over fewer pops than calls placed is not the figure asked for
        print(f"counts disagree for {', '.join(short)}: those latencies are not valid figures")
        return 1
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        routed = asyncio.run(routing(args, Path(tmp)))
    print(f"routing (FastAGI) at {args.agi_rate:.0f} sessions/s (ms):")
    for name, (count, failures, p50, p99) in routed.items():
        where = "3 instances sharing the load" if name == "three" else "1 instance"
        print(f"  {where:30} ok {count:6}  failed {failures:4}  p50 {p50:7.2f}  p99 {p99:7.2f}")
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
