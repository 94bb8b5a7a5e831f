"""Who calls and how people behave: caller profiles, agent behaviour, the dialplan's shape."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

CallerKind = Literal["known", "unknown", "anonymous", "vip", "arrears", "case"]
TalkEnd = Literal["caller", "agent", "blind", "attended"]


@dataclass(frozen=True)
class CallerProfile:
    """One kind of caller. ``number`` None means a withheld number (``anonymous``)."""

    kind: CallerKind
    numbers: tuple[str | None, ...]
    weight: float = 1.0
    # How long the caller waits in a queue before hanging up (abandon), seconds.
    patience_s: tuple[float, float] = (60.0, 120.0)
    name: str = "<unknown>"


@dataclass(frozen=True)
class AgentBehaviour:
    """How simulated agents handle a call. Times are seconds before ``time_scale``."""

    ring_s: tuple[float, float] = (1.0, 3.0)  # ringing before the agent picks up
    miss_rate: float = 0.1  # lets the phone ring out (AgentRingNoAnswer)
    talk_s: tuple[float, float] = (6.0, 20.0)
    # How the conversation ends; escalations happen only where a higher tier exists.
    endings: dict[TalkEnd, float] = field(
        default_factory=lambda: {"caller": 0.55, "agent": 0.25, "blind": 0.12, "attended": 0.08}
    )


@dataclass(frozen=True)
class Dialplan:
    """What ``docker/asterisk/extensions.conf`` does, as data.

    ``transfer`` maps extensions of the ``transfer`` context to the queue they enter (targets of
    BlindTransfer, Atxfer and Redirect); ``escalation`` maps a queue to the extension an agent
    there escalates to.
    """

    did: str = "08005550100"
    default_queue: str = "tier1"
    agi_host: str | None = "127.0.0.1"
    agi_port: int = 4573
    agi_timeout_s: float = 10.0
    transfer_context: str = "transfer"
    transfer: dict[str, str] = field(
        default_factory=lambda: {"8001": "tier1", "8002": "tier2", "8003": "tier3"}
    )
    escalation: dict[str, str] = field(default_factory=lambda: {"tier1": "8002", "tier2": "8003"})

    def queue_for(self, context: str, exten: str) -> str | None:
        if context != self.transfer_context:
            return None
        if exten in self.transfer:
            return self.transfer[exten]
        return exten if exten in self.transfer.values() else None


def pick_caller(
    profiles: list[CallerProfile], rng: random.Random
) -> tuple[CallerProfile, str | None]:
    profile = rng.choices(profiles, weights=[p.weight for p in profiles])[0]
    return profile, rng.choice(profile.numbers)


def random_numbers(rng: random.Random, count: int, prefix: str = "+44207946") -> tuple[str, ...]:
    """Numbers in Ofcom's drama range (020 7946 0xxx) so that they reach nobody."""
    return tuple(f"{prefix}{rng.randrange(0, 10_000):04d}" for _ in range(count))


def load_mix(rng: random.Random) -> list[CallerProfile]:
    """Callers for ``cti sim`` when no CRM numbers are known: mostly unknown, some withheld."""
    return [
        CallerProfile("unknown", random_numbers(rng, 500), weight=0.85),
        CallerProfile("anonymous", (None,), weight=0.1),
        CallerProfile("unknown", random_numbers(rng, 50), weight=0.05, patience_s=(3.0, 8.0)),
    ]


def demo_mix(known: dict[str, str], unknown: tuple[str, ...]) -> list[CallerProfile]:
    """The demo's callers: ``known`` maps a role (``crm_core.seed.DEMO_NUMBERS``) to a number.

    Known customers, VIPs, a caller in arrears, open cases, unknown and withheld numbers, and
    some impatient callers who abandon while queued.
    """
    roles: dict[str, tuple[CallerKind, float]] = {
        "vip": ("vip", 1.0),
        "arrears": ("arrears", 1.0),
        "open_case": ("case", 1.0),
    }
    profiles = [
        CallerProfile(kind, (known[role],), weight=weight)
        for role, (kind, weight) in roles.items()
        if role in known
    ]
    ordinary = tuple(n for role, n in known.items() if role not in roles)
    if ordinary:
        profiles.append(CallerProfile("known", ordinary, weight=3.0))
    profiles.append(CallerProfile("unknown", unknown, weight=1.5))
    profiles.append(CallerProfile("anonymous", (None,), weight=1.0))
    profiles.append(CallerProfile("unknown", unknown, weight=1.0, patience_s=(1.0, 2.5)))
    return profiles
