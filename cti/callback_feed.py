"""Call events into callback tasks (``crm_core.callbacks``): the daemon's one hook for them.

- ``abandoned`` of an inbound call from a known number (a match, or a number at all: not
  withheld, not internal) → a task in that queue (or one more attempt on its open task);
- ``offered`` of an inbound call from a number with an open task → the task closes
  ("called again");
- ``ended`` of an outbound call → the task being dialled for that number records the
  outcome (answered/no_answer/busy) and closes.

A failing database is logged and never stops the event flow.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import structlog

from crm_core.callbacks import CallbackBook
from cti.calls import CallContext
from cti.tracker.events import CallEvent

log = structlog.get_logger(__name__)

# Resolution statuses that say nothing about a callable number.
_NOT_A_NUMBER = frozenset({"anonymous", "internal"})


class AgentNames(Protocol):
    def agent_key(self, *aliases: Any) -> str | None: ...


def _masked(e164: str) -> str:
    return e164[:-4] + "****" if len(e164) > 6 else "****"


class CallbackFeed:
    def __init__(
        self,
        book: CallbackBook,
        agents: AgentNames,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.book = book
        self.agents = agents
        self.clock = clock
        self.failures = 0

    async def apply(self, event: CallEvent, ctx: CallContext | None) -> None:
        try:
            if event.event == "abandoned":
                await self._abandoned(event, ctx)
            elif event.event == "offered":
                await self._offered(event, ctx)
            elif event.event == "ended" and event.data.get("direction") == "outbound":
                await self._outbound_ended(event)
        except Exception as exc:
            self.failures += 1
            log.error("callbacks.failed", call_id=event.call, event=event.event, error=repr(exc))

    def _at(self, event: CallEvent) -> float:
        return event.ts if event.ts is not None else self.clock()

    async def _abandoned(self, event: CallEvent, ctx: CallContext | None) -> None:
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

    async def _offered(self, event: CallEvent, ctx: CallContext | None) -> None:
        e164 = event.data.get("caller_e164") or (ctx.caller_e164 if ctx else None)
        if not isinstance(e164, str) or not e164 or (ctx and ctx.direction != "inbound"):
            return
        closed = await self.book.called_again(e164, call_id=event.call, at=self._at(event))
        if closed:
            log.info("callbacks.called_again", call_id=event.call, tasks=closed)

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
