"""The router answers within its deadline whatever the CRM does; the decision log remembers why."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from fakes.crm_directory import DeadDirectory, MemoryDirectory, SlowDirectory, customer
from fakes.routing import CLOSED, OPEN, routing_config, routing_rules

from crm_core.types import CustomerView, Resolution, RoutingFacts
from cti.routing.decisions import DecisionLog
from cti.routing.router import RouteDecision, Router
from cti.routing.rules import parse_rules

VIP = "+441110000001"


async def test_a_slow_crm_gives_the_default_route_with_reason_fallback_in_time() -> None:
    slow = SlowDirectory({VIP: customer(1, flags=("vip",))}, delay_s=5.0)
    router = Router(slow, routing_rules(), deadline_s=0.2, clock=lambda: OPEN)
    started = time.perf_counter()
    decision = await router.route(VIP)
    elapsed = time.perf_counter() - started
    assert 0.17 < elapsed < 0.2 + 0.1  # the deadline less its sending margin (+ scheduling)
    assert decision == RouteDecision(
        queue="tier1",
        priority=0,
        tier="tier1",
        customer_id=None,
        reason="fallback",
        rule="default",
        variables={},
        fallback=True,
        status="unavailable",
    )
    await router.aclose()  # the abandoned lookup is cancelled, not left running
    assert not router._abandoned


async def test_a_dead_database_gives_the_fallback_at_once() -> None:
    router = Router(DeadDirectory(), routing_rules(), deadline_s=1.0, clock=lambda: OPEN)
    started = time.perf_counter()
    decision = await router.route(VIP)
    assert time.perf_counter() - started < 0.1
    assert (decision.reason, decision.rule, decision.fallback) == ("fallback", "default", True)


async def test_a_closed_centre_routes_out_of_hours_even_with_the_crm_down() -> None:
    router = Router(DeadDirectory(), routing_rules(), deadline_s=1.0, clock=lambda: CLOSED)
    decision = await router.route(VIP)
    assert (decision.queue, decision.rule, decision.fallback) == ("afterhours", "closed", False)
    assert decision.customer_id is None and decision.status == "unavailable"


async def test_a_crm_just_inside_the_deadline_is_waited_for() -> None:
    slow = SlowDirectory({VIP: customer(1, flags=("vip",))}, delay_s=0.05)
    router = Router(slow, routing_rules(), deadline_s=0.5, clock=lambda: OPEN)
    decision = await router.route(VIP)
    assert (decision.queue, decision.customer_id, decision.fallback) == ("vip", 1, False)


async def test_many_calls_with_a_slow_crm_all_answer_within_the_deadline() -> None:
    router = Router(SlowDirectory(delay_s=3.0), routing_rules(), deadline_s=0.2, clock=lambda: OPEN)
    started = time.perf_counter()
    decisions = await asyncio.gather(*(router.route(f"+4411100{i:05d}") for i in range(100)))
    assert time.perf_counter() - started < 1.5  # far below the CRM's 3 s, with room for load
    assert {d.reason for d in decisions} == {"fallback"}
    await router.aclose()


async def test_a_broken_rule_evaluation_never_raises() -> None:
    class Broken(MemoryDirectory):
        async def view(self, customer_id: int) -> None:  # type: ignore[override]
            return None  # the customer vanished between resolve and view

    directory = Broken({VIP: customer(1, flags=("vip",))})
    router = Router(directory, routing_rules(), deadline_s=0.5, clock=lambda: OPEN)
    decision = await router.route(VIP)
    assert (decision.rule, decision.customer_id, decision.fallback) == ("default", None, False)


def decision(queue: str) -> RouteDecision:
    return RouteDecision(queue, 0, queue, None, "why", "rule")


def test_the_decision_log_finds_a_decision_by_uniqueid_and_by_channel() -> None:
    log = DecisionLog()
    at = datetime(2026, 11, 23, tzinfo=UTC)
    log.record("1795396343.35", "Local/08005550100@from-pstn-00000011;2", decision("tier2"), at)
    assert log.get("1795396343.35") == decision("tier2")
    assert log.by_channel("Local/08005550100@from-pstn-00000011;2") == decision("tier2")
    assert log.get("nope") is None and log.by_channel("nope") is None
    entry = log.entry("1795396343.35")
    assert entry is not None and entry.at == at


def test_the_decision_log_is_bounded_and_forgets_the_oldest_first() -> None:
    log = DecisionLog(capacity=3)
    at = datetime(2026, 11, 23, tzinfo=UTC)
    for i in range(5):
        log.record(f"u{i}", f"chan{i}", decision(f"q{i}"), at)
    assert len(log) == 3
    assert log.get("u0") is None and log.by_channel("chan1") is None
    assert log.get("u4") == decision("q4") and log.by_channel("chan2") == decision("q2")


async def test_rules_that_only_ask_who_is_calling_never_load_the_360_view() -> None:
    class Counting(MemoryDirectory):
        views = 0

        async def view(self, customer_id: int) -> CustomerView | None:
            Counting.views += 1
            return await super().view(customer_id)

    rules = parse_rules(
        {
            "rules": [
                {"name": "withheld", "when": {"caller": "anonymous"}, "then": {"tier": "tier2"}}
            ]
        },
        routing_config().tiers,
    )
    directory = Counting({VIP: customer(1, flags=("vip",))})
    decision = await Router(directory, rules, deadline_s=0.5).route(VIP)
    assert (decision.rule, decision.customer_id, Counting.views) == ("default", 1, 0)


class OneHopDirectory(MemoryDirectory):
    """Answers the router only through ``resolve_for_routing`` (``resolve`` would fail)."""

    def __init__(self, *args: object, delay_s: float = 0.0, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.delay_s = delay_s
        self.hops: list[tuple[str | None, bool]] = []

    async def resolve_for_routing(
        self, caller_id: str | None, *, facts: bool = True
    ) -> tuple[Resolution, RoutingFacts | None]:
        self.hops.append((caller_id, facts))
        await asyncio.sleep(self.delay_s)
        resolution = await super().resolve(caller_id)
        view = await self.view(resolution.customer_id) if resolution.customer_id else None
        return resolution, RoutingFacts.from_view(view) if view and facts else None

    async def resolve(self, caller_id: str | None) -> Resolution:
        raise AssertionError("the router should ask in one hop")


async def test_a_directory_with_a_one_hop_lookup_is_asked_once_per_call() -> None:
    directory = OneHopDirectory({VIP: customer(7, flags=("vip",))})
    router = Router(directory, routing_rules(), deadline_s=0.5, clock=lambda: OPEN)
    decision = await router.route(VIP)
    assert (decision.queue, decision.customer_id, decision.status) == ("vip", 7, "match")
    assert directory.hops == [(VIP, True)]


async def test_a_slow_one_hop_lookup_gives_the_fallback_in_time_and_leaves_nothing_running() -> (
    None
):
    directory = OneHopDirectory({VIP: customer(7, flags=("vip",))}, delay_s=5.0)
    router = Router(directory, routing_rules(), deadline_s=0.2, clock=lambda: OPEN)
    started = time.perf_counter()
    decision = await router.route(VIP)
    assert time.perf_counter() - started < 0.3
    assert (decision.reason, decision.fallback) == ("fallback", True)
    assert decision.status == "unavailable"
    assert not [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
