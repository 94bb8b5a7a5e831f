"""Call events into callback tasks (``crm_core.callbacks``): the daemon's one hook for them.

- ``abandoned`` of an inbound call from a known number (a match, or a number at all: not
  withheld, not internal) → a task in that queue (or one more attempt on its open task);
- ``answered`` of an inbound call from a number with an open task → the task closes
  ("called again": an agent has them now; a repeat call abandoned again counts one more
  attempt on the task instead);
- ``ended`` of an outbound call → the task being dialled for that number records the
  outcome (answered/no_answer/busy) and closes.

Every task that opens, counts another attempt or closes is announced at once to the desktops
of its queue's agents and to supervisors (``CallbackNews`` → ``PopHub.publish_callback``: the
``callback`` message); the desktop reads the list itself only when it (re)connects.

The database work runs on the feed's own task, in the order of the events (an abandon
before the same number's next call), so a slow database never holds up the AMI event flow;
a failure is logged and the next event is taken.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from crm_core.callbacks import CallbackBook, Task
from cti.calls import CallContext
from cti.config import Config
from cti.tracker.events import CallEvent

log = structlog.get_logger(__name__)

# Resolution statuses that say nothing about a callable number.
_NOT_A_NUMBER = frozenset({"anonymous", "internal"})


class AgentNames(Protocol):
    def agent_key(self, *aliases: Any) -> str | None: ...


class CallsLookup(Protocol):
    """The live calls (``cti.calls.LiveCalls``): who the caller is, once the CRM answered."""

    def get(self, call_id: str) -> CallContext | None: ...

    async def lookup_settled(self, call_id: str) -> None: ...


class CallbackHub(Protocol):
    """Where task changes go (``cti.hub.PopHub``)."""

    def publish_callback(self, task: dict[str, Any], agents: Iterable[str]) -> int: ...


def queue_agents(config: Config) -> dict[str, list[str]]:
    """The agents who call back each queue's callers: those whose tiers route to it."""
    tiers = config.tiers
    out: dict[str, list[str]] = {}
    for agent in config.agents:
        for queue in sorted({tiers[t].queue for t in agent.tiers if t in tiers}):
            out.setdefault(queue, []).append(agent.name)
    return out


class CallbackNews:
    """Tells the desktops of a task's queue (and supervisors) that the task changed."""

    def __init__(self, hub: CallbackHub, agents_by_queue: Mapping[str, Sequence[str]]) -> None:
        self.hub = hub
        self.agents_by_queue = agents_by_queue

    def changed(self, task: Task) -> None:
        self.hub.publish_callback(task.to_dict(), self.agents_by_queue.get(task.queue, ()))

    async def changed_ids(self, book: CallbackBook, ids: Iterable[int]) -> None:
        for task_id in ids:
            task = await book.get(task_id)
            if task is not None:
                self.changed(task)


def _masked(e164: str) -> str:
    return e164[:-4] + "****" if len(e164) > 6 else "****"


# At most this many events wait for the database; past it the oldest are dropped (logged).
MAX_PENDING = 10_000


@dataclass(frozen=True, slots=True)
class _Caller:
    """What the feed needs of the call, as it was when the event happened."""

    direction: str
    caller_e164: str | None
    status: str | None
    customer_id: int | None
    confirmed_by: str | None

    @classmethod
    def of(cls, ctx: CallContext | None) -> _Caller | None:
        if ctx is None:
            return None
        return cls(ctx.direction, ctx.caller_e164, ctx.status, ctx.customer_id, ctx.confirmed_by)


class CallbackFeed:
    def __init__(
        self,
        book: CallbackBook,
        agents: AgentNames,
        calls: CallsLookup,
        *,
        news: CallbackNews | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.book = book
        self.agents = agents
        self.calls = calls
        self.news = news
        self.clock = clock
        self.failures = 0
        self.dropped = 0
        self._pending: deque[tuple[CallEvent, _Caller | None]] = deque()
        self._wake: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        if self._pending:
            self._idle.clear()
            self._wake.set()
        else:
            self._idle.set()
        self._worker = asyncio.create_task(self._run(), name="callback-tasks")

    async def stop(self, within_s: float = 2.0) -> None:
        """Take in what is pending (up to ``within_s``), then stop."""
        if self._worker is None:
            return
        try:
            await asyncio.wait_for(self.settled(), within_s)
        except TimeoutError:
            log.warning("callbacks.stopped_with_pending", pending=len(self._pending))
        self._worker.cancel()
        await asyncio.gather(self._worker, return_exceptions=True)
        self._worker = None

    async def settled(self) -> None:
        """Until every event given so far is written."""
        while self._idle is not None and (self._pending or not self._idle.is_set()):
            await self._idle.wait()
            await asyncio.sleep(0)

    def apply(self, event: CallEvent, ctx: CallContext | None) -> None:
        """Queue the events that concern callbacks (never awaits)."""
        kind = event.event
        if kind not in ("abandoned", "answered", "ended"):
            return
        outbound = event.data.get("direction") == "outbound"
        if (kind == "ended") != outbound:  # an outbound call's end; an inbound call's answer
            return
        if len(self._pending) >= MAX_PENDING:
            self._pending.popleft()
            self.dropped += 1
            log.error("callbacks.dropped", call_id=event.call, pending=MAX_PENDING)
        self._pending.append((event, _Caller.of(ctx)))
        if self._idle is not None and self._wake is not None:
            self._idle.clear()
            self._wake.set()

    async def _run(self) -> None:
        assert self._wake is not None and self._idle is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                event, caller = self._pending.popleft()
                await self._one(event, caller)
            self._idle.set()

    async def _one(self, event: CallEvent, caller: _Caller | None) -> None:
        try:
            if event.event in ("abandoned", "answered"):
                # The caller's number and customer, as the CRM lookup (still running when a
                # caller hangs up within a second) finds them.
                await self.calls.lookup_settled(event.call)
                caller = _Caller.of(self.calls.get(event.call)) or caller
            if event.event == "abandoned":
                await self._abandoned(event, caller)
            elif event.event == "answered":
                await self._answered(event, caller)
            else:
                await self._outbound_ended(event)
        except Exception as exc:
            self.failures += 1
            log.error("callbacks.failed", call_id=event.call, event=event.event, error=repr(exc))

    def _at(self, event: CallEvent) -> float:
        return event.ts if event.ts is not None else self.clock()

    async def _abandoned(self, event: CallEvent, ctx: _Caller | None) -> None:
        queue = event.data.get("queue")
        if ctx is None or ctx.direction != "inbound" or not isinstance(queue, str) or not queue:
            return
        e164 = ctx.caller_e164
        if not e164 or ctx.status in _NOT_A_NUMBER:
            return
        customer_id = ctx.customer_id if ctx.status == "match" or ctx.confirmed_by else None
        task = await self.book.abandoned(
            queue=queue,
            e164=e164,
            customer_id=customer_id,
            call_id=event.call,
            wait_s=event.data.get("wait_s"),
            at=self._at(event),
        )
        if task is None:
            log.info("callbacks.do_not_call", call_id=event.call, number=_masked(e164))
        else:
            log.info("callbacks.task", call_id=event.call, task_id=task.task_id, queue=queue,
                     attempts=task.attempts, number=_masked(e164))  # fmt: skip
            if self.news is not None:
                self.news.changed(task)

    async def _answered(self, event: CallEvent, ctx: _Caller | None) -> None:
        if ctx is None or ctx.direction != "inbound" or not ctx.caller_e164:
            return
        e164 = ctx.caller_e164
        closed = await self.book.called_again(e164, call_id=event.call, at=self._at(event))
        if closed:
            log.info("callbacks.called_again", call_id=event.call, tasks=closed)
            if self.news is not None:
                await self.news.changed_ids(self.book, closed)

    async def _outbound_ended(self, event: CallEvent) -> None:
        outbound = event.data.get("outbound") or {}
        e164 = outbound.get("number_e164")
        outcome = outbound.get("outcome")
        if not isinstance(e164, str) or not e164 or not isinstance(outcome, str):
            return
        aliases = [outbound.get(k) for k in ("agent", "member", "interface")]
        names = {a for a in aliases if isinstance(a, str) and a}
        name = self.agents.agent_key(*aliases)
        if name:
            names.add(name)
        done = await self.book.outbound_ended(
            e164, agents=sorted(names), outcome=outcome, at=self._at(event)
        )
        if done:
            log.info("callbacks.called_back", call_id=event.call, tasks=done, outcome=outcome)
            if self.news is not None:
                await self.news.changed_ids(self.book, done)
