"""The router: caller -> queue, priority and tier, within a deadline whatever the CRM does.

Rules are tried in order, first match wins. The CRM lookup (who is calling and, when a rule needs
it, what the CRM knows of them, in one hop where the directory offers ``resolve_for_routing``)
is awaited only as long as the deadline allows; a rule that needs no CRM (dialled number,
business hours) still routes when the CRM is down. A slow or failing CRM gives the default route
with reason ``fallback`` as soon as a rule needs what it would have said.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog

from crm_core.types import (
    Candidate,
    Resolution,
    RoutingFacts,
    RoutingFactsDirectory,
    RoutingResolver,
)
from cti.routing.rules import CallFacts, CrmFacts, Outcome, RuleSet

if TYPE_CHECKING:
    from crm_core.types import CustomerDirectory

log = structlog.get_logger(__name__)

FALLBACK_REASON = "fallback"
_CIRCUIT_OPEN = "the CRM keeps failing: not asked until its cool-down ends"


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
    identified_by: str | None = None  # "ivr": the caller typed who they are (cti.routing.ivr)
    # What the IVR did: kind of digits typed, attempts, outcome, deflection (never the digits).
    ivr: dict[str, Any] = field(default_factory=dict)
    # The caller withheld a number Asterisk holds all the same (cti.agi.env.withheld): the
    # call is a withheld caller's, whatever number AMI shows (cti.calls).
    withheld: bool = False

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
            **({"identified_by": self.identified_by} if self.identified_by else {}),
            **({"ivr": dict(self.ivr)} if self.ivr else {}),
            **({"withheld": True} if self.withheld else {}),
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


@dataclass
class RouterStats:
    """What ``/metrics`` shows of the router (``cti.metrics``)."""

    decisions: int = 0
    # Calls given the default route because the CRM could not be asked, by why: "timeout",
    # "error", "circuit_open".
    fallbacks: dict[str, int] = field(default_factory=dict)
    deadline_overruns: int = 0  # decisions that took longer than the deadline


class CircuitBreaker:
    """Stops asking a CRM that keeps failing, so that every call does not wait the deadline.

    Closed: every lookup is tried; ``failures_to_open`` consecutive failures or timeouts open
    it. Open: no lookup for ``cooldown_s`` (calls fall back at once). Then half-open: one call
    tries; its success closes the breaker, its failure opens it for another cool-down.
    """

    def __init__(
        self,
        *,
        failures_to_open: int = 5,
        cooldown_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = max(1, failures_to_open)
        self._cooldown_s = cooldown_s
        self._clock = clock
        self.state = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._trial = False  # a half-open trial is running
        self.opened = 0  # times it opened

    def allow(self) -> bool:
        if self.state == "closed":
            return True
        if self.state == "open" and self._clock() - self._opened_at >= self._cooldown_s:
            self.state = "half_open"
            self._trial = False
        if self.state == "half_open" and not self._trial:
            self._trial = True
            return True
        return False

    def success(self) -> None:
        if self.state != "closed":
            log.info("crm circuit closed: the CRM answers again")
        self.state = "closed"
        self._failures = 0
        self._trial = False

    def failure(self) -> None:
        self._failures += 1
        self._trial = False
        if self.state == "half_open" or self._failures >= self._threshold:
            if self.state != "open":
                self.opened += 1
                log.warning(
                    "crm circuit open: routing without the CRM",
                    failures=self._failures,
                    cooldown_s=self._cooldown_s,
                )
            self.state = "open"
            self._opened_at = self._clock()

    def abandon(self) -> None:
        """A trial lookup was cancelled without an answer: let the next call try."""
        self._trial = False


class Router:
    def __init__(
        self,
        directory: CustomerDirectory,
        rules: RuleSet,
        *,
        deadline_s: float = 0.25,
        clock: Callable[[], datetime] = _utc_now,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self._directory = directory
        self.breaker = breaker or CircuitBreaker()
        self.stats = RouterStats()
        self._facts_source = directory if isinstance(directory, RoutingFactsDirectory) else None
        self._resolver = directory if isinstance(directory, RoutingResolver) else None
        self._rules = rules
        self._needs_view = rules.needs_view
        self._deadline_s = deadline_s
        # ``deadline_s`` is for the whole answer: keep a little of it for sending the variables.
        self._send_margin_s = min(0.02, deadline_s * 0.1)
        self._clock = clock
        # Lookups run in the caller's task and are cancelled there at the deadline: none is
        # ever left running, so this stays empty (kept for ``aclose``'s contract).
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
        started = loop.time()
        deadline = started + self._deadline_s - self._send_margin_s
        try:
            call = self._rules.call_facts(at or self._clock(), dnid)
            crm, why = await self._lookup_until(caller, deadline)
            decision = self._decide(call, crm, why)
        except Exception:
            log.exception("routing failed, default route", caller=caller)
            self._count_fallback("error")
            decision = fallback_decision(self._rules)
        self.stats.decisions += 1
        if loop.time() - started > self._deadline_s:
            self.stats.deadline_overruns += 1
            log.warning(
                "routing decision past its deadline",
                ms=round((loop.time() - started) * 1000, 1),
                deadline_ms=round(self._deadline_s * 1000),
            )
        return decision

    async def route_customer(
        self, customer_id: int, caller: str | None, dnid: str | None = None
    ) -> RouteDecision:
        """The decision for a caller identified otherwise than by number (the IVR): the rules
        see the customer's routing facts as for a known caller. CRM failures are raised (the
        caller has a route already); the caller bounds the time."""
        call = self._rules.call_facts(self._clock(), dnid)
        resolution = Resolution("match", None, caller or "", (Candidate(customer_id, None, ""),))
        facts = await self._facts(customer_id) if self._needs_view else None
        return self._decide(call, CrmFacts(resolution, facts), "")

    def _count_fallback(self, kind: str) -> None:
        self.stats.fallbacks[kind] = self.stats.fallbacks.get(kind, 0) + 1

    async def _lookup_until(
        self, caller: str | None, deadline: float
    ) -> tuple[CrmFacts | None, str]:
        """The CRM's answer, or None and why not (too slow, failed). Awaited in this task under
        one deadline: no task, future or callback per call beyond the lookup's own. While the
        circuit breaker is open the CRM is not asked at all."""
        breaker = self.breaker
        if not breaker.allow():
            return None, _CIRCUIT_OPEN
        try:
            async with asyncio.timeout_at(deadline):
                found = await self._lookup(caller)
        except TimeoutError:
            breaker.failure()
            return None, f"no answer within {self._deadline_s * 1000:.0f} ms"
        except asyncio.CancelledError:
            breaker.abandon()
            raise
        except Exception as exc:
            breaker.failure()
            return None, f"{type(exc).__name__}: {exc}"
        breaker.success()
        return found, ""

    def _decide(self, call: CallFacts, crm: CrmFacts | None, why: str) -> RouteDecision:
        for rule in self._rules.rules:
            if not rule.matches_locally(call):
                continue
            captures: dict[str, str] | None = {}
            if rule.needs_crm:
                if crm is None:
                    kind = (
                        "circuit_open"
                        if why == _CIRCUIT_OPEN
                        else "timeout"
                        if why.startswith("no answer")
                        else "error"
                    )
                    self._count_fallback(kind)
                    log.warning("crm unavailable, fallback route", why=why, rule=rule.name)
                    return fallback_decision(self._rules)
                captures = rule.match_crm(crm)
                if captures is None:
                    continue
            return self._decision(self._rules.apply(rule.action, captures), rule.name, crm)
        return self._decision(self._rules.apply(self._rules.default), "default", crm)

    def _decision(self, outcome: Outcome, rule: str, crm: CrmFacts | None) -> RouteDecision:
        customer_id = None
        if crm is not None and crm.resolution.status == "match":
            customer_id = crm.resolution.customer_id
            if self._needs_view and crm.facts is None:
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

    async def _lookup(self, caller: str | None) -> CrmFacts:
        if self._resolver is not None:  # who is calling and what the rules need: one hop
            resolution, facts = await self._resolver.resolve_for_routing(
                caller, facts=self._needs_view
            )
            return CrmFacts(resolution, facts)
        resolution = await self._directory.resolve(caller)
        facts = None
        customer_id = resolution.customer_id if resolution.status == "match" else None
        if customer_id is not None and self._needs_view:
            facts = await self._facts(customer_id)
        return CrmFacts(resolution, facts)

    async def _facts(self, customer_id: int) -> RoutingFacts | None:
        """What the rules look at: one cheap query where the CRM offers it, else the view."""
        if self._facts_source is not None:
            return await self._facts_source.routing_facts(customer_id)
        view = await self._directory.view(customer_id)
        return RoutingFacts.from_view(view) if view is not None else None

    async def aclose(self) -> None:
        """Wait for any lookup still cancelling (none: each is cancelled in its own call)."""
        pending = list(self._abandoned)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
