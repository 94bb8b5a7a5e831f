"""Record the queue calls nobody saw, and complete the ones seen in part, from queue_log.

AMI does not replay what was sent while no daemon listened: a call that came and went while
the daemon was down, or while no instance of several ingested its PBX, left no interaction;
one that was being followed when the ingester died was closed with what could not be seen
marked unknown or estimated. Asterisk's queue_log has both. When a daemon starts, or an
instance takes the PBX over, ``QueueLogBackfill.run`` reads the queue_log from ``lookback_s``
before the PBX was last known to be observed and, for every queue call that entered a queue
before the first resync (or was adopted by it), once the call has finished there:

* no record of it: one is written with Asterisk's figures (``extra.source = "queue_log"``,
  ``extra.not_known`` what queue_log does not say: routing, notes, and the end of a call that
  left the queues alive; ``started_at`` is when it entered its first queue, estimated), the
  caller resolved as for any call (several customers on the number: none, the candidates kept);
* a record that lists facts as not known or estimated (the call was followed in part): those
  facts are taken from queue_log (``extra.queue_log.filled``) and the rest kept;
* a complete record: nothing.

Every call it checks also gets its queue legs in ``call_legs`` (``cti.queuelog.legs``: the
leg rules of a call the tracker saw, Asterisk's figures, hold and wrap-up not known) unless
it has some: legs a live daemon wrote are its own, kept. So the period statistics count the
calls nobody saw; the legs it wrote (``report.legs``) are handed to today's live figures. A
call whose legs the database refuses (an id longer than the column) is logged and left out;
the other calls' legs are written.

It is keyed as the interaction log is, by the call's Linkedid (``cti.queuelog.model``; with
``[[pbx]]`` the source qualifies the ids by the PBX, ``cti.cluster.pbxs.QualifiedQueueLog``),
and writes through the interaction recorder (its retries and dead letters). With several
instances its records go through ``sink``, which stamps each with the fencing token of its
PBX as the live calls' records are (``cti.cluster.fencing``): once the lease is lost, what it
still submits is refused by the database, counted as ``fenced``, not written. A call the
tracker still follows is left to it until it ends, then checked: the live calls, which hold
an ended call a while and may write its record again (a note, a disposition, the wrap-up),
take its completion and write it (``LiveCalls.queue_log_completed``), and the legs the live
statistics wrote with an estimated answer get Asterisk's (``answers_as_logged``, through
``figures``: today's figures count them). It ends once every call it took on is checked, or
``give_up_s`` after it began.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_core.db import describe_db_error, refused_by_database
from crm_core.models import Interaction
from crm_core.types import InteractionRecord, Resolution
from cti.queuelog.legs import answers_as_logged, queue_log_legs
from cti.queuelog.model import QueueLogCall, calls_from_rows, missing_facts, settled, tiers_of
from cti.queuelog.sources import QueueLogSource
from cti.stats.legs import Leg, legs_by_call
from cti.stats.store import legs_of_calls, write_legs, write_legs_of_new_calls

log = structlog.get_logger(__name__)


class CallerResolver(Protocol):
    async def resolve(self, caller: str | None) -> Resolution: ...


class Sink(Protocol):
    def submit(self, record: InteractionRecord) -> None: ...


class Recorder(Sink, Protocol):
    async def flush(self, within_s: float | None = None) -> bool: ...


class Flushable(Protocol):
    """The live statistics' leg writer (``cti.stats.store.StatsRecorder``)."""

    async def flush(self, within_s: float | None = None) -> bool: ...


class LiveFigures(Protocol):
    """Today's live statistics (``cti.supervisor.service.Supervision``)."""

    def correct_legs(self, legs: list[Leg]) -> None:
        """Count and write these legs in place of those of their calls."""
        ...


class LiveView(Protocol):
    """Which calls the tracker still follows (``cti.calls.LiveCalls``)."""

    def get(self, call_id: str) -> Any: ...

    def queue_log_completed(self, record: InteractionRecord) -> bool:
        """A call still held takes the completed figures and writes its record; False: not
        held."""
        ...


def _dt(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts, UTC) if ts is not None else None


def _ts(value: datetime | None) -> float | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


@dataclass
class BackfillReport:
    recorded: list[str] = field(default_factory=list)  # written from queue_log alone
    completed: list[str] = field(default_factory=list)  # a partial record completed
    already: int = 0  # the record was complete
    dropped: list[str] = field(default_factory=list)  # never finished in queue_log
    legs: list[Leg] = field(default_factory=list)  # written to call_legs from queue_log
    answered_legs: list[Leg] = field(default_factory=list)  # live legs given queue_log's answer


class QueueLogBackfill:
    def __init__(
        self,
        source: QueueLogSource,
        engine: AsyncEngine,
        recorder: Recorder,
        live: LiveView,
        *,
        resolver: CallerResolver | None,
        tiers_by_queue: Mapping[str, str],
        pbx_id: str,
        lookback_s: float = 3600.0,
        settle_s: float = 3.0,
        poll_s: float = 1.0,
        give_up_s: float = 4 * 3600.0,
        clock: Callable[[], float] = time.time,
        sink: Sink | None = None,
        stats: Flushable | None = None,
        figures: LiveFigures | None = None,
    ) -> None:
        self.source = source
        self._engine = engine
        self._recorder = recorder
        self._sink = recorder if sink is None else sink  # several instances: fenced
        self._live = live
        self._stats = stats  # None: no statistics (no legs written)
        self._figures = figures  # None: corrected legs written here, not counted live
        self._resolver = resolver
        self._tiers = dict(tiers_by_queue)
        self.pbx_id = pbx_id
        self.lookback_s = lookback_s
        self.settle_s = settle_s if source.fine else settle_s + 1.0  # whole-second times
        self.poll_s = poll_s
        self.give_up_s = give_up_s
        self._clock = clock
        self.report = BackfillReport()

    async def run(
        self, last_known_up: float, resynced_at: float, adopted: Collection[str] = ()
    ) -> BackfillReport:
        """Check every call that entered a queue before ``resynced_at`` (or was ``adopted``
        then) and logged something since ``last_known_up - lookback_s``."""
        since = last_known_up - self.lookback_s
        done: set[str] = set()
        waiting_since: dict[str, float] = {}
        started = self._clock()
        log.info("queue_log.backfill_started", pbx=self.pbx_id, since=since, until=resynced_at)
        while True:
            now = self._clock()
            rows = await self.source.read(since)
            calls = [
                c
                for c in calls_from_rows(rows, fine=self.source.fine)
                if c.call_id not in done and (c.entered < resynced_at or c.call_id in adopted)
            ]
            ready: list[QueueLogCall] = []
            pending = 0
            for call in calls:
                live = self._live.get(call.call_id)
                if live is not None and getattr(live, "state", "") != "ended":
                    pending += 1  # the tracker follows it: checked once it ends
                elif settled(call, now, self.settle_s):
                    ready.append(call)
                elif now - waiting_since.setdefault(call.call_id, now) > 10 * self.settle_s:
                    # Unfinished in queue_log and unknown to the tracker: Asterisk lost it
                    # (restarted mid-call); queue_log will not say more.
                    self.report.dropped.append(call.call_id)
                    done.add(call.call_id)
                    log.warning("queue_log.unfinished", pbx=self.pbx_id, call_id=call.call_id)
                else:
                    pending += 1
            if ready:
                await self._check(ready)
                done.update(c.call_id for c in ready)
            if not pending:
                break
            if now - started > self.give_up_s:
                log.warning("queue_log.backfill_gave_up", pbx=self.pbx_id, pending=pending)
                break
            await asyncio.sleep(self.poll_s)
        r = self.report
        # Calls nobody saw are worth a warning; a check that found nothing missing is not.
        say = log.warning if r.recorded or r.completed or r.dropped else log.info
        say(
            "queue_log.backfill_done",
            pbx=self.pbx_id,
            recorded=len(r.recorded),
            completed=len(r.completed),
            already=r.already,
            dropped=len(r.dropped),
            legs=len(r.legs),
        )
        return r

    async def _check(self, calls: list[QueueLogCall]) -> None:
        # Records the tracker handed over just now are written first: they are looked up.
        await self._recorder.flush(10.0)
        existing = await self._existing(calls)
        answers: dict[str, tuple[QueueLogCall, bool]] = {}  # legs to answer as logged
        for call in calls:
            row = existing.get(call.call_id)
            if row is None:
                self._sink.submit(await self._reconstructed(call))
                self.report.recorded.append(call.call_id)
                continue
            record = _completed(row, call, self._tiers)
            if record is None:
                self.report.already += 1
            else:
                # A call the live calls still hold writes its record again later (a note, a
                # disposition, the end of the wrap-up): they take queue_log's figures and
                # write it, with what was said since this row was read.
                if not self._live.queue_log_completed(record):
                    self._sink.submit(record)
                self.report.completed.append(call.call_id)
                filled = set(record.extra["queue_log"]["filled"])
                if filled & {"answered_at", "wait_s"}:
                    answers[call.call_id] = (call, _join_unseen(row))
        await self._write_legs(calls)
        await self._answer_legs(answers)

    async def _write_legs(self, calls: list[QueueLogCall]) -> None:
        """The legs of the calls that have none (nobody saw them, or only after their legs
        were given out); a call whose legs a live daemon wrote keeps them."""
        if self._stats is None:
            return
        # Legs the live statistics have just been handed are written first: they are kept.
        await self._stats.flush(10.0)
        legs = [leg for call in calls for leg in queue_log_legs(call, self._tiers)]
        try:
            try:
                written = await write_legs_of_new_calls(self._engine, legs)
            except Exception as exc:
                if not refused_by_database(exc):
                    raise
                written = await self._write_legs_apart(legs)
        except Exception as exc:  # checked again by the next backfill: nothing is lost
            log.warning("queue_log.legs_not_written", pbx=self.pbx_id, error=repr(exc))
            return
        self.report.legs.extend(written)

    async def _write_legs_apart(self, legs: list[Leg]) -> list[Leg]:
        """After a refusal (a call id longer than its column...): each call's legs on their
        own, so that one call never keeps the others' out of the statistics."""
        written: list[Leg] = []
        for call_id, its in legs_by_call(legs).items():
            try:
                written.extend(await write_legs_of_new_calls(self._engine, its))
            except Exception as exc:
                if not refused_by_database(exc):
                    raise
                log.error("queue_log.legs_refused", pbx=self.pbx_id, call_id=call_id[:150],
                          error=describe_db_error(exc)[:300])  # fmt: skip
        return written

    async def _answer_legs(self, answers: Mapping[str, tuple[QueueLogCall, bool]]) -> None:
        """The legs a live daemon wrote of calls whose answer it estimated get Asterisk's
        (their wait was the estimate's): counted and written by the live statistics when
        wired, else here."""
        if self._stats is None or not answers:
            return
        try:
            written = await legs_of_calls(self._engine, sorted(answers))
            fixed: list[Leg] = []
            for call_id, legs in legs_by_call(written).items():
                call, joined = answers[call_id]
                fixed.extend(answers_as_logged(legs, call, joined=joined))
            if fixed and self._figures is not None:
                self._figures.correct_legs(fixed)
            elif fixed:
                await write_legs(self._engine, fixed)
        except Exception as exc:  # the record is right; the legs keep the estimate
            log.warning("queue_log.legs_not_corrected", pbx=self.pbx_id, error=repr(exc))
            return
        self.report.answered_legs.extend(fixed)

    async def _existing(self, calls: list[QueueLogCall]) -> dict[str, dict[str, Any]]:
        """The interactions of these calls by call id; a call without the Linkedid row is
        also found by the Uniqueid its queue legs were recorded with."""
        table: Any = Interaction.__table__
        ids = [c.call_id for c in calls]
        found: dict[str, dict[str, Any]] = {}
        async with self._engine.connect() as conn:
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                result = await conn.execute(select(table).where(table.c.call_id.in_(chunk)))
                for r in result.mappings():
                    found[r["call_id"]] = dict(r)
            unlinked = [c for c in calls if not c.linked and c.call_id not in found]
            if unlinked:
                low = min(c.entered for c in unlinked) - 600.0  # it began before its queue
                high = max(c.entered for c in unlinked) + 1.0
                result = await conn.execute(
                    select(table).where(
                        table.c.started_at >= _dt(low), table.c.started_at <= _dt(high)
                    )
                )
                by_uid: dict[str, dict[str, Any]] = {}
                for r in result.mappings():
                    for leg in (r["extra"] or {}).get("queue_legs") or ():
                        if leg.get("uniqueid"):
                            by_uid[leg["uniqueid"]] = dict(r)
                for c in unlinked:
                    hit = next((by_uid[u] for u in c.callids if u in by_uid), None)
                    if hit is not None:
                        c.call_id = hit["call_id"]  # the call as the tracker keyed it
                        found[c.call_id] = hit
        return found

    async def _reconstructed(self, call: QueueLogCall) -> InteractionRecord:
        customer_id, extra = await self._customer(call.caller)
        extra.update(
            source="queue_log",
            estimated=["started_at"],  # when it entered its first queue: it began then or before
            not_known=missing_facts(call),
            hangup_by=call.hangup_by,
            queue_legs=[
                {**leg, "tier": self._tiers.get(leg["queue"])} for leg in call.queue_legs()
            ],
            talk_legs=call.talk_legs(),
            queue_log={"callids": call.callids, "linked": call.linked, "pbx": self.pbx_id},
        )
        return InteractionRecord(
            call_id=call.call_id,
            customer_id=customer_id,
            caller=call.caller,
            started_at=_dt(call.entered),
            answered_at=_dt(call.answered_at),
            ended_at=_dt(call.ended_at),
            queues=tuple(call.queues),
            tiers=tuple(tiers_of(call.queues, self._tiers)),
            agents=tuple(call.agents),
            outcome=call.outcome,
            wait_s=call.wait_s,
            talk_s=call.talk_s if call.agents else None,
            transfers=tuple(call.transfers),
            extra=extra,
        )

    async def _customer(self, caller: str | None) -> tuple[int | None, dict[str, Any]]:
        """Resolved as any call is: one match is the customer; several stay candidates."""
        if self._resolver is None or not caller:
            return None, {}
        try:
            async with asyncio.timeout(5.0):
                resolution = await self._resolver.resolve(caller)
        except Exception as exc:  # the CRM down: the call is still recorded, unattributed
            log.warning("queue_log.resolve_failed", error=repr(exc))
            return None, {"not_resolved": True}
        if resolution.status == "match" and resolution.customer_id is not None:
            return resolution.customer_id, {}
        if resolution.status == "ambiguous":
            keep = ("customer_id", "external_id", "name", "rank_reason")
            return None, {
                "candidates": [{k: c.to_dict().get(k) for k in keep} for c in resolution.candidates]
            }
        return None, {}


def _partial(row: Mapping[str, Any]) -> bool:
    """The record says the tracker did not see all of the call, or lacks a figure that a
    queued call always has (its wait; its talk once answered; its end), marked or not."""
    extra = row.get("extra") or {}
    return bool(
        row["outcome"] in ("unknown", "in_progress")
        or row["wait_s"] is None
        or row["ended_at"] is None
        or (row["agents"] and row["talk_s"] is None)
        or extra.get("not_known")
        or extra.get("estimated")
        or extra.get("restored")
        or extra.get("midway")
        or extra.get("unseen")
    )


def _join_unseen(row: Mapping[str, Any]) -> bool:
    """The live daemon did not see the call join its queue (adopted mid-way): its legs'
    join is an estimate too."""
    extra = row.get("extra") or {}
    guessed = {*(extra.get("not_known") or ()), *(extra.get("estimated") or ())}
    return bool(guessed & {"started_at", "wait_s"})


def _differs(old: Any, new: Any) -> bool:
    if old is None or new is None:
        return old is not new
    if isinstance(new, datetime):
        return abs((_ts(old) or 0.0) - (_ts(new) or 0.0)) > 0.001
    if isinstance(new, float):
        return abs(float(old) - new) > 0.001
    return bool(old != new)


def _completed(
    row: Mapping[str, Any], call: QueueLogCall, tiers: Mapping[str, str]
) -> InteractionRecord | None:
    """A record the tracker made of a call it saw in part, with Asterisk's figures from
    queue_log where they differ (the tracker's are estimates there); None if it saw all."""
    if not _partial(row):
        return None
    extra = dict(row.get("extra") or {})
    not_known = set(extra.get("not_known") or ())
    estimated = set(extra.get("estimated") or ())
    talk = call.talk_s if call.agents else None
    told: dict[str, Any] = {
        "outcome": call.outcome,
        "wait_s": call.wait_s,
        "talk_s": talk,
        "answered_at": _dt(call.answered_at),
        "ended_at": _dt(call.ended_at),
    }
    values = {k: v for k, v in told.items() if v is not None and _differs(row[k], v)}
    agents = tuple(dict.fromkeys([*(row["agents"] or ()), *call.agents]))
    if agents != tuple(row["agents"] or ()):
        values["agents"] = agents
    if row["started_at"] is None:
        values["started_at"] = _dt(call.entered)
        estimated.add("started_at")
    missing_queues = [q for q in call.queues if q not in row["queues"]]
    if missing_queues:
        values["queues"] = tuple([*row["queues"], *missing_queues])
        values["tiers"] = tuple(tiers_of(values["queues"], dict(tiers)))
    # What queue_log says is no longer unknown, changed or not.
    confirmed = {k for k, v in told.items() if v is not None} | (
        {"agents"} if call.agents else set()
    )
    if not values and not (not_known | estimated) & confirmed:
        return None
    filled = sorted(values)
    if "wait_s" in values or "talk_s" in values:
        extra["queue_legs"] = [
            {**leg, "tier": tiers.get(leg["queue"])} for leg in call.queue_legs()
        ]
        extra["talk_legs"] = call.talk_legs()
    if call.hangup_by is not None:
        extra["hangup_by"] = call.hangup_by
    extra["not_known"] = sorted(not_known - confirmed)
    extra["estimated"] = sorted(estimated - confirmed)
    extra["queue_log"] = {"filled": filled, "callids": call.callids, "linked": call.linked}
    started = _ts(values.get("started_at", row["started_at"]))
    ended = _ts(values.get("ended_at", row["ended_at"]))
    if started is not None and ended is not None and ended < started:
        values["ended_at"] = _dt(started)
    record = InteractionRecord(
        call_id=row["call_id"],
        customer_id=row["customer_id"],
        caller=row["caller"],
        direction=row["direction"],
        started_at=row["started_at"],
        answered_at=row["answered_at"],
        ended_at=row["ended_at"],
        queues=tuple(row["queues"] or ()),
        tiers=tuple(row["tiers"] or ()),
        agents=tuple(row["agents"] or ()),
        outcome=row["outcome"],
        wait_s=row["wait_s"],
        talk_s=row["talk_s"],
        transfers=tuple(row["transfers"] or ()),
        routing_reason=row["routing_reason"],
        disposition=row["disposition"],
        notes=row["notes"] or "",
        extra=extra,
    )
    return replace(record, **values)
