"""Self-service identification before the queue: ask who is calling when the number says not.

The router decides per call: only a caller whose number resolved to a status of ``[ivr] when``
(unknown, anonymous, ambiguous) is asked, never when the CRM could not be asked at all. The
caller types an account number or an order reference (``GET DATA``, at most ``attempts``
times); the digits are looked up in the CRM (account first, then order) within
``lookup_timeout_ms``, and an identified caller is routed by the rules on the customer's own
routing facts, as a known caller would be, with ``identified_by="ivr"`` in the decision (so
the pop and the interaction record show the customer whatever the caller ID said).

For an order reference, the order's delivery state is told before the queue (a configured
prompt per state, else spelt with ``SAY ALPHA``: Asterisk's core sounds have every letter, and
a per-state recording needs sound files of one's own), and, with ``end_digit``, the caller may
end the call there: one caller served by deflection.

Never in the way of the call: no digits, wrong digits twice, a ``result=-1`` (hang-up or a
missing prompt: Asterisk answers both alike), a CRM error or timeout, all give the decision the
router made before the IVR, with what happened in ``decision.ivr``. The digits themselves are
never logged nor kept (only their kind and length).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from crm_core.types import OrderFact
from cti.agi.protocol import Reply, Typed, get_data, say_alpha, stream_file
from cti.config import IvrConfig
from cti.routing.router import RouteDecision, Router

log = structlog.get_logger(__name__)

# Outcomes, as counted in ``IvrStats.outcomes`` and kept in ``decision.ivr["outcome"]``.
OUTCOMES = ("identified", "not_identified", "no_input", "ended", "crm_unavailable")
PROMPT_ALLOWANCE_S = 30.0  # the longest a prompt may play before GET DATA's digit timeout runs


class IdentityDirectory(Protocol):
    """What the IVR asks of the CRM (``crm_core.store.CrmStore`` has both)."""

    async def customer_by_external_id(self, external_id: str) -> int | None: ...

    async def order_by_reference(self, reference: str) -> tuple[int, OrderFact] | None: ...


class Prompter(Protocol):
    """The AGI channel of the call (``cti.agi.protocol.AgiChannel``)."""

    async def command(self, line: bytes) -> Reply: ...


@dataclass
class IvrStats:
    """What ``/metrics`` shows of the IVR (``cti.metrics``)."""

    sessions: int = 0
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    told: int = 0  # callers told their order's delivery state
    deflected: int = 0  # ... who then ended the call there rather than queue


@dataclass(frozen=True)
class Identified:
    customer_id: int
    kind: str  # "account" or "order"
    order: OrderFact | None = None


class IvrFlow:
    NEEDS = ("customer_by_external_id", "order_by_reference")  # of its IdentityDirectory

    def __init__(self, settings: IvrConfig, directory: IdentityDirectory, router: Router) -> None:
        self._settings = settings
        self._directory = directory
        self._router = router
        self._when = frozenset(settings.when)
        self.stats = IvrStats()

    def wanted(self, decision: RouteDecision) -> bool:
        """Whether this call is asked: its number said not who it is, and the CRM answered."""
        return (
            self._settings.enabled
            and not decision.fallback
            and decision.customer_id is None
            and decision.status in self._when
        )

    async def run(
        self,
        agi: Prompter,
        decision: RouteDecision,
        caller: str | None,
        dnid: str | None,
        *,
        typed_for: Callable[[float], None] = lambda _s: None,
    ) -> RouteDecision:
        """The call's decision after asking; ``typed_for(seconds)`` is told how long each GET
        DATA took (the caller's own time, which the session deadline does not count)."""
        s = self._settings
        self.stats.sessions += 1
        record: dict[str, Any] = {"outcome": "no_input", "attempts": 0}
        # The dialplan answers only before the queue (ringback while routing): a prompt needs an
        # answered channel. Answering one already up is a harmless "200 result=0".
        answered = await agi.command(b"ANSWER\n")
        if answered.code != 200 or answered.result == "-1":
            record["outcome"] = "ended"
            self._count(record)
            return dataclasses.replace(decision, ivr=record)
        for attempt in range(1, s.attempts + 1):
            record["attempts"] = attempt
            prompt = s.prompt if attempt == 1 else s.retry_prompt
            typed = await self._ask(agi, prompt, s.max_digits, typed_for)
            if typed.failed:
                record["outcome"] = "ended"  # hung up, or the prompt cannot be played
                break
            if not typed.digits.strip("*#"):
                continue
            digits = "".join(c for c in typed.digits if c.isdigit())
            record["digits"] = len(digits)
            try:
                async with asyncio.timeout(s.lookup_timeout_ms / 1000):
                    found = await self._identify(digits)
                    routed = (
                        await self._router.route_customer(found.customer_id, caller, dnid)
                        if found is not None
                        else None
                    )
            except Exception as exc:  # TimeoutError included: the CRM is slow or down
                record["outcome"] = "crm_unavailable"
                log.warning("ivr: crm unavailable, routed as before", why=type(exc).__name__)
                break
            if found is None or routed is None or routed.customer_id is None:
                record["outcome"] = "not_identified"
                log.info("ivr: digits not recognised", attempt=attempt, digits=len(digits))
                continue
            record.update(outcome="identified", kind=found.kind)
            variables = {**routed.variables, "CTI_IDENTIFIED_BY": "ivr"}
            if found.order is not None and s.deflect:
                state = found.order.delivery_state or found.order.status
                record["delivery_state"] = state
                told, ended = await self._deflect(agi, state, typed_for)
                record.update(told=told, deflected=ended)
                if ended:
                    variables["CTI_IVR_END"] = "1"
            self._count(record)
            log.info(
                "ivr: caller identified",
                kind=found.kind,
                customer_id=found.customer_id,
                attempt=attempt,
                deflected=record.get("deflected", False),
            )
            return dataclasses.replace(routed, identified_by="ivr", ivr=record, variables=variables)
        self._count(record)
        log.info("ivr: caller not identified", outcome=record["outcome"], attempts=attempt)
        return dataclasses.replace(decision, ivr=record)

    def _count(self, record: dict[str, Any]) -> None:
        outcome = record["outcome"]
        self.stats.outcomes[outcome] = self.stats.outcomes.get(outcome, 0) + 1
        self.stats.told += bool(record.get("told"))
        self.stats.deflected += bool(record.get("deflected"))

    async def _ask(
        self, agi: Prompter, prompt: str, max_digits: int, typed_for: Callable[[float], None]
    ) -> Typed:
        """One GET DATA, bounded (a prompt, then a digit timeout per digit and one more)."""
        timeout_ms = self._settings.digit_timeout_ms
        bound = PROMPT_ALLOWANCE_S + timeout_ms / 1000 * (max_digits + 1)
        started = time.monotonic()
        try:
            async with asyncio.timeout(bound):
                reply = await agi.command(get_data(prompt, timeout_ms, max_digits))
        finally:
            typed_for(time.monotonic() - started)
        return Typed.of(reply)

    async def _identify(self, digits: str) -> Identified | None:
        s = self._settings
        customer_id = await self._directory.customer_by_external_id(
            s.account_format.format(digits=digits)
        )
        if customer_id is not None:
            return Identified(customer_id, "account")
        order = await self._directory.order_by_reference(s.order_format.format(digits=digits))
        if order is not None:
            return Identified(order[0], "order", order[1])
        return None

    async def _deflect(
        self, agi: Prompter, state: str, typed_for: Callable[[float], None]
    ) -> tuple[bool, bool]:
        """Tell the delivery state; offer to end the call. (told, the caller ended there)."""
        s = self._settings
        told = False
        prompt = s.state_prompts.get(state)
        if prompt:
            reply = await agi.command(stream_file(prompt))
            told = reply.ok and reply.result not in (None, "-1")
        if not told:  # no prompt for the state, or it could not be played: spell it
            reply = await agi.command(say_alpha(state.replace("_", " ")))
            told = reply.ok and reply.result not in (None, "-1")
        if not told or not s.end_digit:
            return told, False
        typed = await self._ask(agi, s.end_prompt, 1, typed_for)
        return told, typed.digits == s.end_digit
