"""How much load the PBX simulator can generate: calls/s and AMI events/s to one AMI reader.

``cti sim`` is the load generator of the other benchmarks and of soak tests, so its own ceiling
must sit well above the rates they ask for. Measured in the same run, same rate, same reader:

- ``replay``: the simplest event source: the recorded ``answered_tier1`` call (bytes of
  ``../shared/ami-traces/asterisk22/answered_tier1.ami``, ids renamed per call) written to the
  socket at each arrival; no state, no timers, no FastAGI;
- ``sim``: the simulator: per call a Local pair from the trunk, queue, agents that ring, answer
  and hang up (time scale ``--scale``), events built and encoded per AMI session (no FastAGI:
  the tier1 fallback, so that only the simulator is measured).

Arrivals are open loop at ``--rate`` calls/s; ``lag`` is how late each arrival was placed after
its scheduled time (a generator that falls behind shows it here), ``cpu/call`` the process CPU
time per call (both sides share the process: the reader only counts bytes). The replay leaves
out VarSet/Newexten/DeviceStateChange, which the simulator does not send either; events/s is
over the whole run, including the simulator's wait for its last calls to end.

    .venv/bin/python bench/bench_sim.py                    # 50, 200 calls/s, 5 s each
    .venv/bin/python bench/bench_sim.py --rate 500 --seconds 3
"""

from __future__ import annotations

import argparse
import asyncio
import re
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cti.logsetup import configure_logging
from cti.sim.scenarios import AgentBehaviour, CallerProfile, Dialplan
from cti.sim.simulator import SimSettings, Simulator, generated_agents

TRACE = Path(__file__).resolve().parents[2] / "shared/ami-traces/asterisk22/answered_tier1.ami"
CALLER = CallerProfile("known", ("+442071234567",), patience_s=(600.0, 600.0))


class Reader:
    """An AMI client that logs in and counts event blocks until the server closes."""

    def __init__(self) -> None:
        self.events = 0
        self.bytes = 0

    async def run(self, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await reader.readline()
        writer.write(b"Action: Login\r\nUsername: cti\r\nSecret: cti-secret\r\nEvents: on\r\n\r\n")
        while chunk := await reader.read(1 << 16):
            self.bytes += len(chunk)
            self.events += chunk.count(b"\r\nEvent: ") + chunk.startswith(b"Event: ")
        writer.close()


async def _arrivals(rate: float, seconds: float, place: object) -> list[float]:
    loop = asyncio.get_running_loop()
    lags: list[float] = []
    start = loop.time()
    n = int(rate * seconds)
    for i in range(n):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        lags.append(loop.time() - due)
        place(i)  # type: ignore[operator]
    return lags


async def bench_sim(rate: float, seconds: float, scale: float) -> dict[str, float]:
    settings = SimSettings(
        dialplan=Dialplan(agi_host=None),
        behaviour=AgentBehaviour(miss_rate=0.1),
        agents=generated_agents(max(20, int(rate * 20 * scale * 2)), ["tier1", "tier2", "tier3"]),
        time_scale=scale,
        seed=1,
    )
    sim = Simulator(settings)
    await sim.start()
    reader = Reader()
    reading = asyncio.create_task(reader.run(sim.ami_port))
    await asyncio.sleep(0.1)
    cpu, wall = time.process_time(), time.perf_counter()
    lags = await _arrivals(rate, seconds, lambda _i: sim.place_call(CALLER, CALLER.numbers[0]))
    await sim.drain(60)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await sim.stop()
    await asyncio.wait_for(reading, 10)
    return _figures(len(lags), lags, cpu, wall, reader)


async def bench_replay(rate: float, seconds: float) -> dict[str, float]:
    skip = (b"Event: VarSet", b"Event: Newexten", b"Event: DeviceStateChange")  # sim sends none
    blocks = [
        b
        for b in TRACE.read_bytes().split(b"\r\n\r\n")
        if b.startswith(b"Event: ") and not b.startswith(skip)
    ]
    template = b"".join(b + b"\r\n\r\n" for b in blocks)
    # Split once at every uniqueid so that each call only joins fragments with its own ids.
    fragments = re.split(rb"\b(1795394\d+\.\d+)\b", template)
    ids = {old: n for n, old in enumerate(dict.fromkeys(fragments[1::2]))}
    writers: list[asyncio.StreamWriter] = []
    logged_in = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"Asterisk Call Manager/11.0.0\r\n")
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"Response: Success\r\nMessage: Authentication accepted\r\n\r\n")
        writers.append(writer)
        logged_in.set()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader = Reader()
    reading = asyncio.create_task(reader.run(port))
    await asyncio.wait_for(logged_in.wait(), 5)
    out = writers[0]

    def place(i: int) -> None:
        renamed = {old: f"{1900000000 + i}.{n}".encode() for old, n in ids.items()}
        parts = [renamed[f] if k % 2 else f for k, f in enumerate(fragments)]
        out.write(b"".join(parts))

    cpu, wall = time.process_time(), time.perf_counter()
    lags = await _arrivals(rate, seconds, place)
    await out.drain()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    out.close()
    server.close()
    await asyncio.wait_for(reading, 10)
    return _figures(len(lags), lags, cpu, wall, reader)


def _figures(
    calls: int, lags: list[float], cpu: float, wall: float, reader: Reader
) -> dict[str, float]:
    ordered = sorted(lags)
    return {
        "calls": calls,
        "events": reader.events,
        "events_per_s": reader.events / wall,
        "lag_p50_ms": 1000 * statistics.median(ordered),
        "lag_p99_ms": 1000 * ordered[int(0.99 * (len(ordered) - 1))],
        "cpu_per_call_ms": 1000 * cpu / calls,
        "wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, action="append", help="calls/s (repeatable)")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--scale", type=float, default=0.05, help="simulator time scale")
    args = parser.parse_args()
    configure_logging("warning")
    with socket.socket() as s:  # fail early when loopback is unusable
        s.bind(("127.0.0.1", 0))
    print(f"{'impl':<7}{'rate/s':>8}{'calls':>7}{'events':>9}{'events/s':>10}"
          f"{'lag p50':>10}{'lag p99':>10}{'cpu/call':>10}")  # fmt: skip
    for rate in args.rate or [50.0, 200.0]:
        runs = [("sim", bench_sim(rate, args.seconds, args.scale))]
        if TRACE.is_file():
            runs.insert(0, ("replay", bench_replay(rate, args.seconds)))
        for name, coro in runs:
            f = asyncio.run(coro)
            print(
                f"{name:<7}{rate:>8.0f}{f['calls']:>7.0f}{f['events']:>9.0f}"
                f"{f['events_per_s']:>10.0f}{f['lag_p50_ms']:>8.2f}ms{f['lag_p99_ms']:>8.2f}ms"
                f"{f['cpu_per_call_ms']:>8.2f}ms",
                flush=True,
            )


if __name__ == "__main__":
    main()
