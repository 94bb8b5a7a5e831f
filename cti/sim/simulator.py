"""The simulator as one object: PBX state, AMI server, call generator; all tasks owned here."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import structlog

from cti.config import Config
from cti.sim.actions import Actions, AmiUser
from cti.sim.agi import AgiRequest, AgiResult, run_agi
from cti.sim.ami_server import AmiServer
from cti.sim.call import CallSummary, SimCall
from cti.sim.pbx import Pbx, SimQueue
from cti.sim.queue_log import QueueLogWriter
from cti.sim.scenarios import AgentBehaviour, CallerProfile, Dialplan, load_mix, pick_caller

log = structlog.get_logger(__name__)

LADDER = ("tier1", "tier2", "tier3")


@dataclass(frozen=True)
class AgentSpec:
    name: str  # queue MemberName, e.g. "Agent 1001"
    interface: str  # e.g. "Local/1001@agents/n"
    queues: tuple[str, ...]


@dataclass
class SimSettings:
    dialplan: Dialplan = field(default_factory=Dialplan)
    behaviour: AgentBehaviour = field(default_factory=AgentBehaviour)
    callers: list[CallerProfile] = field(default_factory=list)
    users: dict[str, AmiUser] = field(default_factory=lambda: {"cti": AmiUser("cti-secret")})
    ami_host: str = "127.0.0.1"
    ami_port: int = 0
    # Multiplies every simulated delay (ringing, talking, patience); 0.1 runs ten times faster.
    time_scale: float = 1.0
    queue_timeout_s: float = 10.0
    retry_s: float = 1.0
    queues: dict[str, str] = field(
        default_factory=lambda: {"tier1": "rrmemory", "tier2": "ringall", "tier3": "rrmemory"}
    )
    agents: list[AgentSpec] = field(default_factory=list)
    seed: int | None = None
    # Asterisk's queue_log, written as app_queue writes it (None: not kept, as queue_log = no).
    queue_log: QueueLogWriter | None = None


class Simulator:
    def __init__(self, settings: SimSettings) -> None:
        self.settings = settings
        self.rng = random.Random(settings.seed)
        self.pbx = Pbx()
        self.pbx.queue_log = settings.queue_log
        self.actions = Actions(self.pbx, self._spawn, self.rng)
        self.ami = AmiServer(
            self.pbx, self.actions, settings.users, settings.ami_host, settings.ami_port
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self.summaries: list[CallSummary] = []
        self.counts: Counter[str] = Counter()
        self._calls = 0
        for name, strategy in settings.queues.items():
            self.pbx.add_queue(
                SimQueue(
                    name,
                    "ringall" if strategy == "ringall" else "rrmemory",
                    timeout_s=settings.queue_timeout_s,
                    retry_s=settings.retry_s,
                )
            )
        for agent in settings.agents:
            for queue in agent.queues:
                if queue in self.pbx.queues:
                    self.pbx.add_member(queue, agent.name, agent.interface)

    @property
    def ami_port(self) -> int:
        return self.ami.port

    async def start(self) -> None:
        await self.ami.start()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.ami.stop()
        if self.settings.queue_log is not None:
            await self.settings.queue_log.close()

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _agi(self, request: AgiRequest, builtins: dict[str, str], on_set: Any) -> AgiResult:
        dialplan = self.settings.dialplan
        assert dialplan.agi_host is not None
        return await run_agi(
            dialplan.agi_host,
            dialplan.agi_port,
            request,
            builtins=builtins,
            timeout_s=dialplan.agi_timeout_s,
            on_set=on_set,
        )

    def place_call(
        self, profile: CallerProfile | None = None, number: str | None = None
    ) -> asyncio.Task[CallSummary]:
        """Start one inbound call now; the task's result is what happened to it."""
        if profile is None:
            profile, number = pick_caller(self.settings.callers or load_mix(self.rng), self.rng)
        self._calls += 1
        call = SimCall(
            self.pbx,
            self.settings.dialplan,
            self.settings.behaviour,
            self.rng,
            profile,
            number,
            agi=self._agi if self.settings.dialplan.agi_host else None,
            time_scale=self.settings.time_scale,
            label=str(self._calls),
        )

        async def run() -> CallSummary:
            summary = await call.run()
            self.summaries.append(summary)
            self.counts["calls"] += 1
            self.counts[
                "abandoned" if summary.abandoned else "answered" if summary.agents else "other"
            ] += 1
            self.counts["transfers"] += len(summary.transfers)
            return summary

        return self._spawn(run())

    async def generate(self, calls_per_second: float, duration_s: float | None = None) -> None:
        """Open-loop (Poisson) arrivals at ``calls_per_second`` until ``duration_s``/cancel."""
        if calls_per_second <= 0:
            await asyncio.Event().wait() if duration_s is None else await asyncio.sleep(duration_s)
            return
        loop = asyncio.get_running_loop()
        end = None if duration_s is None else loop.time() + duration_s
        next_at = loop.time()
        while end is None or next_at < end:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            self.place_call()
            next_at += self.rng.expovariate(calls_per_second)

    async def drain(self, timeout_s: float) -> None:
        """Wait for calls in progress to finish (at most ``timeout_s``)."""
        calls = [t for t in self._tasks if not t.done()]
        if calls:
            await asyncio.wait(calls, timeout=timeout_s)


def settings_from_config(config: Config, **overrides: Any) -> SimSettings:
    """Queues, agents and transfer extensions from the daemon's config (tiers and agents)."""
    tiers = config.tiers
    transfer = {t.exten: t.queue for t in tiers.values() if t.exten}
    escalation: dict[str, str] = {}
    ladder = [name for name in LADDER if name in tiers]
    for lower, higher in itertools.pairwise(ladder):
        if tiers[higher].exten:
            escalation[tiers[lower].queue] = tiers[higher].exten
    default_tier = str(config.routing.get("default", {}).get("tier", "tier1"))
    default_queue = tiers[default_tier].queue if default_tier in tiers else "tier1"
    agents = [
        AgentSpec(
            a.member or a.name,
            a.interface,
            tuple(tiers[t].queue for t in a.tiers if t in tiers),
        )
        for a in config.agents
        if a.interface and a.role == "agent"
    ]
    queues = {t.queue: ("ringall" if name == "tier2" else "rrmemory") for name, t in tiers.items()}
    agi_host = "127.0.0.1" if config.agi.host in {"0.0.0.0", "::", ""} else config.agi.host
    dialplan = Dialplan(
        default_queue=default_queue,
        agi_host=agi_host,
        agi_port=config.agi.port,
        transfer_context=next((t.context for t in tiers.values()), "transfer"),
        transfer=transfer,
        escalation=escalation,
    )
    users = {config.ami.username: AmiUser(config.ami.secret)}
    settings = SimSettings(dialplan=dialplan, users=users, queues=queues, agents=agents)
    for key, value in overrides.items():
        setattr(settings, key, value)
    return settings


def generated_agents(count: int, queues: list[str]) -> list[AgentSpec]:
    """``count`` agents spread over the queues: half in the first, the rest round the others."""
    agents = []
    for i in range(count):
        queue = (
            queues[0]
            if i % 2 == 0 or len(queues) == 1
            else queues[1 + (i // 2) % (len(queues) - 1)]
        )
        exten = f"{5000 + i}"
        agents.append(AgentSpec(f"Agent {exten}", f"Local/{exten}@agents/n", (queue,)))
    return agents
