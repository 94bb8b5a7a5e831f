"""Pop latency: from a call event reaching the daemon's event flow to the WebSocket frame
received by the agent's desktop, with N desktops connected and R new calls a second (open loop).

Two implementations measured in the same run, with the same desktops (in a separate process)
and the same call load:

- ``cti``: the real path: ``LiveCalls.apply`` (context + 360° view from an in-memory CRM) →
  ``PopHub.publish`` → per-desktop bounded queue → ``/ws`` sender of ``cti.http.create_app``
  (token auth, JSON messages with ids);
- ``bare``: the simplest thing that does the job: a dict agent → aiohttp WebSocket and one
  ``send_str(json.dumps(payload))`` of the same pop payload to the agent's socket.

Each tick (every 1/R s) one call is offered and queued, the call offered 0.2 s earlier rings an
agent (the measured pop), the one from 1 s earlier is answered and the one from 2 s earlier
ends, so every desktop also gets ``answered``/``ended`` traffic. Latency is measured with
CLOCK_MONOTONIC, shared by both processes: the ring's send time travels in the call id.

    .venv/bin/python bench/bench_pop.py                       # 300 calls/s, 500 desktops, 10 s
    .venv/bin/python bench/bench_pop.py --rate 100 --seconds 3 --desktops 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crm_core.types import (
    Candidate,
    CaseView,
    CustomerView,
    InteractionView,
    OrderView,
    Resolution,
)
from cti.calls import LiveCalls
from cti.config import AgentConfig, Config
from cti.http import ApiDeps, create_app
from cti.http.auth import hash_token
from cti.hub import PopHub
from cti.logsetup import configure_logging
from cti.tracker.events import CallEvent

RING_AFTER = 0.2
ANSWER_AFTER = 1.0
END_AFTER = 2.0


def token(i: int) -> str:
    return f"bench-token-{i}"


def member(i: int) -> str:
    return f"Agent {1000 + i}"


VIEW = CustomerView(
    customer_id=1,
    external_id="C1",
    name="Ada Lovelace",
    kind="person",
    organisation=None,
    language="en",
    email="ada@example.com",
    address="1 High Street, London",
    phones=(),
    flags=("vip", "hearing_impaired"),
    highlights=("vip", "hearing_impaired"),
    open_cases=tuple(
        CaseView(10 + n, "Broadband drops hourly", "open", "tier1", "Fibre", None, "")
        for n in range(2)
    ),
    orders=tuple(
        OrderView(20 + n, f"ORD-{n}", "shipped", "in_transit", "TRK", None) for n in range(3)
    ),
    products=("Fibre 500", "TV"),
    interactions=tuple(
        InteractionView(30 + n, None, "inbound", "tier1", "tier1", "Agent 1", "answered", "", "")
        for n in range(5)
    ),
)


class Crm:
    """An in-memory CRM: every caller is the same customer (the store's cost is not measured)."""

    def __init__(self, view: Any = VIEW) -> None:
        self._view = view

    async def resolve(self, caller_id: str | None) -> Resolution:
        return Resolution("match", caller_id, caller_id or "", (Candidate(1, "C1", VIEW.name),))

    async def view(self, customer_id: int) -> CustomerView | None:
        view: CustomerView | None = self._view
        return view


class PlainView:
    """The view with its ``to_dict()`` already done: what a faster crm_core serialiser gives."""

    def __init__(self) -> None:
        self._data = VIEW.to_dict()

    def to_dict(self) -> dict[str, Any]:
        return self._data

    async def search(self, query: str, limit: int = 20) -> list[Any]:
        return []


class NoAmi:
    async def setvar(self, variable: str, value: str, *, channel: str | None = None) -> Any: ...
    async def redirect(
        self, channel: str, *, context: str, exten: str, priority: int = 1
    ) -> Any: ...
    async def blind_transfer(self, channel: str, *, exten: str, context: str) -> Any: ...
    async def originate(self, channel: str, **kw: Any) -> Any: ...
    async def queue_add(
        self, queue: str, interface: str, *, member_name: str | None = None
    ) -> Any: ...
    async def queue_remove(self, queue: str, interface: str) -> Any: ...
    async def queue_pause(self, interface: str, paused: bool, **kw: Any) -> Any: ...


# ---- the two servers --------------------------------------------------------------------------

Feed = Callable[[int, str, str, dict[str, Any]], Awaitable[None]]


async def cti_server(
    desktops: int, view: Any = VIEW
) -> tuple[web.AppRunner, int, Feed, Callable[[], int]]:
    agents = [
        AgentConfig(
            name=member(i),
            member=member(i),
            interface=f"Local/{1000 + i}@agents",
            token_sha256=hash_token(token(i)),
        )
        for i in range(desktops)
    ]
    config = Config(agents=agents)
    hub = PopHub(config.agents)
    calls = LiveCalls(directory=Crm(view), tiers_by_queue={"tier1": "tier1"}, grace_s=1.0)
    app = create_app(ApiDeps(config=config, hub=hub, calls=calls, crm=Crm(), ami=NoAmi()))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]

    async def feed(_agent: int, call: str, event: str, data: dict[str, Any]) -> None:
        ev = CallEvent(call, event, time.time(), data)  # type: ignore[arg-type]
        ctx = await calls.apply(ev)
        hub.publish(ev, ctx)

    return runner, port, feed, hub.connected


async def bare_server(desktops: int) -> tuple[web.AppRunner, int, Feed, Callable[[], int]]:
    sockets: dict[str, web.WebSocketResponse] = {}
    view = VIEW.to_dict()
    seq = iter(range(1, 1 << 62))

    async def ws_handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        who = request.query["token"].removeprefix("bench-token-")
        sockets[member(int(who))] = ws
        await ws.send_str('{"type":"hello"}')
        async for _ in ws:
            pass
        sockets.pop(member(int(who)), None)
        return ws

    app = web.Application()
    app.router.add_get("/ws", ws_handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]

    async def feed(agent: int, call: str, event: str, data: dict[str, Any]) -> None:
        if event not in ("ringing", "answered", "ended"):
            return
        ws = sockets.get(member(agent))
        if ws is None:
            return
        kind = {"ringing": "pop"}.get(event, event)
        payload = {"id": next(seq), "type": kind, "call_id": call, "call": {"view": view}}
        await ws.send_str(json.dumps(payload))

    return runner, port, feed, lambda: len(sockets)


# ---- the desktops (another process) -----------------------------------------------------------


async def desktops_main(port: int, count: int, pipe: Connection) -> None:
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def desktop(i: int) -> None:
            async with session.ws_connect(f"http://127.0.0.1:{port}/ws?token={token(i)}") as ws:
                async for msg in ws:
                    now = time.monotonic()
                    data = json.loads(msg.data)
                    if data.get("type") == "pop":
                        latencies.append(now - float(data["call_id"].split("@")[1]))

        tasks = [asyncio.create_task(desktop(i)) for i in range(count)]
        pipe.send("connected")
        await asyncio.to_thread(pipe.recv)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    pipe.send(latencies)


def desktops_process(port: int, count: int, pipe: Connection) -> None:
    asyncio.run(desktops_main(port, count, pipe))


# ---- the call load ----------------------------------------------------------------------------


async def run_load(feed: Feed, rate: float, seconds: float, desktops: int) -> tuple[int, float]:
    """Open loop: tick n at start + n/rate; returns (pops sent, worst lag behind schedule)."""
    ring_lag, answer_lag, end_lag = (round(rate * s) for s in (RING_AFTER, ANSWER_AFTER, END_AFTER))
    total = int(rate * seconds)
    names: dict[int, str] = {}
    loop = asyncio.get_running_loop()
    start = loop.time()
    mono_start = time.monotonic() - (loop.time() - start)
    worst = 0.0
    pops = 0
    for n in range(total + end_lag):
        target = start + n / rate
        delay = target - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        else:  # behind schedule: still let the loop run between ticks, as socket reads do
            worst = max(worst, -delay)
            await asyncio.sleep(0)
        if n < total:
            names[n] = f"c{n}"
            agent = n % desktops
            await feed(agent, names[n], "offered", {"caller": "+442071234567", "uniqueid": f"c{n}"})
            await feed(agent, names[n], "queued", {"queue": "tier1", "position": 1})
        r = n - ring_lag
        if 0 <= r < total:
            agent = r % desktops
            iface = f"Local/{1000 + agent}@agents"
            # The ring's scheduled time travels in the call id: a server that falls behind its
            # open-loop schedule pays for it in the latency (no coordinated omission).
            due = mono_start + n / rate
            await feed(
                agent,
                names[r],
                "ringing",
                {"queue": "tier1", "member": member(agent), "interface": iface, "_due": due},
            )
            pops += 1
        a = n - answer_lag
        if 0 <= a < total:
            agent = a % desktops
            iface = f"Local/{1000 + agent}@agents"
            await feed(agent, names[a], "answered", {"agent": member(agent), "interface": iface})
        e = n - end_lag
        if 0 <= e < total:
            await feed(e % desktops, names.pop(e), "ended", {"hangup_by": "caller"})
    return pops, worst


async def stamped(feed: Feed) -> Feed:
    """Name each call ``cN@<monotonic time of its ring>``: the desktop reads the send time."""
    renamed: dict[str, str] = {}

    async def wrapper(agent: int, call: str, event: str, data: dict[str, Any]) -> None:
        if event == "ringing":
            renamed[call] = f"{call}@{data.pop('_due'):.6f}"
        name = renamed.get(call, f"{call}@0")
        if event == "ended":
            renamed.pop(call, None)
        await feed(agent, name, event, data)

    return wrapper


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def measure(name: str, build: Any, args: argparse.Namespace) -> dict[str, Any]:
    runner, port, feed, connected = await build(args.desktops)
    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.get_context("spawn").Process(
        target=desktops_process, args=(port, args.desktops, child), daemon=True
    )
    proc.start()
    try:
        await asyncio.to_thread(parent.recv)
        deadline = time.monotonic() + 30
        while connected() < args.desktops and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        ready = connected()
        cpu = time.process_time()
        pops, worst = await run_load(await stamped(feed), args.rate, args.seconds, args.desktops)
        await asyncio.sleep(0.5)
        cpu = time.process_time() - cpu
        parent.send("stop")
        latencies: list[float] = await asyncio.to_thread(parent.recv)
    finally:
        proc.join(timeout=10)
        await runner.cleanup()
    return {
        "name": name,
        "desktops": ready,
        "pops": pops,
        "received": len(latencies),
        "p50": pct(latencies, 0.50) if latencies else float("nan"),
        "p90": pct(latencies, 0.90) if latencies else float("nan"),
        "p99": pct(latencies, 0.99) if latencies else float("nan"),
        "max": max(latencies) * 1000 if latencies else float("nan"),
        "mean": statistics.fmean(latencies) * 1000 if latencies else float("nan"),
        "lag": worst * 1000,
        "cpu_per_call": cpu / max(pops, 1) * 1000,
    }


async def main(args: argparse.Namespace) -> None:
    results = []

    async def cti_plain_view(desktops: int) -> Any:
        return await cti_server(desktops, PlainView())

    impls = (("bare", bare_server), ("cti", cti_server), ("cti*", cti_plain_view))
    for name, build in impls:
        if args.only and name != args.only:
            continue
        results.append(await measure(name, build, args))
    print(
        f"pop latency, {args.rate:g} new calls/s open loop for {args.seconds:g} s, "
        f"{args.desktops} desktops (event into the flow -> WebSocket frame at the desktop)"
    )
    print(
        f"{'impl':6} {'desktops':>8} {'pops':>6} {'recv':>6} {'p50 ms':>7} {'p90 ms':>7} "
        f"{'p99 ms':>7} {'max ms':>7} {'sched lag ms':>12} {'server cpu ms/call':>18}"
    )
    for r in results:
        print(
            f"{r['name']:6} {r['desktops']:>8} {r['pops']:>6} {r['received']:>6} {r['p50']:>7.2f} "
            f"{r['p90']:>7.2f} {r['p99']:>7.2f} {r['max']:>7.2f} {r['lag']:>12.1f} "
            f"{r['cpu_per_call']:>18.3f}"
        )
    load = os.getloadavg()[0]
    print("cti* = cti with the CRM's 360° view serialised once in advance (crm_core to_dict cost)")
    print(f"target: cti p99 < 25 ms; load average now {load:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=300.0, help="new calls a second")
    parser.add_argument("--desktops", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--only", choices=["bare", "cti", "cti*"])
    configure_logging("warning")
    asyncio.run(main(parser.parse_args()))
