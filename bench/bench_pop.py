"""Pop latency: from a call's ring reaching the daemon to the WebSocket frame received by the
agent's desktop, with N desktops connected and R new calls a second (open loop).

Implementations measured in the same run, with the same desktops (500 WebSocket clients in a
separate process) and the same call load:

- ``bare``: the simplest thing that does the job: a dict agent → aiohttp WebSocket and one
  ``send_str(json.dumps(payload))`` of the same pop payload to the agent's socket;
- ``cti``: the daemon's event flow from the tracker's call event on: ``LiveCalls.apply``
  (context + 360° view from an in-memory CRM) → ``PopHub.publish`` → per-desktop bounded queue
  → ``/ws`` sender of ``cti.http.create_app`` (token auth, JSON messages with ids);
- ``cti*``: the same with the CRM's view serialised in advance (isolates crm_core's to_dict);
- ``daemon`` (needs ../shared): the whole daemon (``cti.daemon.build_daemon``): AMI bytes from a
  fake Asterisk 22 in a third process (events of the recorded ``answered_tier1`` call, renamed
  per call) → AmiClient → tracker → live calls → hub → /ws; latency from the ``AgentCalled``
  block's scheduled send time.

Each tick (every 1/R s) one call is offered and queued; the call offered 0.2 s earlier rings an
agent (the measured pop), the one from 1 s earlier is answered and the one from 2 s earlier
ends, so every desktop also gets ``answered``/``ended`` traffic. Latencies start at the ring's
*scheduled* time (no coordinated omission: a server that falls behind pays for it) and are
measured with CLOCK_MONOTONIC, which all processes share.

    .venv/bin/python bench/bench_pop.py                       # 300 calls/s, 500 desktops, 10 s
    .venv/bin/python bench/bench_pop.py --rate 100 --seconds 3 --desktops 50 --only daemon
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import multiprocessing
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
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

ROOT = Path(__file__).resolve().parent.parent
TRACE = ROOT.parent / "shared" / "ami-traces" / "asterisk22" / "answered_tier1.json"
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


# ---- the servers ----------------------------------------------------------------------------

Feed = Callable[[int, str, str, dict[str, Any]], Awaitable[None]]


@dataclass
class Target:
    """A server under test: its port, how many desktops it has, and how to drive its load."""

    port: int
    connected: Callable[[], int]
    # (rate, seconds, desktops) -> (ring due time by call id, worst lag behind schedule)
    run: Callable[[float, float, int], Awaitable[tuple[dict[str, float], float]]]
    close: Callable[[], Awaitable[None]]


def bench_agents(desktops: int) -> list[AgentConfig]:
    return [
        AgentConfig(
            name=member(i),
            member=member(i),
            interface=f"Local/{1000 + i}@agents",
            token_sha256=hash_token(token(i)),
        )
        for i in range(desktops)
    ]


async def serve(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, int(runner.addresses[0][1])


def in_process(
    runner: web.AppRunner, port: int, feed: Feed, connected: Callable[[], int]
) -> Target:
    async def run(rate: float, seconds: float, desktops: int) -> tuple[dict[str, float], float]:
        return await run_load(feed, rate, seconds, desktops)

    return Target(port, connected, run, runner.cleanup)


async def cti_server(desktops: int, view: Any = VIEW) -> Target:
    config = Config(agents=bench_agents(desktops))
    hub = PopHub(config.agents)
    calls = LiveCalls(directory=Crm(view), tiers_by_queue={"tier1": "tier1"}, grace_s=1.0)
    app = create_app(ApiDeps(config=config, hub=hub, calls=calls, crm=Crm(), ami=NoAmi()))
    runner, port = await serve(app)

    async def feed(_agent: int, call: str, event: str, data: dict[str, Any]) -> None:
        ev = CallEvent(call, event, time.time(), data)  # type: ignore[arg-type]
        ctx = await calls.apply(ev)
        hub.publish(ev, ctx)

    return in_process(runner, port, feed, hub.connected)


async def cti_plain_view(desktops: int) -> Target:
    return await cti_server(desktops, PlainView())


async def bare_server(desktops: int) -> Target:
    sockets: dict[str, web.WebSocketResponse] = {}
    view = VIEW.to_dict()
    seq = iter(range(1, 1 << 62))

    async def ws_handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        who = member(int(request.query["token"].removeprefix("bench-token-")))
        sockets[who] = ws
        await ws.send_str('{"type":"hello"}')
        async for _ in ws:
            pass
        sockets.pop(who, None)
        return ws

    app = web.Application()
    app.router.add_get("/ws", ws_handler)
    runner, port = await serve(app)

    async def feed(agent: int, call: str, event: str, data: dict[str, Any]) -> None:
        if event not in ("ringing", "answered", "ended"):
            return
        ws = sockets.get(member(agent))
        if ws is None:
            return
        kind = {"ringing": "pop"}.get(event, event)
        payload = {"id": next(seq), "type": kind, "call_id": call, "call": {"view": view}}
        await ws.send_str(json.dumps(payload))

    return in_process(runner, port, feed, lambda: len(sockets))


class MemStore(Crm):
    """The daemon's store: the in-memory CRM, interactions dropped."""

    async def search(self, query: str, limit: int = 20) -> list[Any]:
        return []

    async def record_interaction(self, record: Any) -> None:
        return None

    async def close(self) -> None:
        return None


async def daemon_server(desktops: int) -> Target:
    from cti.config import AmiConfig, HttpConfig
    from cti.daemon import build_daemon
    from cti.gctune import tune_for_service

    parent, child = multiprocessing.Pipe()
    pbx = multiprocessing.get_context("spawn").Process(
        target=pbx_process, args=(child,), daemon=True
    )
    pbx.start()
    ami_port: int = await asyncio.to_thread(parent.recv)
    config = Config(
        agents=bench_agents(desktops),
        ami=AmiConfig(port=ami_port, username="cti", secret="cti-secret"),
        http=HttpConfig(port=0),
    )
    daemon = await build_daemon(config, store=MemStore(), http_port=0, agi_port=0, grace_s=1.0)
    await daemon.start()
    tune_for_service()  # as `cti run` does once started

    async def run(rate: float, seconds: float, desktops: int) -> tuple[dict[str, float], float]:
        parent.send((rate, seconds, desktops))
        result: tuple[dict[str, float], float] = await asyncio.to_thread(parent.recv)
        return result

    async def close() -> None:
        await daemon.stop()
        parent.send(None)
        pbx.join(timeout=10)

    return Target(daemon.http_port or 0, daemon.parts.hub.connected, run, close)


# ---- the fake PBX (another process): recorded AMI events, renamed per call ----------------------

_SEQ = re.compile(r"^17953945\d\d\.(\d+)$")
_AGENT = re.compile(r"\b1001\b")


def load_phases() -> list[list[dict[str, str]]]:
    """The recorded call cut in four: offer+queue, ring, answer, hang-up."""
    events = [e for e in json.loads(TRACE.read_text()) if e["Event"] not in ("VarSet", "Newexten")]
    ring = next(i for i, e in enumerate(events) if e.get("Channel", "").startswith("Local/1001@"))
    ring_ts = float(events[ring]["Timestamp"])
    answer = next(
        i for i in range(ring, len(events)) if float(events[i]["Timestamp"]) > ring_ts + 1
    )
    hangup = next(i for i, e in enumerate(events) if e["Event"] == "SoftHangupRequest")
    return [events[:ring], events[ring:answer], events[answer:hangup], events[hangup:]]


def render(events: list[dict[str, str]], n: int, agent: int) -> bytes:
    """Call n's copy as AMI bytes: its own uniqueids/linkedid and channel names, ringing agent
    ``agent``; ``Timestamp`` is left as a placeholder filled in when sent."""
    ext = str(1000 + agent)
    blocks = []
    for event in events:
        lines = []
        for key, value in event.items():
            if key == "Timestamp":
                value = "@TS@"
            elif key.endswith("BridgeUniqueid"):  # each call has its own bridge
                value = f"{value[:-12]}{n:012x}"
            elif match := _SEQ.match(value):
                value = f"{8_000_000 + n}.{match.group(1)}"
            value = value.replace("-00000000", f"-{2 * n:08x}")
            value = value.replace("-00000001", f"-{2 * n + 1:08x}")
            lines.append(f"{key}: {_AGENT.sub(ext, value)}\r\n")
        blocks.append("".join(lines) + "\r\n")
    return "".join(blocks).encode()


_PHASE = {"offered": 0, "ringing": 1, "answered": 2, "ended": 3}


def _pbx_feed(ami: Any, rendered: list[list[bytes]]) -> Feed:
    async def feed(agent: int, call: str, event: str, data: dict[str, Any]) -> None:
        phase = _PHASE.get(event)
        if phase is not None:
            stamp = f"{time.time():.6f}".encode()
            await ami.send_raw(rendered[int(call[1:])][phase].replace(b"@TS@", stamp))

    return feed


async def pbx_main(pipe: Connection) -> None:
    """A fake Asterisk (login, resync) whose call events are pre-rendered bytes written on time."""
    sys.path.insert(0, str(ROOT / "tests"))
    from fakes.ami_server import FakeAmiServer

    phases = load_phases()
    async with FakeAmiServer() as ami:
        pipe.send(ami.port)
        while (job := await asyncio.to_thread(pipe.recv)) is not None:
            rate, seconds, desktops = job
            total = int(rate * seconds)
            rendered = [[render(phase, n, n % desktops) for phase in phases] for n in range(total)]
            due, lag = await run_load(_pbx_feed(ami, rendered), rate, seconds, desktops)
            pipe.send(({f"{8_000_000 + int(c[1:])}.0": t for c, t in due.items()}, lag))


def pbx_process(pipe: Connection) -> None:
    configure_logging("warning")
    asyncio.run(pbx_main(pipe))


# ---- the desktops (another process) -----------------------------------------------------------


async def desktops_main(port: int, count: int, pipe: Connection) -> None:
    received: list[tuple[str, float]] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def desktop(i: int) -> None:
            async with session.ws_connect(f"http://127.0.0.1:{port}/ws?token={token(i)}") as ws:
                async for msg in ws:
                    now = time.monotonic()
                    data = json.loads(msg.data)
                    if data.get("type") == "pop":
                        received.append((data["call_id"], now))

        tasks = [asyncio.create_task(desktop(i)) for i in range(count)]
        pipe.send("connected")
        await asyncio.to_thread(pipe.recv)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    pipe.send(received)


def desktops_process(port: int, count: int, pipe: Connection) -> None:
    asyncio.run(desktops_main(port, count, pipe))


# ---- the call load ----------------------------------------------------------------------------


async def run_load(
    feed: Feed, rate: float, seconds: float, desktops: int
) -> tuple[dict[str, float], float]:
    """Open loop: tick n at start + n/rate. Returns each ring's scheduled time by call id, and
    the worst lag of the driver behind its schedule."""
    ring_lag, answer_lag, end_lag = (round(rate * s) for s in (RING_AFTER, ANSWER_AFTER, END_AFTER))
    total = int(rate * seconds)
    loop = asyncio.get_running_loop()
    start = loop.time()
    mono_start = time.monotonic() - (loop.time() - start)
    worst = 0.0
    due: dict[str, float] = {}
    for n in range(total + end_lag):
        delay = start + n / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        else:  # behind schedule: still let the loop run between ticks, as socket reads do
            worst = max(worst, -delay)
            await asyncio.sleep(0)
        if n < total:
            agent = n % desktops
            await feed(agent, f"c{n}", "offered", {"caller": "+442071234567", "uniqueid": f"c{n}"})
            await feed(agent, f"c{n}", "queued", {"queue": "tier1", "position": 1})
        r = n - ring_lag
        if 0 <= r < total:
            agent = r % desktops
            due[f"c{r}"] = mono_start + n / rate
            iface = f"Local/{1000 + agent}@agents"
            await feed(
                agent,
                f"c{r}",
                "ringing",
                {"queue": "tier1", "member": member(agent), "interface": iface},
            )
        a = n - answer_lag
        if 0 <= a < total:
            agent = a % desktops
            iface = f"Local/{1000 + agent}@agents"
            await feed(agent, f"c{a}", "answered", {"agent": member(agent), "interface": iface})
        e = n - end_lag
        if 0 <= e < total:
            await feed(e % desktops, f"c{e}", "ended", {"hangup_by": "caller"})
    return due, worst


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def measure(name: str, build: Any, args: argparse.Namespace) -> dict[str, Any]:
    target: Target = await build(args.desktops)
    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.get_context("spawn").Process(
        target=desktops_process, args=(target.port, args.desktops, child), daemon=True
    )
    proc.start()
    try:
        await asyncio.to_thread(parent.recv)
        deadline = time.monotonic() + 30
        while target.connected() < args.desktops and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        ready = target.connected()
        profiler = cProfile.Profile() if args.profile else None
        cpu = time.process_time()
        if profiler is not None:
            profiler.enable()
        due, worst = await target.run(args.rate, args.seconds, args.desktops)
        await asyncio.sleep(0.5)
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(f"{args.profile}.{name.strip('*')}")
        cpu = time.process_time() - cpu
        parent.send("stop")
        received: list[tuple[str, float]] = await asyncio.to_thread(parent.recv)
    finally:
        proc.join(timeout=10)
        await target.close()
    latencies = [at - due[call] for call, at in received if call in due]
    nan = float("nan")
    return {
        "name": name,
        "desktops": ready,
        "pops": len(due),
        "received": len(latencies),
        "p50": pct(latencies, 0.50) if latencies else nan,
        "p90": pct(latencies, 0.90) if latencies else nan,
        "p99": pct(latencies, 0.99) if latencies else nan,
        "max": max(latencies) * 1000 if latencies else nan,
        "lag": worst * 1000,
        "cpu_per_call": cpu / max(len(due), 1) * 1000,
    }


IMPLS = {"bare": bare_server, "cti": cti_server, "cti*": cti_plain_view, "daemon": daemon_server}


async def main(args: argparse.Namespace) -> None:
    results = []
    for name, build in IMPLS.items():
        if args.only and name not in args.only:
            continue
        if name == "daemon" and not TRACE.exists():
            print(f"daemon: skipped, recorded trace not found at {TRACE}")
            continue
        results.append(await measure(name, build, args))
    print(
        f"pop latency, {args.rate:g} new calls/s open loop for {args.seconds:g} s, "
        f"{args.desktops} desktops (ring due -> WebSocket frame at the desktop)"
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
    print(f"target: p99 < 25 ms; load average now {load:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=300.0, help="new calls a second")
    parser.add_argument("--desktops", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--only", nargs="+", choices=list(IMPLS), help="run only these")
    parser.add_argument(
        "--profile", metavar="PREFIX", help="cProfile the server process: PREFIX.<impl> stats"
    )
    parser.add_argument(
        "--uvloop", action="store_true", help="run the servers on uvloop (pip install uvloop)"
    )
    configure_logging("warning")
    options = parser.parse_args()
    factory = None
    if options.uvloop:
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main(options))
