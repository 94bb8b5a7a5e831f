"""With the CRM failing, routed calls get the fallback at once (circuit breaker), and the CRM is
used again as soon as it answers."""

from __future__ import annotations

import asyncio
import time

from fakes.crm_directory import HangingDirectory, customer
from fakes.routing import OPEN, routing_rules

from cti.routing.router import CircuitBreaker, Router

VIP = "+447700900456"


async def timed_route(router: Router) -> tuple[float, bool]:
    started = time.perf_counter()
    decision = await router.route(VIP)
    return time.perf_counter() - started, decision.fallback


async def test_after_the_breaker_opens_a_hanging_crm_no_longer_delays_calls() -> None:
    crm = HangingDirectory({VIP: customer(7, flags=("vip",))})
    breaker = CircuitBreaker(failures_to_open=3, cooldown_s=1.0)
    router = Router(crm, routing_rules(), deadline_s=0.3, clock=lambda: OPEN, breaker=breaker)

    first = [await timed_route(router) for _ in range(3)]
    assert all(fallback and elapsed > 0.25 for elapsed, fallback in first)  # waited the deadline
    assert breaker.state == "open"

    rest = [await timed_route(router) for _ in range(50)]
    assert all(fallback for _, fallback in rest)
    assert max(elapsed for elapsed, _ in rest) < 0.05  # well under the 300 ms deadline
    assert router.stats.fallbacks == {"timeout": 3, "circuit_open": 50}

    crm.healed.set()
    await asyncio.sleep(1.1)  # the cool-down: the next call is the trial
    elapsed, fallback = await timed_route(router)
    assert not fallback and elapsed < 0.25
    assert breaker.state == "closed"
    decision = await router.route(VIP)
    assert (decision.tier, decision.customer_id, decision.fallback) == ("vip", 7, False)


async def test_a_failed_trial_opens_the_breaker_for_another_cool_down() -> None:
    crm = HangingDirectory({VIP: customer(7, flags=("vip",))})
    breaker = CircuitBreaker(failures_to_open=2, cooldown_s=0.3)
    router = Router(crm, routing_rules(), deadline_s=0.2, clock=lambda: OPEN, breaker=breaker)
    for _ in range(2):
        await router.route(VIP)
    assert breaker.state == "open" and breaker.opened == 1
    await asyncio.sleep(0.35)
    elapsed, fallback = await timed_route(router)  # the trial: still hanging
    assert fallback and elapsed > 0.15
    assert breaker.state == "open" and breaker.opened == 2
    elapsed, fallback = await timed_route(router)
    assert fallback and elapsed < 0.05
