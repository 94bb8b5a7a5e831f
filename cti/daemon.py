"""The composition root: the one place that builds the daemon from its config and runs it.

``build_daemon(config)`` wires CRM store → router + decision log → FastAGI server, and
AMI client → call tracker → live calls (+ interaction recorder) → pop hub → HTTP app. Nothing
else constructs collaborators. ``Daemon.start()`` brings the parts up in dependency order and
``stop()`` unwinds them in reverse; every task the daemon starts is owned and cancelled on stop.

The event flow is one loop: each raw AMI event → ``tracker.feed`` → each call event →
``live_calls.apply`` → ``hub.publish``; after every (re)connect the AMI client reports
``Resynced(items)`` and the tracker adopts or closes calls from Asterisk's own state.

Ports 0 are allowed; the bound ports are ``http_port`` and ``agi_port`` once started. When
everything is up the daemon logs ``daemon.ready`` (with the ports) and sets ``ready``.
"""

from __future__ import annotations

import asyncio
import functools
import signal
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from aiohttp import web

from crm_core.phone import to_e164
from crm_core.types import CustomerDirectory
from cti.ami.errors import AmiError
from cti.ami.stream import Connected, Disconnected, Resynced
from cti.calls import LiveCalls
from cti.config import Config
from cti.gctune import tune_for_service
from cti.hub import PopHub
from cti.interactions import InteractionRecorder, InteractionStore
from cti.routing.http import route_handler
from cti.supervisor.service import Supervision
from cti.tracker.events import CallEvent
from cti.tracker.tracker import CallTracker

log = structlog.get_logger(__name__)

_MARKERS = (Resynced, Connected, Disconnected)  # the AMI stream's items that are not events


class AmiSource(Protocol):
    """The AMI connection (``cti.ami.client.AmiClient``) as the daemon drives it."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def events(self) -> AsyncIterator[Any]: ...


class Tracker(Protocol):
    def feed(self, event: Any) -> list[CallEvent]: ...

    def resync(self, items: Any) -> Any: ...


@dataclass
class Parts:
    """Everything the daemon is made of (tests reach in through ``Daemon.parts``)."""

    config: Config
    store: Any  # crm_core.CrmStore (or a connector): resolve/view/search/record_interaction
    tracker: Tracker
    calls: LiveCalls
    recorder: InteractionRecorder
    hub: PopHub
    decisions: Any  # cti.routing.decisions.DecisionLog
    router: Any  # cti.routing.router.Router
    agi: Any  # cti.agi.server.FastAgiServer
    ami: AmiSource | None
    app: web.Application
    owns_store: bool = True
    supervision: Supervision | None = None  # statistics and the supervisor console


class Daemon:
    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        self.ready = asyncio.Event()
        self.stopped = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._pump: asyncio.Task[None] | None = None
        self._started: list[str] = []
        self.events_in = 0
        self.call_events = 0
        self.errors = 0
        self.resyncs = 0

    # ---- lifetime --------------------------------------------------------------------------

    async def start(self) -> None:
        """Bring everything up; on failure, what was started is stopped again and it raises."""
        p = self.parts
        try:
            await p.recorder.start()
            self._started.append("recorder")
            if p.supervision is not None:
                await p.supervision.start()
                self._started.append("supervision")
            await p.agi.start()
            self._started.append("agi")
            self._runner = web.AppRunner(p.app, handle_signals=False, access_log=None)
            await self._runner.setup()
            self._site = web.TCPSite(self._runner, p.config.http.host, p.config.http.port)
            await self._site.start()
            self._started.append("http")
            if p.ami is not None:
                await p.ami.start()
                self._started.append("ami")
                self._pump = asyncio.create_task(self._pump_events(p.ami), name="ami-events")
        except BaseException:
            await self.stop()
            raise
        self.ready.set()
        log.info("daemon.ready", http_port=self.http_port, agi_port=self.agi_port)

    async def stop(self) -> None:
        """Stop in reverse order of start; safe to call twice."""
        p = self.parts
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)
            self._pump = None
        while self._started:
            part = self._started.pop()
            try:
                if part == "ami" and p.ami is not None:
                    await p.ami.stop()
                elif part == "http" and self._runner is not None:
                    await self._runner.cleanup()
                    self._runner = self._site = None
                elif part == "agi":
                    await p.agi.stop()
                elif part == "supervision" and p.supervision is not None:
                    await p.supervision.stop()
                elif part == "recorder":
                    await p.calls.close()
                    await p.recorder.stop()
            except Exception as exc:
                log.error("daemon.stop_failed", part=part, error=repr(exc))
        aclose = getattr(p.router, "aclose", None)
        if callable(aclose):
            await aclose()
        if p.owns_store and hasattr(p.store, "close"):
            await p.store.close()
            p.owns_store = False
        self.ready.clear()
        self.stopped.set()

    async def __aenter__(self) -> Daemon:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def http_port(self) -> int | None:
        addresses = self._runner.addresses if self._runner is not None else []
        return int(addresses[0][1]) if addresses else None

    @property
    def agi_port(self) -> int | None:
        try:
            return int(self.parts.agi.port)
        except RuntimeError:
            return None

    # ---- the event flow --------------------------------------------------------------------

    async def _pump_events(self, ami: AmiSource) -> None:
        batches = getattr(ami, "event_batches", None)
        if callable(batches):
            async for batch in batches():
                await self._pump_batch(batch)
        else:
            async for item in ami.events():
                await self._pump_batch((item,))

    async def _pump_batch(self, items: Iterable[Any]) -> None:
        """Items in order; raw events (nearly all of them) take the short path."""
        feed = self.parts.tracker.feed
        handle = self.handle
        for item in items:
            if not isinstance(item, _MARKERS):
                self.events_in += 1
                try:
                    events = feed(item)
                except Exception as exc:  # the tracker tolerates bad input; never stop the flow
                    self.errors += 1
                    log.error("tracker.failed", error=repr(exc), event=item.get("Event"))
                    continue
                for event in events:
                    await handle(event)
            elif isinstance(item, Resynced):
                for event in await self._resync(item.items):
                    await handle(event)
                if self.parts.supervision is not None:
                    self.parts.supervision.resynced()
                self.resyncs += 1
                log.info("ami.resynced", calls=len(self.parts.calls.active()))
            elif isinstance(item, Connected):
                log.info("ami.connected")
            else:
                log.warning("ami.disconnected")

    async def _resync(self, items: Any) -> list[CallEvent]:
        result = self.parts.tracker.resync(items)
        if asyncio.iscoroutine(result):
            result = await result
        return list(result or ())

    async def handle(self, event: CallEvent) -> None:
        """One call event: update the live call, then tell the desktops."""
        self.call_events += 1
        try:
            ctx = await self.parts.calls.apply(event)
            self.parts.hub.publish(event, ctx)
            if self.parts.supervision is not None:
                self.parts.supervision.apply(event, ctx)
        except Exception as exc:
            self.errors += 1
            log.error("call_event.failed", call_id=event.call, event=event.event, error=repr(exc))

    # ---- running as a process ----------------------------------------------------------------

    async def run_until_signal(self) -> int:
        """Start, run until SIGINT/SIGTERM, then stop cleanly: 0, or 1 if the AMI flow failed."""
        loop = asyncio.get_running_loop()
        stop_requested = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop_requested.set)
        status = 0
        try:
            await self.start()
            tune_for_service()
            waiter = asyncio.create_task(stop_requested.wait(), name="wait-signal")
            watched: set[asyncio.Task[Any]] = {waiter}
            if self._pump is not None:
                watched.add(self._pump)
            await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            pump = self._pump
            if pump is not None and pump.done() and not pump.cancelled() and pump.exception():
                log.error("ami.events_failed", error=repr(pump.exception()))
                status = 1
            log.info("daemon.stopping")
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            await self.stop()
            log.info("daemon.stopped")
        return status


def tiers_by_queue(config: Config) -> dict[str, str]:
    return {tier.queue: name for name, tier in config.tiers.items()}


async def build_daemon(
    config: Config,
    *,
    store: Any | None = None,
    directory: CustomerDirectory | None = None,
    ami: AmiSource | None = None,
    tracker: Tracker | None = None,
    http_port: int | None = None,
    agi_port: int | None = None,
    grace_s: float = 120.0,
) -> Daemon:
    """Build (not start) the daemon. ``store``/``ami``/``tracker`` replace the ones built here;
    ``http_port``/``agi_port`` override the config (0 picks a free port)."""
    from crm_core.store import CrmStore
    from cti.agi.server import FastAgiServer
    from cti.http import ApiDeps, create_app
    from cti.routing.decisions import DecisionLog
    from cti.routing.router import Router
    from cti.routing.rules import load_rules

    updates: dict[str, Any] = {}
    if http_port is not None:
        updates["http"] = config.http.model_copy(update={"port": http_port})
    if agi_port is not None:
        updates["agi"] = config.agi.model_copy(update={"port": agi_port})
    if updates:
        config = config.model_copy(update=updates)

    owns_store = store is None
    if store is None:
        store = await CrmStore.from_config(config)
    try:
        crm: Any = directory or store
        rules = load_rules(config)
        decisions = DecisionLog()
        router = Router(crm, rules, deadline_s=config.agi.deadline_ms / 1000)
        agi = FastAgiServer(router, decisions, config.agi.host, config.agi.port)
        recorder = InteractionRecorder(_as_interaction_store(store))
        calls = LiveCalls(
            directory=crm,
            decisions=decisions,
            recorder=recorder,
            tiers_by_queue=tiers_by_queue(config),
            grace_s=grace_s,
        )
        hub = PopHub(config.agents)
        if ami is None and config.ami.enabled:
            from cti.ami.client import AmiClient

            ami = AmiClient(config.ami)
        tracker = tracker or _new_tracker(config)
        actions: Any = ami if ami is not None else _NoAmi()
        supervision = _supervision(config, hub, calls, store, actions)
        deps = ApiDeps(
            config=config,
            hub=hub,
            calls=calls,
            crm=crm,
            ami=actions,
            ami_errors=(AmiError, ConnectionError, TimeoutError),
            ami_connected=lambda: bool(getattr(actions, "connected", False)),
            db_ok=_db_ok(store),
            route_handler=route_handler(router, decisions),
            supervision=supervision,
        )
        app = create_app(deps)
    except BaseException:
        if owns_store:
            await store.close()
        raise
    parts = Parts(
        config=config,
        store=store,
        tracker=tracker,
        calls=calls,
        recorder=recorder,
        hub=hub,
        decisions=decisions,
        router=router,
        agi=agi,
        ami=ami,
        app=app,
        owns_store=owns_store,
        supervision=supervision,
    )
    return Daemon(parts)


def _supervision(
    config: Config, hub: PopHub, calls: LiveCalls, store: Any, actions: Any
) -> Supervision:
    """Statistics, the console, spying and recordings; legs and the audit log are written
    where the store's engine is (a store without one: live statistics only)."""
    from cti.stats.period import report_engine
    from cti.stats.store import StatsRecorder
    from cti.supervisor.audit import AuditLog
    from cti.supervisor.listen import Supervise

    engine = getattr(store, "engine", None)
    recorder = StatsRecorder(engine) if engine is not None else None
    supervise = Supervise(config.supervisor, actions, AuditLog(engine)) if engine else None
    reports = report_engine(engine.url.render_as_string(hide_password=False)) if engine else None
    return Supervision(
        config,
        hub,
        calls,
        tiers_by_queue=tiers_by_queue(config),
        recorder=recorder,
        engine=engine,
        supervise=supervise,
        report_engine=reports,
    )


class _NoAmi:
    """Actions when AMI is disabled in the config: each fails with a clear message."""

    connected = False

    def __getattr__(self, name: str) -> Any:
        async def refuse(*_args: Any, **_kwargs: Any) -> Any:
            raise ConnectionError("AMI is disabled in the configuration ([ami] enabled = false)")

        return refuse


def _as_interaction_store(store: Any) -> InteractionStore:
    if not callable(getattr(store, "record_interaction", None)):
        raise TypeError(f"{type(store).__name__} cannot record interactions")
    result: InteractionStore = store
    return result


def _new_tracker(config: Config) -> CallTracker:
    region = config.phone.default_region

    # Callers ring again and again: normalise each caller ID once, not on every call.
    @functools.lru_cache(maxsize=8192)
    def normalise(raw: str) -> str | None:
        return to_e164(raw, region)

    return CallTracker(normalise=normalise)


def _db_ok(store: Any) -> Any:
    ping = getattr(store, "ping", None)
    if not callable(ping):
        return None

    async def db_ok() -> bool:
        try:
            async with asyncio.timeout(2.0):
                await ping()
        except Exception:
            return False
        return True

    return db_ok
