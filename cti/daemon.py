"""The composition root: the one place that builds the daemon from its config and runs it.

``build_daemon(config)`` wires CRM store (or the ``[[directories]]`` chain around it) → router +
decision log → FastAGI server, and
AMI client → call tracker → live calls (+ interaction recorder) → pop hub → HTTP app. Nothing
else constructs collaborators. ``Daemon.start()`` brings the parts up in dependency order and
``stop()`` unwinds them in reverse; every task the daemon starts is owned and cancelled on stop.

The event flow is one loop: each raw AMI event → ``tracker.feed`` → each call event →
``live_calls.apply`` → ``hub.publish`` (→ ``events_out.publish`` into the outbox of webhooks,
bus and CRM write-back, when configured; supervision's alerts go there too, through
``Supervision.on_alert``); after every (re)connect the AMI client reports
``Resynced(items)`` and the tracker adopts or closes calls from Asterisk's own state.

Restarts (``cti.callstate``): the live call contexts are kept in the database as they change
(``live_calls``, keyed by ``[ami] pbx_id`` and call id) with a heartbeat of when the PBX was
last in view. At start the daemon takes them back; the first resync adopts those Asterisk
still has with their real start, answer, queues, agents and routing, and closes the others
as ended while the daemon was down (at the last moment they were known up, estimated). A
link lost while the daemon runs dates the end of the calls that vanish meanwhile. With
``[queue_log]`` (with ``[[pbx]]``: each PBX's ``queue_log``), that resync (after a start, a
takeover or a lost link) also starts ``cti.queuelog``'s backfill of that PBX: the queue calls
nobody saw are recorded from its queue_log, and those seen in part completed; their queue
legs go to the statistics (``call_legs``) and today's live figures. At a start (one instance)
or a takeover, today's live figures count the PBX's calls that ended before, from their legs
in the database. A resync
list Asterisk refuses makes ``/healthz`` not ok, with the reason and a metric.

Several PBXs (``[[pbx]]``, ``cti.cluster.pbxs``): this daemon is the first PBX's and owns
everything shared; each other PBX has a daemon of its own in ``others`` that runs only its
ingest (``ingest_only``: its AMI link with PBX-qualified ids, tracker, call-state writer,
queue_log backfill and, with several instances, lease), whose events take the same flow into
the shared live calls, hub, supervision and recorder.

AMI actions from the API go to the PBX of the call or of the agent's phone (``PbxLinks``,
``cti.pbx_actions``); with several instances, those for a PBX another instance ingests go
through it (``cti.cluster.relay``), which also answers ``/api/stats/live`` for its PBXs.

Ports 0 are allowed; the bound ports are ``http_port`` and ``agi_port`` once started. When
everything is up the daemon logs ``daemon.ready`` (with the ports) and sets ``ready``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import signal
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import platformdirs
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry

from crm_core.phone import to_e164
from crm_core.types import CustomerDirectory
from cti.ami.errors import AmiError
from cti.ami.stream import Connected, Disconnected, Resynced
from cti.callback_feed import CallbackFeed, CallbackNews, queue_agents
from cti.calls import CallContext, LiveCalls, saved_context
from cti.callstate import CallStateWriter, PbxClock, SavedCall, Snapshot, SqlCallState
from cti.channel_sweep import ChannelLister, ChannelSweep, ChannelTracker
from cti.cluster.forward import HttpForward
from cti.cluster.instance import EXIT_LEASE_LOST, ClusterParts, build_cluster
from cti.cluster.livestats import live_everywhere
from cti.cluster.pbxs import CallStateByPbx, QualifiedAmi, UnqualifiedDecisions
from cti.config import AmiConfig, Config
from cti.dead_letters import DeadLetterFile
from cti.gctune import tune_for_service
from cti.hub import PopHub
from cti.interactions import InteractionRecorder, InteractionStore
from cti.logsetup import suppressed_warnings
from cti.metrics import AmiLinkCounts, DaemonCollector, MetricSources
from cti.pbx_actions import PbxLinks
from cti.queuelog.backfill import (
    BackfillReport,
    Flushable,
    LiveFigures,
    QueueLogBackfill,
    Sink,
)
from cti.routing.http import route_handler
from cti.supervisor.listen import SPY_EVENTS
from cti.supervisor.service import Supervision
from cti.tracker.events import CallEvent
from cti.tracker.tracker import CallTracker

log = structlog.get_logger(__name__)

# The exit status when interaction records were lost (not written, not in the dead-letter file).
EXIT_RECORDS_LOST = 3

_MARKERS = (Resynced, Connected, Disconnected)  # the AMI stream's items that are not events


class AmiSource(Protocol):
    """The AMI connection (``cti.ami.client.AmiClient``) as the daemon drives it."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def events(self) -> AsyncIterator[Any]: ...


class Tracker(Protocol):
    def feed(self, event: Any) -> list[CallEvent]: ...

    def resync(
        self,
        items: Any,
        *,
        now: float | None = None,
        lost_at: float | None = None,
        known: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> Any: ...


@dataclass
class ResyncHealth:
    """The last AMI resync as ``/healthz`` and ``/metrics`` report it (updated by the daemon)."""

    refused: dict[str, str] = field(default_factory=dict)  # action -> Asterisk's message
    retries: Callable[[], int] = lambda: 0  # resyncs asked again while Asterisk was starting

    def status(self) -> dict[str, Any]:
        refused = dict(self.refused)
        status: dict[str, Any] = {"ok": not refused, "refused": refused, "retries": self.retries()}
        if refused:
            names = ", ".join(f"{a} ({m})" for a, m in sorted(refused.items()))
            status["reason"] = (
                f"Asterisk refused the resync actions {names}: calls are not adopted after a "
                "restart; give the AMI user the classes they need (see the README)"
            )
        return status


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
    # Connectors: the chain of [[directories]] (None: the store alone), the outbox of events
    # out and write-backs (None: nothing configured), and what feeds call events into it.
    directory: Any = None
    outbox: Any = None
    events_out: Any = None
    sweep: ChannelSweep | None = None  # expires channels Asterisk no longer reports
    call_state: CallStateWriter | None = None
    pbx_clock: PbxClock = field(default_factory=PbxClock)
    resync: ResyncHealth = field(default_factory=ResyncHealth)
    supervision: Supervision | None = None  # statistics and the supervisor console
    ivr: Any = None  # cti.routing.ivr.IvrFlow, when [ivr] enabled
    callbacks: CallbackFeed | None = None  # callers who gave up → callback tasks
    cluster: ClusterParts | None = None  # several instances ([cluster]); None: one instance
    # Several PBXs ([[pbx]]): this PBX's call ids start with ``call_prefix``; the daemon of a
    # PBX after the first runs only its ingest (``ingest_only``), the rest is the first's.
    call_prefix: str = ""
    ingest_only: bool = False
    queue_log: QueueLogBackfill | None = None  # calls no daemon saw, from Asterisk's queue_log


class Daemon:
    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        self.ready = asyncio.Event()
        self.stopped = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._pump: asyncio.Task[None] | None = None
        self._role: asyncio.Task[None] | None = None  # several instances: standby / ingest
        self._sweeper: asyncio.Task[None] | None = None
        self._backfill: asyncio.Task[Any] | None = None  # queue_log: what nobody saw
        self._counting: asyncio.Task[None] | None = None  # today's legs read back at a takeover
        self._backfill_from: float | None = None  # the PBX last known observed (restored)
        self._backfill_since = 0.0  # where the running backfill reads from
        self._started: list[str] = []
        self.events_in = 0
        self.call_events = 0
        self.errors = 0
        self.resyncs = 0
        self._lost_at: float | None = None  # PBX time the calls were last known up, if lost
        self._in_batch = False  # the pump is handling a batch (a stop lets it finish)
        self.others: list[Daemon] = []  # several PBXs: the ingest of each PBX after the first

    # ---- lifetime --------------------------------------------------------------------------

    async def start(self) -> None:
        """Bring everything up; on failure, what was started is stopped again and it raises."""
        p = self.parts
        if p.ingest_only:
            await self._start_ingest()
            return
        try:
            if p.outbox is not None:  # before the recorder: it stops after, taking its drain
                await p.outbox.start()
                self._started.append("outbox")
            await p.recorder.start()
            self._started.append("recorder")
            if p.call_state is not None and p.cluster is None:
                await self._restore(p.call_state)
                self._started.append("call_state")
            if p.supervision is not None:
                await p.supervision.start()
                self._started.append("supervision")
            if p.callbacks is not None:
                p.callbacks.start()
                self._started.append("callbacks")
            await p.agi.start()
            self._started.append("agi")
            self._runner = web.AppRunner(p.app, handle_signals=False, access_log=None)
            await self._runner.setup()
            self._site = web.TCPSite(self._runner, p.config.http.host, p.config.http.port)
            await self._site.start()
            self._started.append("http")
            if p.cluster is not None:
                await p.cluster.fanout.start(
                    p.hub.deliver_local, p.hub.deliver_console, p.hub.consoles
                )
                self._started.append("fanout")
                if p.cluster.relay is not None:  # actions for this instance's PBXs (stops with it)
                    await p.cluster.relay.start()
                self._role = asyncio.create_task(p.cluster.role.run(self._ingest), name="role")
            elif p.ami is not None:
                await self._start_ami(p.ami)
                self._count_today()
            for other in self.others:
                await other.start()
        except BaseException:
            await self.stop()
            raise
        self.ready.set()
        log.info("daemon.ready", http_port=self.http_port, agi_port=self.agi_port)

    async def _start_ingest(self) -> None:
        """A PBX after the first (``[[pbx]]``): its lease, or its calls and AMI link."""
        p = self.parts
        try:
            if p.cluster is not None:
                self._role = asyncio.create_task(p.cluster.role.run(self._ingest), name="role")
            elif p.ami is not None:
                if p.call_state is not None:
                    await self._restore(p.call_state)
                    self._started.append("call_state")
                await self._start_ami(p.ami)
                self._count_today()
        except BaseException:
            await self.stop()
            raise
        self.ready.set()

    def watched(self) -> list[asyncio.Task[Any]]:
        """The tasks whose end stops the process: each PBX's event pump and lease role."""
        return [t for d in (self, *self.others) for t in (d._pump, d._role) if t is not None]

    async def _start_ami(self, ami: AmiSource) -> None:
        await ami.start()
        self._started.append("ami")
        self._pump = asyncio.create_task(self._pump_events(ami), name="ami-events")
        self._start_sweep(ami)

    async def _ingest(self, token: int) -> None:
        """Several instances: this one holds the PBX's lease (fencing ``token``) from now on.
        The database learns the token first (an older ingester's writes are refused from
        here), then the calls are taken back as after a restart and Asterisk resynced; today's
        statistics count the PBX's calls ended before, from their legs in the database."""
        p = self.parts
        assert p.cluster is not None
        await p.cluster.fanout.caught_up()
        adopted = p.hub.adopt_replay(only=p.call_prefix)
        if p.call_state is not None:
            await p.cluster.claim(token)
            await self._restore(p.call_state)
            self._started.append("call_state")
        log.info("cluster.taking_over", token=token, desktop_calls=adopted)
        if p.ami is not None:
            await self._start_ami(p.ami)
        self._count_today()

    def _count_today(self) -> None:
        """This instance ingests the PBX from now on (a start, a takeover): today's statistics
        count its calls that ended before, from their legs in the database (of this PBX only,
        ``call_prefix``, with several)."""
        p = self.parts
        if p.supervision is not None and (self._counting is None or self._counting.done()):
            # Beside the events, not before them: reading a busy day's legs takes a second.
            counting = p.supervision.count_today(p.call_prefix)
            self._counting = asyncio.create_task(counting, name="stats-today")

    async def stop(self) -> None:
        """Stop in reverse order of start; safe to call twice."""
        p = self.parts
        for other in reversed(self.others):
            await other.stop()
        if self._role is not None:
            self._role.cancel()
            await asyncio.gather(self._role, return_exceptions=True)
            self._role = None
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
        if self._backfill is not None:
            self._backfill.cancel()
            await asyncio.gather(self._backfill, return_exceptions=True)
            self._backfill = None
        if self._counting is not None:
            self._counting.cancel()
            await asyncio.gather(self._counting, return_exceptions=True)
            self._counting = None
        if self._pump is not None:
            await self._drain_events(p.ami)
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)
            self._pump = None
        # No new requests, then the parts that write to the database, side by side: with the
        # database down each waits out its own deadline, and one after the other they took
        # 17-22 s, past docker's 10 s and systemd's 20 s before the unwritten records were saved.
        for part in ("http", "agi"):
            await self._stop_part(part)
        # call_state before the AMI link closes: while it is up, now is when the calls were
        # last seen. The outbox after the recorder: it takes the recorder's drain.
        await asyncio.gather(
            self._stop_part("call_state"),
            self._stop_part("callbacks"),
            self._stop_part("supervision"),
            self._stop_parts("recorder", "outbox"),
        )
        while self._started:
            await self._stop_part(self._started[-1])
        aclose = getattr(p.router, "aclose", None)
        if callable(aclose) and not p.ingest_only:
            await aclose()
        if p.directory is not None:
            await p.directory.close()
            p.directory = None
        if p.cluster is not None:
            await p.cluster.close()  # an orderly stop gives the lease up at once
        if p.queue_log is not None:
            await p.queue_log.source.close()
        if p.owns_store and hasattr(p.store, "close"):
            await p.store.close()
            p.owns_store = False
        self.ready.clear()
        self.stopped.set()

    async def _stop_parts(self, *parts: str) -> None:
        for part in parts:
            await self._stop_part(part)

    async def _stop_part(self, part: str) -> None:
        """Stop one started part (logged, never raised: the others still stop)."""
        if part not in self._started:
            return
        self._started.remove(part)
        p = self.parts
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
            elif part == "callbacks" and p.callbacks is not None:
                await p.callbacks.stop()
            elif part == "recorder":
                await p.calls.close()
                await p.recorder.stop()
            elif part == "outbox":
                await p.outbox.stop()
            elif part == "fanout" and p.cluster is not None:
                await p.cluster.fanout.stop()
            elif part == "call_state" and p.call_state is not None:
                await p.call_state.stop(link_up=bool(getattr(p.ami, "connected", False)))
        except Exception as exc:
            log.error("daemon.stop_failed", part=part, error=repr(exc))

    def _start_sweep(self, ami: AmiSource) -> None:
        sweep, tracker = self.parts.sweep, self.parts.tracker
        if (
            sweep is None
            or sweep.interval_s <= 0
            or not isinstance(ami, ChannelLister)
            or not isinstance(tracker, ChannelTracker)
        ):
            return
        self._sweeper = asyncio.create_task(
            sweep.run(ami, tracker, self.handle, lambda: bool(getattr(ami, "connected", False))),
            name="ami-channel-check",
        )

    async def _drain_events(self, ami: Any, within_s: float = 2.0) -> None:
        """Let the pump take in what Asterisk already sent (up to ``within_s``), so that the
        calls that began just before a stop are known, and kept, when it stops."""
        if self._pump is None or self._pump.done() or not hasattr(ami, "backlog"):
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while (ami.backlog or self._in_batch) and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)  # the pump empties the backlog

    async def __aenter__(self) -> Daemon:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def http_port(self) -> int | None:
        addresses = self._runner.addresses if self._runner is not None else []
        return int(addresses[0][1]) if addresses else None

    def http_address(self) -> tuple[str, int] | None:
        """The HTTP server's bound host and port (None: not started)."""
        addresses = self._runner.addresses if self._runner is not None else []
        return (str(addresses[0][0]), int(addresses[0][1])) if addresses else None

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

    async def _restore(self, writer: CallStateWriter) -> None:
        """Take back the calls a previous run kept (see the module docstring)."""
        p = self.parts
        set_aside = p.recorder.set_aside()  # before the recorder writes any of them back
        try:
            snapshot = await writer.load()
        except Exception as exc:  # the database down: calls are adopted from Asterisk alone
            log.error("daemon.calls_not_restored", error=repr(exc), pbx=writer.pbx_id)
            snapshot = Snapshot()
        live = p.calls.restore(
            {c.call_id: c.context for c in snapshot.calls},
            snapshot.last_known_up,
            set_aside=set_aside,
        )
        self._lost_at = snapshot.last_known_up
        self._backfill_from = snapshot.last_known_up  # queue_log is read from then
        writer.link_up = lambda: bool(getattr(p.ami, "connected", False))
        writer.start()
        if snapshot.calls:
            log.info(
                "daemon.calls_restored",
                pbx=writer.pbx_id,
                open=len(live),
                last_known_up=snapshot.last_known_up,
            )

    @property
    def resync_refused(self) -> dict[str, str]:
        """The resync lists Asterisk refused at the last (re)connect."""
        return self.parts.resync.refused

    async def _pump_batch(self, items: Iterable[Any]) -> None:
        """Items in order; raw events (nearly all of them) take the short path."""
        cluster = self.parts.cluster
        if cluster is not None and not cluster.ingesting(items):
            return  # the lease is gone: the next ingester resyncs from Asterisk
        self._in_batch = True
        try:
            await self._pump_items(items)
        finally:
            self._in_batch = False

    async def _pump_items(self, items: Iterable[Any]) -> None:
        feed = self.parts.tracker.feed
        handle = self.handle
        supervision = self.parts.supervision
        spy = supervision.supervise if supervision is not None else None
        self.parts.pbx_clock.observe(getattr(self.parts.tracker, "last_ts", None))
        for item in items:
            if not isinstance(item, _MARKERS):
                self.events_in += 1
                if spy is not None and item.get("Event") in SPY_EVENTS:
                    spy.ami_event(item)  # a spy session ends with its spyer (listen.py)
                try:
                    events = feed(item)
                except Exception as exc:  # the tracker tolerates bad input; never stop the flow
                    self.errors += 1
                    log.error("tracker.failed", error=repr(exc), event=item.get("Event"))
                    continue
                for event in events:
                    await handle(event)
            elif isinstance(item, Resynced):
                await self._resynced(item)
                if self.parts.supervision is not None:
                    self.parts.supervision.resynced()
            elif isinstance(item, Connected):
                log.info("ami.connected")
            else:
                clock = self.parts.pbx_clock
                self._lost_at = clock.at(item.at) if item.at is not None else clock.now()
                log.warning("ami.disconnected", lost_at=self._lost_at)
        self.parts.pbx_clock.observe(getattr(self.parts.tracker, "last_ts", None))

    async def _resynced(self, item: Resynced) -> None:
        p = self.parts
        p.pbx_clock.observe(item.pbx_time)
        now = item.pbx_time if item.pbx_time is not None else p.pbx_clock.now()
        lost_at = self._lost_at
        result = p.tracker.resync(
            item.items, now=now, lost_at=lost_at, known=p.calls.restored_hints()
        )
        if asyncio.iscoroutine(result):
            result = await result
        for event in list(result or ()):
            await self.handle(event)
        for status in item.items:
            if status.get("Event") == "Status" and status.get("Variable"):
                variables = dict(
                    v.split("=", 1) for v in status["Variable"].split("\n") if "=" in v
                )
                p.calls.adopt_routing(status.get("Linkedid", ""), variables)
        if item.complete:
            alive = {
                i.get("Linkedid", "") for i in item.items if i.get("Event") == "CoreShowChannel"
            }
            at = lost_at if lost_at else now
            for event in p.calls.after_resync(alive, at, now, only=p.call_prefix):
                await self.handle(event)
            self._lost_at = None
            self._start_backfill(now, lost_at)
        if item.refused != p.resync.refused:
            for action, message in item.refused.items():
                log.error("daemon.resync_refused", action=action, message=message)
        p.resync.refused = dict(item.refused)
        self.resyncs += 1
        log.info("ami.resynced", calls=len(p.calls.active()), refused=sorted(item.refused))

    def _start_backfill(self, resynced_at: float, lost_at: float | None) -> None:
        """A full resync after a start, a takeover or a lost link: from here the tracker
        sees every call; before it, queue_log says what it missed (``cti.queuelog``), from
        the moment the PBX was last known observed (or the link was lost)."""
        p = self.parts
        since = self._backfill_from if self._backfill_from is not None else lost_at
        if p.queue_log is None or since is None:
            return
        self._backfill_from = None
        if self._backfill is not None and not self._backfill.done():
            self._backfill.cancel()  # another gap before it finished: one run covers both
            since = min(since, self._backfill_since)
        self._backfill_since = since
        adopted = {c.call_id for c in p.calls.active() if c.midway or c.restored}
        self._backfill = asyncio.create_task(
            self._backfill_and_count(since, resynced_at, adopted), name="queue-log-backfill"
        )

    async def _backfill_and_count(
        self, since: float, resynced_at: float, adopted: set[str]
    ) -> BackfillReport:
        """The backfill, then today's live figures count the calls it gave legs to."""
        p = self.parts
        assert p.queue_log is not None
        report = await p.queue_log.run(since, resynced_at, adopted)
        if p.supervision is not None and report.legs:
            p.supervision.count_legs(report.legs)
        return report

    async def handle(self, event: CallEvent) -> None:
        """One call event: update the live call, then tell the desktops."""
        self.call_events += 1
        try:
            ctx = await self.parts.calls.apply(event)
            self.parts.hub.publish(event, ctx)
            if self.parts.events_out is not None and ctx is not None:
                ended = event.event == "ended"
                record = self.parts.calls.record_of(ctx) if ended else None
                self.parts.events_out.publish(event, ctx, record)
            if self.parts.supervision is not None:
                self.parts.supervision.apply(event, ctx)
            if self.parts.callbacks is not None:
                self.parts.callbacks.apply(event, ctx)
        except Exception as exc:
            self.errors += 1
            log.error("call_event.failed", call_id=event.call, event=event.event, error=repr(exc))

    # ---- running as a process ----------------------------------------------------------------

    async def run_until_signal(self) -> int:
        """Start, run until SIGINT/SIGTERM, then stop cleanly: 0, 1 if the AMI flow failed, 3
        (``EXIT_RECORDS_LOST``) if interaction records could be neither written nor saved."""
        loop = asyncio.get_running_loop()
        stop_requested = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop_requested.set)
        status = 0
        try:
            await self.start()
            tune_for_service()
            waiter = asyncio.create_task(stop_requested.wait(), name="wait-signal")
            while True:
                watched: set[asyncio.Task[Any]] = {waiter, *self.watched()}
                # A standby's pump only starts when it takes over: look again now and then.
                engines = (self, *self.others)
                standby = any(d._role is not None and d._pump is None for d in engines)
                done, _ = await asyncio.wait(
                    watched, timeout=0.5 if standby else None, return_when=asyncio.FIRST_COMPLETED
                )
                if done:
                    break
            waiter.cancel()
            for engine in (self, *self.others):
                pump = engine._pump
                if pump is not None and pump.done() and not pump.cancelled() and pump.exception():
                    log.error("ami.events_failed", error=repr(pump.exception()))
                    status = 1
                role = engine._role
                if role is not None and role.done() and not stop_requested.is_set():
                    status = EXIT_LEASE_LOST  # another instance ingests now: start as standby
            log.info("daemon.stopping")
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            await self.stop()
            log.info("daemon.stopped")
        if self.parts.recorder.lost:
            status = status or EXIT_RECORDS_LOST
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
    channel_check_s: float = 180.0,
) -> Daemon:
    """Build (not start) the daemon. ``store``/``ami``/``tracker`` replace the ones built here;
    ``http_port``/``agi_port`` override the config (0 picks a free port); every
    ``channel_check_s`` (0: never) channels Asterisk no longer reports are expired."""
    from connectors.wiring import EventsOut, build_directory, build_outbox
    from connectors.writeback import WriteBackRecorder
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
    links = config.pbx_links()  # several PBXs ([[pbx]]): this daemon runs the first
    if config.pbx:
        updates["ami"] = links[0]
    if updates:
        config = config.model_copy(update=updates)
    several = len(config.pbx) > 0

    owns_store = store is None
    if store is None:
        store = await CrmStore.from_config(config)
    chain = None
    cluster: ClusterParts | None = None
    try:
        chain = build_directory(config, store) if directory is None else None
        crm: Any = directory or chain or store
        outbox = build_outbox(config, getattr(store, "engine", None), chain)
        engine = getattr(store, "engine", None)
        cluster = build_cluster(config, engine) if config.cluster.enabled else None
        interactions = _as_interaction_store(store)
        if cluster is not None and engine is not None:
            interactions = cluster.fenced(store)  # a stale ingester's records are refused
        if outbox is not None and chain is not None:
            interactions = WriteBackRecorder(interactions, chain, outbox)
        rules = load_rules(config)
        decisions = DecisionLog()
        router = Router(crm, rules, deadline_s=config.agi.deadline_ms / 1000)
        ivr = _ivr(config, crm, router)
        agi = FastAgiServer(router, decisions, config.agi.host, config.agi.port, ivr=ivr)
        recorder = InteractionRecorder(
            interactions, dead_letters=DeadLetterFile(dead_letter_path(config))
        )
        pbx_clock = PbxClock()
        call_state = _call_state(config, store, pbx_clock, cluster)
        by_pbx = CallStateByPbx() if several else None  # each call to its PBX's writer
        if by_pbx is not None and call_state is not None:
            by_pbx.writers[config.ami.pbx_id] = call_state
        resync = ResyncHealth()
        hub = PopHub(config.agents, fanout=cluster.fanout if cluster is not None else None)
        calls = LiveCalls(
            directory=crm,
            decisions=UnqualifiedDecisions(decisions) if several else decisions,
            recorder=cluster.stamping(recorder) if cluster is not None else recorder,
            tiers_by_queue=tiers_by_queue(config),
            grace_s=grace_s,
            on_update=hub.update,  # the CRM answered after the pop: the desktops get the view
            state=by_pbx if by_pbx is not None else call_state,
        )
        if ami is None and config.ami.enabled:
            from cti.ami.client import AmiClient

            ami = AmiClient(config.ami)
        if ami is not None and several:
            ami = QualifiedAmi(ami, config.ami.pbx_id)
        if ami is not None:
            source = ami
            resync.retries = lambda: int(getattr(source, "resync_retries", 0))
        tracker = tracker or _new_tracker(config)
        actions: Any = ami if ami is not None else _NoAmi()
        pbx_links = _pbx_links([link.pbx_id for link in links], several, cluster)
        pbx_links.links[config.ami.pbx_id] = actions
        every_pbx: list[Parts] = []  # each PBX's parts, for /healthz (filled below)
        sweep = ChannelSweep(channel_check_s)
        registry = CollectorRegistry()
        registry.register(
            DaemonCollector(
                MetricSources(
                    recorder=recorder,
                    router=router,
                    ivr=ivr,
                    ami=ami if isinstance(ami, AmiLinkCounts) else None,
                    channels_expired=lambda: sweep.expired,
                    log_suppressed=suppressed_warnings,
                    # read at scrape time: supervision is built just below
                    stats_refused=lambda: getattr(supervision.recorder, "refused", 0),
                    call_state_refused=lambda: sum(
                        getattr(w, "refused", 0)
                        for w in (by_pbx.writers.values() if by_pbx else [call_state])
                    ),
                )
            )
        )
        supervision = _supervision(config, hub, calls, store, actions, cluster, pbx_links)
        live_stats = None
        if cluster is not None and cluster.relay is not None:  # the same on every instance
            cluster.relay.answer("live_stats", supervision.live_stats)
            live_stats = functools.partial(
                live_everywhere,
                cluster.relay,
                pbx_links.pbx_ids,
                supervision.live_stats,
                cluster.relay.holder,
            )
        forward = None
        if cluster is not None and cluster.relay is not None:  # a standby's calls: its ingester
            forward = HttpForward(
                cluster.relay, pbx_links.pbx_ids, cluster.ingests, took_call=supervision.took_call
            )
        case_book, callback_book = _cases_and_callbacks(config, store)
        # A task that opens or closes reaches its queue's desktops at once, through the hub.
        callback_news = CallbackNews(hub, queue_agents(config))
        # Each PBX's own queue_log (``[[pbx]]``), its records fenced as the live ones are.
        queue_log_of = functools.partial(
            _queue_log,
            store=store,
            recorder=recorder,
            sink=cluster.stamping(recorder) if cluster is not None else recorder,
            stats=supervision.recorder,
            figures=supervision,
            calls=calls,
            crm=crm,
            several=several,
        )
        queue_log = queue_log_of(config, pbx_clock)
        deps = ApiDeps(
            config=config,
            hub=hub,
            calls=calls,
            crm=crm,
            ami=actions,
            ami_errors=(AmiError, ConnectionError, TimeoutError),
            ami_connected=lambda: bool(getattr(actions, "connected", False)),
            db_ok=_db_ok(store),
            interactions=recorder.status,
            registry=registry,
            route_handler=route_handler(router, decisions),
            resync_status=resync.status,
            supervision=supervision,
            cases=case_book,
            callbacks=callback_book,
            callback_news=callback_news,
            customers_admin=_customers_admin(store),
            pbx=pbx_links,
            pbx_status=lambda: [pbx_health(p) for p in every_pbx],
            live_stats=live_stats,
            forward=forward,
        )
        app = create_app(deps)
    except BaseException:
        if chain is not None:
            await chain.close()
        if cluster is not None:
            await cluster.redis.aclose()
        if owns_store:
            await store.close()
        raise
    events_out = EventsOut(outbox) if outbox is not None else None
    if events_out is not None and supervision is not None:
        supervision.on_alert(events_out.publish_alert)  # raised by the ingester only
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
        directory=chain,
        outbox=outbox,
        events_out=events_out,
        sweep=sweep,
        call_state=call_state,
        pbx_clock=pbx_clock,
        resync=resync,
        supervision=supervision,
        ivr=ivr,
        callbacks=(
            CallbackFeed(callback_book, hub, calls, news=callback_news)
            if callback_book is not None
            else None
        ),
        cluster=cluster,
        queue_log=queue_log,
        call_prefix=f"{config.ami.pbx_id}:" if several else "",
    )
    daemon = Daemon(parts)
    if forward is not None:
        forward.address = daemon.http_address
    for link in links[1:]:
        assert by_pbx is not None
        other = _pbx_daemon(parts, link, by_pbx, channel_check_s, queue_log_of)
        daemon.others.append(other)
        other_ami: Any = other.parts.ami if other.parts.ami is not None else _NoAmi()
        pbx_links.links[link.pbx_id] = other_ami
    every_pbx.extend(d.parts for d in (daemon, *daemon.others))
    return daemon


def _pbx_links(pbx_ids: list[str], several: bool, cluster: ClusterParts | None) -> PbxLinks:
    """Each action to its call's or agent's PBX; a PBX another instance ingests through it
    (the relay, which sends this instance's links for the others)."""
    if cluster is None or cluster.relay is None:
        return PbxLinks(pbx_ids, several=several)
    links = PbxLinks(
        pbx_ids, several=several, ingesting=cluster.ingests, remote=cluster.relay.remote
    )
    cluster.relay.serve(links.links, cluster.ingests)
    return links


def pbx_health(parts: Parts) -> dict[str, Any]:
    """One PBX as ``/healthz`` reports it: its link, last resync and (several instances)
    whether this instance ingests it (``lease``: ``held``, ``standby``; None: one instance)."""
    role = parts.cluster.role if parts.cluster is not None else None
    lease = None if role is None else ("held" if role.token is not None else "standby")
    return {
        "pbx": parts.config.ami.pbx_id,
        "ingested": lease != "standby",
        "lease": lease,
        "ami": bool(getattr(parts.ami, "connected", False)),
        "resync": parts.resync.status(),
    }


def _pbx_daemon(
    first: Parts,
    link: AmiConfig,
    by_pbx: CallStateByPbx,
    channel_check_s: float,
    queue_log_of: Callable[[Config, PbxClock], QueueLogBackfill | None],
) -> Daemon:
    """The ingest of a PBX after the first (``[[pbx]]``): its own AMI link, tracker, call
    state writer, lease and queue_log; the live calls, hub, recorder and supervision are
    the first's."""
    config = first.config.model_copy(update={"ami": link})
    engine = getattr(first.store, "engine", None)
    cluster = build_cluster(config, engine, shared=first.cluster) if first.cluster else None
    clock = PbxClock()
    call_state = _call_state(config, first.store, clock, cluster)
    if call_state is not None:
        by_pbx.writers[link.pbx_id] = call_state
    ami: AmiSource | None = None
    if link.enabled:
        from cti.ami.client import AmiClient

        ami = QualifiedAmi(AmiClient(link), link.pbx_id)
    parts = dataclasses.replace(
        first,
        config=config,
        tracker=_new_tracker(config),
        ami=ami,
        owns_store=False,
        directory=None,
        outbox=None,
        sweep=ChannelSweep(channel_check_s),
        call_state=call_state,
        pbx_clock=clock,
        resync=ResyncHealth(),
        cluster=cluster,
        call_prefix=f"{link.pbx_id}:",
        ingest_only=True,
        queue_log=queue_log_of(config, clock),
    )
    return Daemon(parts)


def _ivr(config: Config, crm: Any, router: Any) -> Any:
    """The IVR before the queue ([ivr] enabled), on a CRM that finds account numbers."""
    if not config.ivr.enabled:
        return None
    from cti.routing.ivr import IvrFlow

    if not all(callable(getattr(crm, m, None)) for m in IvrFlow.NEEDS):
        log.warning("ivr disabled: the CRM cannot look up account numbers or order references")
        return None
    return IvrFlow(config.ivr, crm, router)


def _call_state(
    config: Config, store: Any, clock: PbxClock, cluster: ClusterParts | None
) -> CallStateWriter | None:
    """The live call state on the CRM's own database (a connector without one: none);
    with several instances every write carries the ingester's fencing token."""
    engine = getattr(store, "engine", None)
    if engine is None or not config.ami.enabled:
        return None

    def encode(ctx: CallContext) -> SavedCall:
        return SavedCall(
            call_id=ctx.call_id,
            state=ctx.state,
            started_at=ctx.offered_at,
            answered_at=ctx.answered_at,
            ended_at=ctx.ended_at,
            context=saved_context(ctx),
        )

    return CallStateWriter(
        SqlCallState(engine, guard=cluster.guard() if cluster is not None else None),
        config.ami.pbx_id,
        encode=encode,
        clock=clock,
        heartbeat_s=config.ami.heartbeat_s,
    )


def _queue_log(
    config: Config,
    clock: PbxClock,
    *,
    store: Any,
    recorder: InteractionRecorder,
    sink: Sink,
    stats: Flushable | None,
    figures: LiveFigures | None,
    calls: LiveCalls,
    crm: Any,
    several: bool,
) -> QueueLogBackfill | None:
    """The queue_log of the PBX of ``config.ami`` (``[queue_log]``, or its ``[[pbx]]``
    entry's): its file or realtime table, checked against the store's interactions; with
    several PBXs its ids are qualified by the PBX, as its AMI events are."""
    qconf = config.queue_log_of(config.ami.pbx_id)
    engine = getattr(store, "engine", None)
    if not qconf.enabled or not config.ami.enabled:
        return None
    if engine is None:
        log.warning("queue_log disabled: the interactions are not in a database of ours")
        return None
    from sqlalchemy.ext.asyncio import create_async_engine

    from cti.cluster.pbxs import QualifiedQueueLog
    from cti.queuelog.sources import FileSource, QueueLogSource, TableSource

    source: QueueLogSource
    if qconf.file:
        source = FileSource(Path(qconf.file).expanduser())
    elif qconf.database_url:
        other = create_async_engine(qconf.database_url)
        source = TableSource(other, qconf.table, timezone=qconf.timezone, owns_engine=True)
    else:
        source = TableSource(engine, qconf.table, timezone=qconf.timezone)
    if several:
        source = QualifiedQueueLog(source, config.ami.pbx_id)
    return QueueLogBackfill(
        source,
        engine,
        recorder,
        calls,
        resolver=crm if callable(getattr(crm, "resolve", None)) else None,
        tiers_by_queue=tiers_by_queue(config),
        pbx_id=config.ami.pbx_id,
        lookback_s=qconf.lookback_s,
        clock=clock.now,
        sink=sink,
        stats=stats,
        figures=figures,
    )


def _supervision(
    config: Config,
    hub: PopHub,
    calls: LiveCalls,
    store: Any,
    actions: Any,
    cluster: ClusterParts | None = None,
    links: PbxLinks | None = None,
) -> Supervision:
    """Statistics, the console, spying and recordings; legs and the audit log are written
    where the store's engine is (a store without one: live statistics only). Several
    instances: every instance's consoles show the ingester's board (``cti.cluster.board``)."""
    from cti.stats.period import report_engine
    from cti.stats.store import StatsRecorder
    from cti.supervisor.audit import AuditLog
    from cti.supervisor.listen import Supervise

    engine = getattr(store, "engine", None)
    recorder = StatsRecorder(engine) if engine is not None else None
    supervise = (
        Supervise(config.supervisor, actions, AuditLog(engine), links=links) if engine else None
    )
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
        **(_console_of(cluster) if cluster is not None else {}),
    )


def _console_of(cluster: ClusterParts) -> dict[str, Any]:
    """Several instances: every instance's consoles show the ingester's board."""
    return {
        "board_view": cluster.fanout.board,
        "publishing": lambda: cluster.role.token is not None,
        "consoles_anywhere": cluster.fanout.consoles_anywhere,
    }


def _cases_and_callbacks(config: Config, store: Any) -> tuple[Any, Any]:
    """Cases and callback tasks live in the store's database (a store without one: none)."""
    from crm_core.callbacks import CallbackBook
    from crm_core.cases import CaseBook, CaseReason

    engine = getattr(store, "engine", None)
    if engine is None:
        return None, None
    reasons = {
        r.name: CaseReason(r.name, r.label or r.name, r.tier, r.sla_hours)
        for r in config.cases.reasons
    }
    callbacks = CallbackBook(engine) if config.callbacks.enabled else None
    return CaseBook(engine, reasons), callbacks


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


def dead_letter_path(config: Config) -> Path:
    """``[crm] dead_letter_path``, else beside the SQLite file, else in the user data dir."""
    if config.crm.dead_letter_path:
        return Path(config.crm.dead_letter_path).expanduser()
    from crm_core.db import sqlite_path

    db_file = sqlite_path(config.database_url)
    if db_file is not None:
        return db_file.with_name(db_file.name + ".dead-letters.jsonl")
    return Path(platformdirs.user_data_dir("cti")) / "interactions.dead-letters.jsonl"


def _new_tracker(config: Config) -> CallTracker:
    region = config.phone.default_region

    # Callers ring again and again: normalise each caller ID once, not on every call.
    @functools.lru_cache(maxsize=8192)
    def normalise(raw: str) -> str | None:
        return to_e164(raw, region)

    return CallTracker(normalise=normalise)


def _customers_admin(store: Any) -> Any:
    """Merge and divide work on the built-in store only (a connector's records are its own)."""
    from crm_core.merge import CustomerMaintenance
    from crm_core.store import CrmStore

    return CustomerMaintenance(store) if isinstance(store, CrmStore) else None


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
