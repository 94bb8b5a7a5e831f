"""A daemon restart under load, against the PBX simulator: is every call recorded once, right?

Issue 12 item 8 measured on main: at 20 calls/s, a SIGTERM and a restart 3 s later lost the
calls that ended in between, wrote answered calls as abandoned without queue or agent, and
some ``ended_at`` before ``started_at``. This runs the same: the simulator places calls
(Poisson) for ``--duration`` seconds; at ``--stop-at`` the daemon is stopped (``cti run``,
a real process: SIGTERM) or killed (``--kill``: SIGKILL); ``--down`` seconds later a new
``cti run`` starts on the same database. When every call has
ended it compares the database with what the simulator knows happened::

    .venv/bin/python bench/bench_restart.py [--cps 20] [--duration 20] [--stop-at 8]
        [--down 3] [--kill] [--postgresql] [--time-scale 0.25]

SQLite: a file in a temporary directory; ``--postgresql``: the database
``cti_bench_restart`` on ``$CTI_BENCH_PG`` (default 127.0.0.1:5432), created if missing and
emptied first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import structlog
from sqlalchemy import text

from crm_core.store import CrmStore
from crm_core.testing import empty_store
from cti.config import Config
from cti.sim.scenarios import AgentBehaviour
from cti.sim.simulator import Simulator, generated_agents, settings_from_config

PG_ADMIN = os.environ.get("CTI_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
PG_DB = "cti_bench_restart"


async def pg_url() -> str:
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", PG_DB):
            await admin.execute(f'CREATE DATABASE "{PG_DB}"')
    finally:
        await admin.close()
    dsn = PG_ADMIN.rsplit("/", 1)[0] + "/" + PG_DB
    return dsn.replace("postgresql://", "postgresql+asyncpg://", 1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config_for(db_url: str, ami_port: int, agi_port: int, agents: int) -> Config:
    specs = generated_agents(agents, ["tier1", "tier2", "tier3"])
    return Config.model_validate(
        {
            "ami": {
                "port": ami_port,
                "secret": "cti-secret",
                "reconnect_initial_s": 0.1,
                "reconnect_max_s": 1.0,
                "heartbeat_s": 0.5,
            },
            "agi": {"host": "127.0.0.1", "port": agi_port},
            "http": {"port": 0},
            "database": {"url": db_url},
            "agents": [
                {
                    "name": a.name,
                    "member": a.name,
                    "interface": a.interface,
                    "tiers": list(a.queues),
                }
                for a in specs
            ],
        }
    )


async def wait_logins(sim: Simulator, count: int, within_s: float = 30.0) -> None:
    async with asyncio.timeout(within_s):
        while sim.ami.logins < count:  # noqa: ASYNC110 - a counter another task updates
            await asyncio.sleep(0.05)


async def daemon_process(config_path: Path, log: Path) -> asyncio.subprocess.Process:
    """``cti run``, as an operator starts it."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cti",
        "run",
        "-c",
        str(config_path),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=log.open("ab"),
    )


def toml_config(config: Config) -> str:
    """The config as a TOML file for ``cti run``."""
    ami = config.ami
    lines = [
        "[ami]",
        f"port = {ami.port}",
        f'secret = "{ami.secret}"',
        f"reconnect_initial_s = {ami.reconnect_initial_s}",
        f"reconnect_max_s = {ami.reconnect_max_s}",
        f"heartbeat_s = {ami.heartbeat_s}",
        "[agi]",
        f'host = "{config.agi.host}"',
        f"port = {config.agi.port}",
        "[http]",
        "port = 0",
        "[database]",
        f'url = "{config.database.url}"',
        "[logging]",
        'level = "warning"',
    ]
    for agent in config.agents:
        tiers = ", ".join(f'"{t}"' for t in agent.tiers)
        lines += [
            "[[agents]]",
            f'name = "{agent.name}"',
            f'member = "{agent.member}"',
            f'interface = "{agent.interface}"',
            f"tiers = [{tiers}]",
        ]
    return "\n".join(lines) + "\n"


async def run(args: argparse.Namespace) -> dict[str, Any]:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(args.log_level))
    workdir = Path(tempfile.mkdtemp(prefix="bench-restart-"))
    if args.postgresql:
        db_url = await pg_url()
    else:
        db_url = f"sqlite+aiosqlite:///{workdir / 'restart.db'}"
    await (await empty_store(db_url)).close()
    ami_port, agi_port = free_port(), free_port()
    config = config_for(db_url, ami_port, agi_port, args.agents)
    config_path = workdir / "cti.toml"
    config_path.write_text(toml_config(config))
    log = workdir / "daemon.log"
    behaviour = AgentBehaviour(talk_s=(6.0, 20.0), miss_rate=0.05)
    settings = settings_from_config(
        config, ami_port=ami_port, time_scale=args.time_scale, seed=7, behaviour=behaviour
    )
    settings.agents = generated_agents(args.agents, ["tier1", "tier2", "tier3"])
    sim = Simulator(settings)
    await sim.start()
    first = await daemon_process(config_path, log)
    await wait_logins(sim, 1)
    await asyncio.sleep(1.0)  # its resync, its FastAGI server up
    started = time.monotonic()
    load = asyncio.create_task(sim.generate(args.cps, args.duration))
    await asyncio.sleep(args.stop_at)
    down_from = time.time()
    first.send_signal(signal.SIGKILL if args.kill else signal.SIGTERM)
    await first.wait()
    await asyncio.sleep(args.down)
    second = await daemon_process(config_path, log)
    await wait_logins(sim, 2, within_s=60)
    back_at = time.time()
    await load
    await sim.drain(120)
    await asyncio.sleep(3.0)  # the last events reach the daemon and are written
    second.send_signal(signal.SIGTERM)
    await second.wait()
    elapsed = time.monotonic() - started
    store = await CrmStore.open(db_url)
    async with store.engine.connect() as conn:
        rows = (
            (
                await conn.execute(
                    text(
                        "SELECT call_id, outcome, agents, queues, started_at, ended_at, extra"
                        " FROM interactions"
                    )
                )
            )
            .mappings()
            .all()
        )
        live = (
            await conn.execute(text("SELECT count(*) FROM live_calls WHERE state <> 'ended'"))
        ).scalar_one()
    by_id: dict[str, list[dict[str, Any]]] = {}
    for raw in rows:
        row = dict(raw)
        for key in ("agents", "queues", "extra"):  # JSON comes back as text on SQLite
            if isinstance(row[key], str):
                row[key] = json.loads(row[key])
        by_id.setdefault(row["call_id"], []).append(row)
    report: dict[str, Any] = {
        "calls": len(sim.summaries),
        "lost": 0,
        "lost_began_while_down": 0,
        "written_twice": 0,
        "outcome_unknown": 0,
        "went_unseen": 0,
        "differs_while_unseen": 0,
        "answered_written_otherwise": 0,
        "wrong_agents_or_queues": 0,
        "ended_before_started": 0,
        "ends_estimated": 0,
        "live_rows_left": live,
    }
    for call in sim.summaries:
        found = by_id.get(call.call_id, [])
        if not found:
            began = float(call.call_id.split(".")[0])
            if int(down_from) <= began <= back_at:
                report["lost_began_while_down"] += 1  # nobody saw it: only CDR/CEL know it
            else:
                report["lost"] += 1
                report.setdefault("examples", []).append(
                    ("lost", call.call_id, round(began - down_from), call.agents, call.abandoned)
                )
            continue
        if len(found) > 1:
            report["written_twice"] += 1
        row = found[0]
        if row["outcome"] == "unknown":
            report["outcome_unknown"] += 1  # it went unseen: the record says so
        elif call.agents and row["outcome"] != "answered":
            report["answered_written_otherwise"] += 1
        unseen = (row["extra"] or {}).get("unseen")
        if unseen:
            report["went_unseen"] += 1
            if args.verbose:
                kinds = report.setdefault("unseen_kinds", {})
                key = f"restored={row['extra'].get('restored')} unseen={unseen}"
                kinds[key] = kinds.get(key, 0) + 1
        if row["outcome"] == "answered" and (
            list(row["agents"]) != call.agents or list(row["queues"]) != call.queues
        ):
            report["wrong_agents_or_queues" if not unseen else "differs_while_unseen"] += 1
            if args.verbose:
                report.setdefault("examples", []).append(
                    (
                        call.call_id,
                        call.agents,
                        call.queues,
                        row["outcome"],
                        row["agents"],
                        row["queues"],
                        row["extra"].get("estimated"),
                        row["extra"].get("midway"),
                    )
                )
        if row["started_at"] and row["ended_at"] and row["ended_at"] < row["started_at"]:
            report["ended_before_started"] += 1
        extra = row["extra"] or {}
        if "ended_at" in (extra.get("estimated") or []):
            report["ends_estimated"] += 1
    report["elapsed_s"] = round(elapsed, 1)
    report["down_s"] = round(back_at - down_from, 1)  # stop to the new daemon's login
    report["exit_codes"] = [first.returncode, second.returncode]
    report["daemon_log"] = str(log)
    await sim.stop()
    await store.close()
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cps", type=float, default=20.0)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--stop-at", type=float, default=8.0)
    parser.add_argument("--down", type=float, default=3.0)
    parser.add_argument("--agents", type=int, default=120)
    parser.add_argument("--time-scale", type=float, default=0.25)
    parser.add_argument("--kill", action="store_true")
    parser.add_argument("--postgresql", action="store_true")
    parser.add_argument("--log-level", type=int, default=40)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    report = asyncio.run(run(args))
    for key, value in report.items():
        print(f"{key:28} {value}")
    bad = report["lost"] + report["written_twice"] + report["answered_written_otherwise"]
    return 1 if bad or report["ended_before_started"] else 0


if __name__ == "__main__":
    sys.exit(main())
