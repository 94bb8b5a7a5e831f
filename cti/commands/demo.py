"""`cti demo`: everything on the embedded default, with a simulated PBX and demo data.

It seeds a SQLite CRM on first run (reused afterwards), starts the PBX simulator's AMI server,
the daemon connected to it (FastAGI router, HTTP API, desktop page), prints the desktop URL and
the demo logins, then lets calls arrive until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from dataclasses import replace
from pathlib import Path

import platformdirs
import structlog

from cti.config import Config, ConfigError, load_config
from cti.logsetup import configure_logging

HELP = "Start everything on the embedded default with a simulated PBX and demo data"

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "config" / "demo.toml"
# The clear-text tokens of the demo logins in config/demo.toml (only their hashes are there).
DEMO_LOGINS = (
    ("Agent 1001", "tier 1", "demo-tier1"),
    ("Agent 2001", "tier 2", "demo-tier2"),
    ("Supervisor", "supervisor", "demo-supervisor"),
)
DEMO_CUSTOMERS = 500
READY_TIMEOUT_S = 30.0

log = structlog.get_logger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--http-port", type=int, help="HTTP/desktop port (default 8080)")
    parser.add_argument("--ami-port", type=int, default=0, help="simulator AMI port (default any)")
    parser.add_argument("--agi-port", type=int, help="FastAGI router port (default 4573)")
    parser.add_argument("--db", help="SQLite file for the demo CRM (default: user data dir)")
    parser.add_argument(
        "--calls-per-minute", type=float, default=6.0, help="arrival rate of simulated calls"
    )
    parser.add_argument("--seed", type=int, help="random seed of the simulated calls")


def demo_config(args: argparse.Namespace, config: Config) -> Config:
    """``config/demo.toml`` unless -c/$CTI_CONFIG named another file."""
    if args.config or os.environ.get("CTI_CONFIG"):
        return config
    if not DEMO_CONFIG.is_file():
        raise ConfigError(f"{DEMO_CONFIG}: the demo configuration is missing (use -c FILE)")
    return load_config(DEMO_CONFIG)


def demo_db_url(args: argparse.Namespace, config: Config) -> str:
    if args.db:
        return f"sqlite+aiosqlite:///{Path(args.db).expanduser().resolve()}"
    if config.database.url:
        return config.database_url
    return f"sqlite+aiosqlite:///{Path(platformdirs.user_data_dir('cti')) / 'demo.db'}"


def run(args: argparse.Namespace, config: Config) -> int:
    config = demo_config(args, config)
    configure_logging(args.log_level or config.logging.level, config.logging.format)
    try:
        return asyncio.run(_demo(args, config))
    except KeyboardInterrupt:
        return 0
    except OSError as exc:  # typically a port already in use
        print(
            f"cti demo: {exc}; is another demo or daemon running? "
            "choose other ports with --http-port/--agi-port/--ami-port",
            file=sys.stderr,
        )
        return 1


async def _open_store(url: str, config: Config) -> tuple[object, str]:
    from crm_core.seed import seed
    from crm_core.store import CrmStore

    store = await CrmStore.open(
        url,
        region=config.phone.default_region,
        internal_max_digits=config.phone.internal_max_digits,
    )
    where = url.split(":///", 1)[-1]
    existing = await store.count_customers()
    if existing:
        return store, f"reusing {existing} customers in {where}"
    report = await seed(store, DEMO_CUSTOMERS, progress=False)
    return store, f"seeded {report.customers + report.demo_customers} demo customers into {where}"


async def _demo(args: argparse.Namespace, config: Config) -> int:
    from crm_core.seed import DEMO_NUMBERS, DEMO_UNKNOWN_NUMBER
    from cti.daemon import build_daemon
    from cti.gctune import tune_for_service
    from cti.sim.scenarios import demo_mix, random_numbers
    from cti.sim.simulator import Simulator, settings_from_config

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    store, store_note = await _open_store(demo_db_url(args, config), config)
    settings = settings_from_config(config, ami_port=args.ami_port, seed=args.seed)
    sim = Simulator(settings)
    settings.callers = demo_mix(
        DEMO_NUMBERS, (DEMO_UNKNOWN_NUMBER, *random_numbers(sim.rng, 20, "+44161496"))
    )
    daemon = None
    generator: asyncio.Task[None] | None = None
    try:
        await sim.start()
        ami = config.ami.model_copy(update={"host": "127.0.0.1", "port": sim.ami_port})
        daemon = await build_daemon(
            config.model_copy(update={"ami": ami}),
            store=store,
            http_port=args.http_port,
            agi_port=args.agi_port,
        )
        await daemon.start()
        settings.dialplan = replace(
            settings.dialplan, agi_host="127.0.0.1", agi_port=daemon.agi_port or 4573
        )
        await _wait_for_ami(daemon)
        tune_for_service()
        _print_banner(daemon.http_port, config, store_note, sim.ami_port, daemon.agi_port)
        sim.place_call()  # the first call at once, then the configured rate
        generator = asyncio.create_task(sim.generate(args.calls_per_minute / 60.0))
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait({waiter, generator}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if generator.done() and not generator.cancelled() and generator.exception():
            raise generator.exception()  # type: ignore[misc]
        print("cti demo: stopping", flush=True)
    finally:
        if generator is not None:
            generator.cancel()
            await asyncio.gather(generator, return_exceptions=True)
        if daemon is not None:
            await daemon.stop()
        await sim.stop()
        await store.close()  # type: ignore[attr-defined]
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    print("cti demo: stopped", flush=True)
    return 0


async def _wait_for_ami(daemon: object) -> None:
    """Calls start once the daemon is logged in to the simulator and has resynced."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_TIMEOUT_S
    while getattr(daemon, "resyncs", 1) < 1:
        if loop.time() > deadline:
            raise RuntimeError("the daemon did not connect to the simulated PBX in time")
        await asyncio.sleep(0.05)


def _print_banner(
    http_port: int | None, config: Config, store_note: str, ami_port: int, agi_port: int | None
) -> None:
    host = "127.0.0.1" if config.http.host in {"0.0.0.0", "::", ""} else config.http.host
    url = f"http://{host}:{http_port}/"
    lines = [
        "",
        "cti demo: a simulated Asterisk is sending calls to the CTI daemon",
        f"  CRM:            {store_note}",
        f"  simulated PBX:  AMI on 127.0.0.1:{ami_port}, FastAGI router on port {agi_port}",
        f"  agent desktop:  {url}",
        "  demo logins (paste the token on the desktop page):",
        *(f"    {name:<12} {role:<11} token {token}" for name, role, token in DEMO_LOGINS),
        "  Ctrl-C stops everything.",
        "",
        f"cti demo: ready at {url}",
    ]
    print("\n".join(lines), flush=True)
    sys.stdout.flush()
