"""Supervision: today's statistics, the console's rows and alerts, fed by the call events.

The daemon calls ``apply(event, ctx)`` after the hub published the event, ``resynced()`` after
an AMI resync, and owns ``start()``/``stop()`` (the refresh task and the statistics writer).

Console messages (what ``/ws/supervisor`` sends after ``hello``; the rows are
``cti.supervisor.board``'s):

- ``snapshot``: ``board`` (every call, agent, queue and hour) and ``alerts``; on connect and
  after every resync;
- ``call_row`` (``row``) / ``call_gone`` (``call_id``): a call changed / ended; coalesced
  per call;
- ``agent_row`` (``row``): coalesced per agent; ``queue_row`` (``row``) and ``hours``
  (``rows``): every ``[supervisor] refresh_s``, coalesced;
- ``alert``: an ``AlertEvent`` raised or cleared (never coalesced);
- and every message a supervisor's desktop gets (``pop``, ``answered``, ``call``...).

Several instances (``board_view`` given): while a console is connected to any instance
(``consoles_anywhere``), the ingester builds the rows from its call events and the hub sends
them through the fan-out to every instance's consoles, with the whole board when the first
console appears and every ``BOARD_STATE_EVERY_S``; a console connecting to any instance, and
``GET /supervisor/board``, read the board as rebuilt there from those messages
(``cti.cluster.board``). A standby (``publishing()`` false) neither refreshes nor raises
alerts: the ingester does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from cti.calls import WrapUp
from cti.cluster.board import BOARD_STATE
from cti.config import AgentConfig, Config
from cti.hub import HubMessage, PopHub
from cti.stats.legs import Leg
from cti.stats.live import DAY, LiveStats, thresholds_of
from cti.stats.period import period_figures
from cti.stats.store import StatsSink, activity_since, legs_since, outbound_since
from cti.supervisor.alerts import AlertEvent, alerts
from cti.supervisor.board import CallView, agent_key, agent_row, agents_on, board, call_row
from cti.supervisor.listen import Supervise
from cti.tracker.events import CallEvent

log = structlog.get_logger(__name__)

BOARD_STATE_EVERY_S = 5.0


class BoardView(Protocol):
    """The board as every instance rebuilds it (``cti.cluster.board.BoardMirror``)."""

    def board(self) -> dict[str, Any]: ...

    def alerts(self) -> list[dict[str, Any]]: ...


class LiveCallsView(Protocol):
    def active(self) -> Sequence[Any]: ...

    def get(self, call_id: str) -> Any | None: ...

    def on_wrap_up(self, listener: Callable[[WrapUp], None]) -> None: ...

    def note_recording(self, call_id: str, file_name: str) -> None: ...


class Supervision:
    def __init__(
        self,
        config: Config,
        hub: PopHub,
        calls: LiveCallsView,
        *,
        tiers_by_queue: Mapping[str, str],
        recorder: StatsSink | None = None,
        engine: AsyncEngine | None = None,
        supervise: Supervise | None = None,
        report_engine: AsyncEngine | None = None,
        clock: Callable[[], float] = time.time,
        board_view: BoardView | None = None,
        publishing: Callable[[], bool] = lambda: True,
        consoles_anywhere: Callable[[], bool] | None = None,
    ) -> None:
        self.config = config
        self.hub = hub
        self.calls = calls
        self.stats = LiveStats(thresholds_of(config), tiers_by_queue)
        self.recorder = recorder
        self.engine = engine
        # Period reports run on their own engine when given (longer statement timeout).
        self.report_engine = report_engine
        self.supervise = supervise
        self.clock = clock
        self.board_view = board_view
        self.publishing = publishing
        self._anywhere = consoles_anywhere or (lambda: bool(hub.consoles()))
        self._had_consoles = False
        self._board_state_at = float("-inf")
        self._purged_at = 0.0
        self._agents = {agent_key(a): a for a in config.agents if a.role == "agent"}
        self._alerts: dict[str, AlertEvent] = {}
        self._listeners: list[Callable[[AlertEvent], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._sent_calls: dict[str, dict[str, Any]] = {}  # last call rows pushed by refresh
        # Which calls ring or talk to each agent, kept as events arrive: an agent's row is
        # built from their own calls, never from a scan of every call in progress.
        self._calls_of: dict[str, dict[str, None]] = {}  # agent -> call ids (in order)
        self._agents_of: dict[str, set[str]] = {}  # call id -> agents
        calls.on_wrap_up(self._wrapped)
        if supervise is not None:
            supervise.on_recording(calls.note_recording)

    # ---- the event flow ------------------------------------------------------------------

    def apply(self, event: CallEvent, ctx: CallView | None) -> None:
        if event.ts is None:
            # A PBX without timestampevents: this host's clock, as live calls take it (the
            # statistics leave out an event without a time).
            event = dataclasses.replace(event, ts=self.clock())
        if ctx is not None and event.call:
            self._index(event.call, ctx)
        done = self.stats.apply(event)
        if event.event == "ended" and getattr(ctx, "direction", None) == "outbound":
            # As its interaction is written (``CallTracker.record_of``).
            outcome = getattr(ctx, "outcome", None) or "unanswered"
            talk = getattr(ctx, "talk_s", None)
            self.stats.outbound_ended(event.call, getattr(ctx, "offered_at", None), outcome, talk)
        if self.supervise is not None and ctx is not None:
            if event.event == "answered":
                self.supervise.answered(ctx)
            elif event.event == "ended":
                self.supervise.ended(event.call, event.ts or self.clock())
        if self.recorder is not None:
            if done.legs:
                self.recorder.submit_legs(done.legs)
            if done.activity:
                self.recorder.submit_activity(done.activity)
        if self._consoles():
            self.hub.to_consoles(self._rows(event, ctx))

    def _consoles(self) -> bool:
        """Are rows read by anyone? Several instances: a console may be on any of them; when
        the first one appears the ingester sends the whole board (the mirrors were idle)."""
        if self.board_view is None:
            return bool(self.hub.consoles())
        anywhere = self._anywhere()
        if anywhere and not self._had_consoles and self.publishing():
            self._had_consoles = True
            self.hub.to_consoles([self.snapshot()])
        self._had_consoles = anywhere
        return anywhere

    def _index(self, call: str, ctx: CallView | None) -> None:
        now = agents_on(ctx) if ctx is not None and ctx.state != "ended" else set()
        before = self._agents_of.pop(call, set())
        for agent in before - now:
            calls = self._calls_of.get(agent)
            if calls is not None:
                calls.pop(call, None)
                if not calls:
                    del self._calls_of[agent]
        for agent in now - before:
            self._calls_of.setdefault(agent, {})[call] = None
        if now:
            self._agents_of[call] = now

    def _reindex(self) -> None:
        self._calls_of.clear()
        self._agents_of.clear()
        for ctx in self.calls.active():
            self._index(ctx.call_id, ctx)

    def calls_of(self, agent: str) -> list[CallView]:
        """The calls ringing or talking to this agent (queue member name) now."""
        found = (self.calls.get(call) for call in self._calls_of.get(agent, ()))
        return [ctx for ctx in found if ctx is not None]

    def _wrapped(self, wrap: WrapUp) -> None:
        """A wrap-up was measured: it joins its leg's handle time (rewritten if written)."""
        legs = self.stats.wrap_up(wrap.call_id, wrap.agent, wrap.seconds)
        if legs and self.recorder is not None:
            self.recorder.submit_legs(legs)

    def _rows(self, event: CallEvent, ctx: CallView | None) -> list[HubMessage]:
        now = self.clock()
        out: list[HubMessage] = []
        if ctx is not None and event.call:
            key = f"call\0{event.call}"
            if ctx.state == "ended":
                self._sent_calls.pop(event.call, None)
                out.append(self.hub.make_message("call_gone", {"call_id": event.call}, key=key))
            else:
                legs = self.stats.legs.legs_of(event.call)
                row = call_row(ctx, legs, now)
                self._sent_calls[event.call] = _still(row)
                out.append(self.hub.make_message("call_row", {"row": row}, key=key))
        d = event.data
        involved = {d.get("member"), d.get("agent"), d.get("from_agent"), d.get("to")}
        if ctx is not None:
            involved.add(ctx.agent)
        calls_today: dict[str, int] | None = None
        for name in involved:
            agent = self._agents.get(name) if isinstance(name, str) else None
            if agent is None:
                continue
            if calls_today is None:
                calls_today = self.stats.calls_today()
            row = agent_row(agent, self.stats, self.calls_of(agent_key(agent)), calls_today, now)
            out.append(self.hub.make_message("agent_row", {"row": row}, key=f"agent\0{name}"))
        return out

    def resynced(self) -> None:
        """After a resync the console starts again from a snapshot."""
        self._reindex()
        if self._consoles():
            self.hub.to_consoles([self.snapshot()])

    # ---- what the console and the API read -----------------------------------------------

    def board(self) -> dict[str, Any]:
        """The board built here from the call events (several instances: the ingester's)."""
        return board(self.config, self.stats, list(self.calls.active()), self.clock())

    def snapshot(self) -> HubMessage:
        payload = {"board": self.board(), "alerts": [a.to_dict() for a in self._alerts.values()]}
        return self.hub.make_message("snapshot", payload, key="snapshot")

    def view(self) -> dict[str, Any]:
        """The board a console on this instance shows (``GET /supervisor/board``)."""
        return self.board_view.board() if self.board_view is not None else self.board()

    def console_snapshot(self) -> HubMessage:
        """What a console connecting to this instance starts from."""
        if self.board_view is None:
            return self.snapshot()
        payload = {"board": self.board_view.board(), "alerts": self.board_view.alerts()}
        return self.hub.make_message("snapshot", payload, key="snapshot")

    async def count_today(self, call_prefix: str = "") -> None:
        """This instance starts ingesting a PBX (a takeover, a start): today's calls of it that
        ended before are counted from their legs in the database, not only those from now on.
        The database down: from now on only, said in the log."""
        if self.engine is None:
            return
        now = self.clock()
        day_start = now - now % DAY
        try:
            legs = await legs_since(self.engine, day_start, call_prefix)
        except Exception as exc:
            log.warning("stats.today_not_counted", pbx=call_prefix or None, error=repr(exc))
            return
        added = self.stats.seed(legs, day_start)
        log.info("stats.today_counted", pbx=call_prefix or None, legs=added, read=len(legs))
        try:
            outbound = await outbound_since(self.engine, day_start, call_prefix)
            # Agent intervals carry no PBX: read back only when one PBX is all there is.
            activity = [] if call_prefix else await activity_since(self.engine, day_start)
        except Exception as exc:
            log.warning("stats.today_agents_not_counted", error=repr(exc))
            return
        self.stats.seed_outbound(outbound)
        self.stats.seed_activity(activity)

    def count_legs(self, legs: list[Leg]) -> None:
        """Legs written for calls no daemon saw (``cti.queuelog``): today's count them (a
        call already counted is left out)."""
        now = self.clock()
        added = self.stats.seed(legs, now - now % DAY)
        log.info("stats.recovered_counted", legs=added, given=len(legs))

    def correct_legs(self, legs: list[Leg]) -> None:
        """Legs of finished calls corrected from queue_log (``cti.queuelog``): today's figures
        count them instead, and they are written in place of the call's (through the same
        writer as a wrap-up that rewrites them later, so the later write is the right one)."""
        self.stats.replace_legs(legs)
        if self.recorder is not None:
            self.recorder.submit_legs(legs)

    def live_stats(self) -> dict[str, Any]:
        return self.stats.to_dict(self.clock())

    def agent(self, name: str) -> AgentConfig | None:
        return next((a for a in self.config.agents if a.name == name), None)

    async def period_stats(self, start: float, end: float, group_by: str) -> dict[str, Any]:
        engine = self.report_engine or self.engine
        if engine is None:
            raise RuntimeError("no database for period statistics")
        report = await period_figures(
            engine,
            start,
            end,
            group_by,
            self.stats.thresholds,
            repeat_days=self.config.stats.repeat_days,
        )
        return report.to_dict()

    # ---- refresh and alerts ----------------------------------------------------------------

    def on_alert(self, listener: Callable[[AlertEvent], None]) -> None:
        """Be told of every alert raised or cleared (e.g. to publish it to webhooks)."""
        self._listeners.append(listener)

    def refresh(self) -> list[AlertEvent]:
        """Queue rows, the day's chart and alerts, now; returns the alerts raised or cleared."""
        if not self.publishing():
            return []  # a standby: the ingester refreshes every instance's consoles
        now = self.clock()
        current = self.board()
        changed: list[AlertEvent] = []
        holding = {a.key: a for a in alerts(current, self.config.supervisor, now)}
        for key, alert in holding.items():
            if key not in self._alerts:
                changed.append(alert)
        for key, alert in self._alerts.items():
            if key not in holding:
                changed.append(
                    AlertEvent(alert.kind, alert.subject, alert.value, alert.limit, now, False)
                )
        self._alerts = {k: self._alerts.get(k, a) for k, a in holding.items()}
        for alert in changed:
            log.warning(
                "supervisor.alert",
                kind=alert.kind,
                subject=alert.subject,
                value=alert.value,
                limit=alert.limit,
                raised=alert.raised,
            )
            for listener in self._listeners:
                try:
                    listener(alert)
                except Exception as exc:
                    log.warning("alert listener failed", error=repr(exc))
        if self._consoles():
            messages = [
                self.hub.make_message("queue_row", {"row": row}, key=f"queue\0{row['queue']}")
                for row in current["queues"]
            ]
            messages.append(self.hub.make_message("hours", {"rows": current["hours"]}, key="hours"))
            messages.extend(self._changed_calls(current["calls"]))
            messages.extend(self.hub.make_message("alert", a.to_dict()) for a in changed)
            if self.board_view is not None and now - self._board_state_at >= BOARD_STATE_EVERY_S:
                self._board_state_at = now  # the mirrors' whole board (a trimmed stream)
                payload = {"board": current, "alerts": [a.to_dict() for a in self._alerts.values()]}
                messages.append(self.hub.make_message(BOARD_STATE, payload))
            self.hub.to_consoles(messages)
        return changed

    def _changed_calls(self, rows: list[dict[str, Any]]) -> list[HubMessage]:
        """Call rows that changed without a call event (the CRM answered late)."""
        sent: dict[str, dict[str, Any]] = {}
        out = []
        for row in rows:
            still = sent[row["call_id"]] = _still(row)
            if self._sent_calls.get(row["call_id"]) != still:
                key = f"call\0{row['call_id']}"
                out.append(self.hub.make_message("call_row", {"row": row}, key=key))
        self._sent_calls = sent
        return out

    async def took_call(self, call_id: str, member: str) -> bool:
        """Whether this agent (queue member name) answered the call (live, or recorded)."""
        ctx = self.calls.get(call_id)  # live, or ended within the grace period
        if ctx is not None and member in (getattr(ctx, "agents", None) or ()):
            return True
        if self.engine is None:
            return False
        from sqlalchemy import select

        from cti.stats.store import LEGS

        query = select(LEGS.c.seq).where(
            LEGS.c.call_id == call_id, LEGS.c.agent == member, LEGS.c.answered_at.is_not(None)
        )
        async with self.engine.connect() as conn:
            return (await conn.execute(query.limit(1))).first() is not None

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.supervisor.refresh_s)
            if self.supervise is not None and self.clock() - self._purged_at > 3600:
                self._purged_at = self.clock()
                self.supervise.purge()
            try:
                self.refresh()
            except Exception as exc:  # a bad row must not stop the console
                log.error("supervisor.refresh_failed", error=repr(exc))

    async def start(self) -> None:
        start = getattr(self.recorder, "start", None)
        if callable(start):
            await start()
        if self.supervise is not None:
            await self.supervise.start()
        self._task = asyncio.create_task(self._refresh_forever(), name="supervisor-refresh")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self.supervise is not None:
            await self.supervise.stop()
        stop = getattr(self.recorder, "stop", None)
        if callable(stop):
            await stop()
        if self.report_engine is not None:
            await self.report_engine.dispose()


def _still(row: dict[str, Any]) -> dict[str, Any]:
    """A call row without what changes every second (compared to know if it changed)."""
    return {k: v for k, v in row.items() if k not in ("wait_s", "talk_s", "hold_s")}


def parse_when(value: str, field: str) -> float:
    """``2026-12-01``, ``2026-12-01T08:00``, ``...Z`` or ``+01:00`` (UTC when no zone) → epoch."""
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"{field}: not an ISO date or time: {value!r}") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()
