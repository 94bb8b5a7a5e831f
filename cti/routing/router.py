"""The router: caller -> queue, priority and tier, within a deadline whatever the CRM does.

Rules are tried in order. Conditions that need no CRM (dialled number, business hours) are
checked first, so a closed centre answers without waiting for the CRM; the CRM lookup starts at
once and is awaited only as long as the deadline allows. A slow or failing CRM gives the default
route with reason ``fallback``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog

from crm_core.types import RoutingFacts, RoutingFactsDirectory
from cti.routing.rules import CrmFacts, Outcome, RuleSet

if TYPE_CHECKING:
    from crm_core.types import CustomerDirectory

log = structlog.get_logger(__name__)

FALLBACK_REASON = "fallback"


@dataclass(frozen=True)
class RouteDecision:
    queue: str
    priority: int
    tier: str
    customer_id: int | None
    reason: str
    rule: str  # the matching rule's name, or "default"
    variables: dict[str, str] = field(default_factory=dict)  # extra dialplan variables
    fallback: bool = False  # the CRM was slow or down
    status: str = "unknown"  # the caller's resolution status, "unavailable" on fallback

    def dialplan_variables(self) -> dict[str, str]:
        """Everything the dialplan gets, in the order it is set."""
        return {
            "CTI_QUEUE": self.queue,
            "CTI_PRIORITY": str(self.priority),
            "CTI_TIER": self.tier,
            "CTI_CUSTOMER_ID": "" if self.customer_id is None else str(self.customer_id),
            "CTI_REASON": self.reason,
            **self.variables,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "priority": self.priority,
            "tier": self.tier,
            "customer_id": self.customer_id,
            "reason": self.reason,
            "rule": self.rule,
            "variables": dict(self.variables),
            "fallback": self.fallback,
            "status": self.status,
        }


def fallback_decision(rules: RuleSet) -> RouteDecision:
    """The default route, as the router answers it when the CRM cannot be asked in time."""
    outcome = rules.apply(rules.default)
    return RouteDecision(
        queue=outcome.queue,
        priority=outcome.priority,
        tier=outcome.tier,
        customer_id=None,
        reason=FALLBACK_REASON,
        rule="default",
        variables=outcome.variables,
        fallback=True,
        status="unavailable",
    )


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _Unavailable(Exception):
    """The CRM did not answer in time or failed."""


class Router:
    def __init__(
        self,
        directory: CustomerDirectory,
        rules: RuleSet,
        *,
        deadline_s: float = 0.25,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._directory = directory
        self._facts_source = directory if isinstance(directory, RoutingFactsDirectory) else None
        self._rules = rules
        self._deadline_s = deadline_s
        # ``deadline_s`` is for the whole answer: keep a little of it for sending the variables.
        self._send_margin_s = min(0.02, deadline_s * 0.1)
        self._clock = clock
        self._abandoned: set[asyncio.Task[CrmFacts]] = set()

    @property
    def rules(self) -> RuleSet:
        return self._rules

    @property
    def deadline_s(self) -> float:
        return self._deadline_s

    async def route(
        self, caller: str | None, dnid: str | None = None, at: datetime | None = None
    ) -> RouteDecision:
        """The decision for one call; never raises, answers within ``deadline_s`` less a margin
        (2 to 20 ms) left for sending it to Asterisk."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._deadline_s - self._send_margin_s
        lookup = asyncio.create_task(self._lookup(caller))
        try:
            return await self._decide(lookup, deadline, dnid, at or self._clock())
        except Exception:
            log.exception("routing failed, default route", caller=caller)
            return fallback_decision(self._rules)
        finally:
            if not lookup.done():
                lookup.cancel()
                self._abandoned.add(lookup)
                lookup.add_done_callback(self._abandoned.discard)
            elif not lookup.cancelled():
                lookup.exception()  # retrieved: a failure was already handled as a fallback

    async def _decide(
        self, lookup: asyncio.Task[CrmFacts], deadline: float, dnid: str | None, at: datetime
    ) -> RouteDecision:
        call = self._rules.call_facts(at, dnid)
        crm: CrmFacts | None = None
        for rule in self._rules.rules:
            if not rule.matches_locally(call):
                continue
            captures: dict[str, str] | None = {}
            if rule.needs_crm:
                try:
                    crm = await self._wait(lookup, deadline)
                except _Unavailable as exc:
                    log.warning("crm unavailable, fallback route", why=str(exc), rule=rule.name)
                    return fallback_decision(self._rules)
                captures = rule.match_crm(crm)
                if captures is None:
                    continue
            return await self._decision(
                self._rules.apply(rule.action, captures), rule.name, lookup, deadline, crm
            )
        return await self._decision(
            self._rules.apply(self._rules.default), "default", lookup, deadline, crm
        )

    async def _decision(
        self,
        outcome: Outcome,
        rule: str,
        lookup: asyncio.Task[CrmFacts],
        deadline: float,
        crm: CrmFacts | None,
    ) -> RouteDecision:
        if crm is None:  # a rule without CRM conditions: the customer id is still worth having
            try:
                crm = await self._wait(lookup, deadline)
            except _Unavailable:
                crm = None
        customer_id = None
        if crm is not None and crm.resolution.status == "match":
            customer_id = crm.resolution.customer_id
            if self._rules.needs_view and crm.facts is None:
                customer_id = None  # resolved, but gone by the time of the view

        return RouteDecision(
            queue=outcome.queue,
            priority=outcome.priority,
            tier=outcome.tier,
            customer_id=customer_id,
            reason=outcome.reason,
            rule=rule,
            variables=outcome.variables,
            fallback=False,
            status=crm.resolution.status if crm is not None else "unavailable",
        )

    async def _wait(self, lookup: asyncio.Task[CrmFacts], deadline: float) -> CrmFacts:
        if not lookup.done():
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining > 0:
                await asyncio.wait({lookup}, timeout=remaining)
        if not lookup.done():
            raise _Unavailable(f"no answer within {self._deadline_s * 1000:.0f} ms")
        if lookup.cancelled():
            raise _Unavailable("lookup cancelled")
        exc = lookup.exception()
        if exc is not None:
            raise _Unavailable(f"{type(exc).__name__}: {exc}")
        return lookup.result()

    async def _lookup(self, caller: str | None) -> CrmFacts:
        resolution = await self._directory.resolve(caller)
        facts = None
        customer_id = resolution.customer_id if resolution.status == "match" else None
        if customer_id is not None and self._rules.needs_view:
            facts = await self._facts(customer_id)
        return CrmFacts(resolution, facts)

    async def _facts(self, customer_id: int) -> RoutingFacts | None:
        """What the rules look at: one cheap query where the CRM offers it, else the view."""
        if self._facts_source is not None:
            return await self._facts_source.routing_facts(customer_id)
        view = await self._directory.view(customer_id)
        return RoutingFacts.from_view(view) if view is not None else None

    async def aclose(self) -> None:
        """Wait for lookups abandoned at their deadline to finish cancelling."""
        pending = list(self._abandoned)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
