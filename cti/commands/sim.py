"""`cti sim`: the PBX simulator alone, as a load generator for benchmarks and soak tests.

It serves AMI (the daemon under test connects to it, user/secret from ``[ami]``), calls the
daemon's FastAGI router for every call, and plays ``--agents`` agents spread over the tier
queues. Calls arrive open loop (Poisson) at ``--calls-per-second`` for ``--duration`` seconds;
then calls in progress finish and the figures are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from collections.abc import Awaitable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from cti.config import Config

if TYPE_CHECKING:
    from cti.sim.queue_log import QueueLogWriter
    from cti.sim.simulator import Simulator

HELP = "Run the PBX simulator (AMI server + FastAGI client) as a load generator"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--calls-per-second", type=float, default=1.0, help="arrival rate")
    parser.add_argument("--agents", type=int, default=20, help="simulated agents (0: config's)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of arrivals")
    parser.add_argument(
        "--ami-port", type=int, help="AMI port to serve (default [ami] port; 0: any free port)"
    )
    parser.add_argument(
        "--agi", default=None, help="FastAGI router HOST:PORT (default from [agi]; 'none': skip)"
    )
    parser.add_argument(
        "--time-scale", type=float, default=1.0, help="multiplies ring/talk/patience times"
    )
    parser.add_argument("--seed", type=int, help="random seed")
    parser.add_argument(
        "--no-wait", action="store_true", help="start calls before an AMI client logs in"
    )
    parser.add_argument("--drain", type=float, default=120.0, help="max seconds to let calls end")
    parser.add_argument(
        "--queue-log", help="write Asterisk's queue_log file here, as app_queue writes it"
    )


def _agi_target(text: str | None, config: Config) -> tuple[str | None, int]:
    if text is None:
        host = "127.0.0.1" if config.agi.host in {"0.0.0.0", "::", ""} else config.agi.host
        return host, config.agi.port
    if text.lower() == "none":
        return None, 0
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise SystemExit(f"cti sim: --agi wants HOST:PORT, not {text!r}")
    return host or "127.0.0.1", int(port)


def run(args: argparse.Namespace, config: Config) -> int:
    queue_log = None
    if args.queue_log:
        from pathlib import Path

        from cti.sim.queue_log import QueueLogFile

        queue_log = QueueLogFile(Path(args.queue_log).expanduser())
    return asyncio.run(_sim(args, config, queue_log))


async def _sim(args: argparse.Namespace, config: Config, queue_log: QueueLogWriter | None) -> int:
    from cti.sim.simulator import LADDER, Simulator, generated_agents, settings_from_config

    settings = settings_from_config(
        config,
        ami_port=config.ami.port if args.ami_port is None else args.ami_port,
        time_scale=args.time_scale,
        seed=args.seed,
    )
    agi_host, agi_port = _agi_target(args.agi, config)
    settings.dialplan = replace(settings.dialplan, agi_host=agi_host, agi_port=agi_port)
    if args.agents > 0:
        queues = [config.tiers[t].queue for t in LADDER if t in config.tiers]
        settings.agents = generated_agents(args.agents, queues or ["tier1"])
    settings.queue_log = queue_log
    sim = Simulator(settings)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    generator: asyncio.Task[None] | None = None
    started = time.perf_counter()
    try:
        await sim.start()
        agi = f"agi://{agi_host}:{agi_port}/route" if agi_host else "none (tier1 fallback)"
        print(
            f"cti sim: AMI on 127.0.0.1:{sim.ami_port} (user {config.ami.username!r}), "
            f"FastAGI {agi}, {len(settings.agents)} agents, "
            f"{args.calls_per_second}/s for {args.duration}s",
            flush=True,
        )
        if not args.no_wait:
            print("cti sim: waiting for an AMI client to log in", flush=True)
            assert sim.ami.logged_in is not None
            await _until(stop, sim.ami.logged_in.wait())
        if not stop.is_set():
            started = time.perf_counter()
            generator = asyncio.create_task(sim.generate(args.calls_per_second, args.duration))
            await _until(stop, generator)
            if not stop.is_set():
                await _until(stop, sim.drain(args.drain))
    finally:
        if generator is not None:
            generator.cancel()
            await asyncio.gather(generator, return_exceptions=True)
        elapsed = time.perf_counter() - started
        await sim.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    _print_figures(sim, elapsed)
    return 0


async def _until(stop: asyncio.Event, aw: Awaitable[Any]) -> None:
    """Await ``aw`` unless ``stop`` is set first (then ``aw`` is cancelled)."""
    task = asyncio.ensure_future(aw)
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        if not task.done():
            task.cancel()
        await asyncio.gather(task, stopper, return_exceptions=True)


def _print_figures(sim: Simulator, elapsed: float) -> None:
    counts = sim.counts
    done = sim.summaries
    agi_failed = sum(1 for s in done if s.agi_status == "FAILURE")
    waits = sorted(s.wait_s for s in done if s.wait_s is not None)
    median = waits[len(waits) // 2] if waits else None
    print(
        f"cti sim: {counts['calls']} calls ended in {elapsed:.1f}s: "
        f"{counts['answered']} answered, {counts['abandoned']} abandoned, "
        f"{counts['transfers']} transfers, {agi_failed} without a routing answer (tier1 fallback); "
        f"median wait {median if median is not None else '-'}s; "
        f"{sim.pbx.events_sent} AMI events",
        flush=True,
    )
