"""Customer directories for routing tests: in memory, deliberately slow, and dead."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from crm_core.types import (
    Candidate,
    CaseView,
    CustomerView,
    OrderView,
    Resolution,
)


def customer(
    customer_id: int,
    name: str = "Ada Lovelace",
    *,
    flags: tuple[str, ...] = (),
    case_tiers: tuple[str, ...] = (),
    products: tuple[str, ...] = (),
    orders: tuple[tuple[str, str | None], ...] = (),  # (status, delivery_state)
    language: str | None = "en",
) -> CustomerView:
    """A 360° view with just what routing looks at."""
    return CustomerView(
        customer_id=customer_id,
        external_id=f"C{customer_id}",
        name=name,
        kind="person",
        organisation=None,
        language=language,
        email=None,
        address=None,
        phones=(),
        flags=flags,
        highlights=flags,
        open_cases=tuple(
            CaseView(100 + i, "a problem", "open", tier, None, None, "")
            for i, tier in enumerate(case_tiers)
        ),
        orders=tuple(
            OrderView(200 + i, f"ORD-{200 + i}", status, delivery, None, None)
            for i, (status, delivery) in enumerate(orders)
        ),
        products=products,
        interactions=(),
    )


@dataclass
class MemoryDirectory:
    """Callers by exact caller ID; ``anonymous``/empty are withheld, short numbers internal."""

    customers: dict[str, CustomerView] = field(default_factory=dict)
    ambiguous: set[str] = field(default_factory=set)
    resolved: list[str | None] = field(default_factory=list)

    async def resolve(self, caller_id: str | None) -> Resolution:
        self.resolved.append(caller_id)
        caller = caller_id or ""
        if caller in ("", "anonymous"):
            return Resolution("anonymous", None, caller)
        if caller.isdigit() and len(caller) <= 6:
            return Resolution("internal", None, caller)
        if caller in self.ambiguous:
            return Resolution(
                "ambiguous", caller, caller, (Candidate(1, None, "A"), Candidate(2, None, "B"))
            )
        view = self.customers.get(caller)
        if view is None:
            return Resolution("unknown", caller, caller)
        return Resolution("match", caller, caller, (Candidate(view.customer_id, None, view.name),))

    async def view(self, customer_id: int) -> CustomerView | None:
        return next((v for v in self.customers.values() if v.customer_id == customer_id), None)


@dataclass
class SlowDirectory(MemoryDirectory):
    """Answers correctly, but only after ``delay_s``: a CRM under load."""

    delay_s: float = 2.0

    async def resolve(self, caller_id: str | None) -> Resolution:
        await asyncio.sleep(self.delay_s)
        return await super().resolve(caller_id)


class DeadDirectory:
    """A CRM whose database is down: every call fails at once."""

    async def resolve(self, caller_id: str | None) -> Resolution:
        raise ConnectionRefusedError("database is down")

    async def view(self, customer_id: int) -> CustomerView | None:
        raise ConnectionRefusedError("database is down")


@dataclass
class HangingDirectory(MemoryDirectory):
    """A CRM whose tables are locked: a lookup never returns until ``healed`` is set."""

    healed: asyncio.Event = field(default_factory=asyncio.Event)

    async def resolve(self, caller_id: str | None) -> Resolution:
        await self.healed.wait()
        return await super().resolve(caller_id)
