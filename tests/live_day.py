"""A generated day of a contact centre, as the call events (and wrap-ups) ``LiveStats`` is fed.

Six queues in three tiers, 200 agents; each call joins a tier-1 queue and is abandoned (a
quarter of those within the short-abandon grace), times out of the queue, or is answered
(some put on hold, some blind-transferred to another queue of the same tier or escalated to
tier 2, answered there or abandoned); most answered calls get a wrap-up after they end. Times
are fractional, as Asterisk's AMI ``Timestamp`` gives them; a fixed seed gives the same day.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cti.stats.figures import Thresholds
from cti.tracker.events import CallEvent

DAY_START = 1_795_392_000.0 - 1_795_392_000.0 % 86400  # a UTC midnight
TIERS = {
    "sales": "tier1",
    "support": "tier1",
    "billing": "tier1",
    "support2": "tier2",
    "vip": "tier2",
    "experts": "tier3",
}
LIMITS = Thresholds(
    default_s=20.0, per_queue={"vip": 10.0}, short_abandon_s=5.0, per_queue_target={"vip": 0.9}
)
AGENTS = {
    tier: [f"Agent {base + n}" for n in range(count)]
    for tier, base, count in (("tier1", 1000, 140), ("tier2", 2000, 50), ("tier3", 3000, 10))
}


@dataclass(frozen=True)
class WrapUp:
    call: str
    agent: str
    seconds: float


Step = CallEvent | WrapUp


def _member(agent: str) -> dict[str, str]:
    ext = agent.split()[-1]
    return {"member": agent, "interface": f"Local/{ext}@agents"}


class _Call:
    def __init__(self, rnd: random.Random, call: str, at: float) -> None:
        self.rnd, self.call, self.t = rnd, call, at
        self.steps: list[tuple[float, int, Step]] = []

    def ev(self, name: str, at: float, **data: Any) -> None:
        at = round(at, 6)
        event = CallEvent(self.call, name, at, data)  # type: ignore[arg-type]
        self.steps.append((at, len(self.steps), event))

    def queue_leg(self, queue: str, at: float) -> tuple[str, float, str | None]:
        """One stay in a queue: (how it ended, when, the agent who answered)."""
        rnd = self.rnd
        self.ev("queued", at, queue=queue, position=1)
        r = rnd.random()
        if r < 0.12:  # the caller gives up: a quarter within the grace
            wait = rnd.uniform(0.2, 5.0) if rnd.random() < 0.25 else 5 + rnd.expovariate(1 / 40)
            if wait > 3:
                self.ev("ringing", at + 2.5, queue=queue, **_member(self.agent(queue)))
            self.ev("abandoned", at + wait, queue=queue, wait_s=round(wait, 3))
            return "abandoned", at + wait, None
        if r < 0.15:  # the queue's timeout
            self.ev("left_queue", at + 300, queue=queue, reason="timeout")
            return "left", at + 300, None
        wait = rnd.expovariate(1 / 16)
        agent = self.agent(queue)
        self.ev("ringing", at + wait * 0.6, queue=queue, **_member(agent))
        self.ev("answered", at + wait, agent=agent, queue=queue, **_member(agent))
        return "answered", at + wait, agent

    def agent(self, queue: str) -> str:
        return self.rnd.choice(AGENTS[TIERS[queue]])

    def play(self) -> None:
        rnd, t = self.rnd, self.t
        self.ev("offered", t, caller=f"+4420{rnd.randrange(10**7, 10**8)}")
        queue = rnd.choice(("sales", "support", "support", "billing"))
        how, at, agent = self.queue_leg(queue, t + rnd.uniform(0.5, 8))
        while how == "answered" and agent is not None:
            talk = rnd.uniform(20, 420)
            if rnd.random() < 0.2:
                held = at + rnd.uniform(5, talk / 2)
                self.ev("hold", held, by=agent)
                self.ev("unhold", held + rnd.uniform(3, talk / 3), by=agent)
            r = rnd.random()
            if r < 0.09 and TIERS[queue] != "tier3":  # escalated to the next tier
                to = {"tier1": ("support2", "vip"), "tier2": ("experts",)}[TIERS[queue]]
                nxt = rnd.choice(to)
            elif r < 0.12:  # sent to another queue of the same tier
                nxt = rnd.choice([q for q, tier in TIERS.items() if tier == TIERS[queue]])
            else:
                end = at + talk
                self.ev("ended", end, hangup_by=rnd.choice(("caller", "agent")))
                if rnd.random() < 0.8:
                    wrap = round(rnd.uniform(0, 120), 3)
                    self.steps.append((end + wrap, len(self.steps), WrapUp(self.call, agent, wrap)))
                return
            self.ev("transferred", at + talk, kind="blind", from_agent=agent, to_queue=nxt)
            queue = nxt
            how, at, agent = self.queue_leg(queue, at + talk + 0.05)
        self.ev("ended", at + 0.01 if how != "left" else at + 2, hangup_by="caller")


def day(calls: int = 55_500, seed: int = 7, start: float = DAY_START) -> list[Step]:
    """The day's events and wrap-ups in time order; calls arrive over the first 23 hours,
    busier in the afternoon."""
    rnd = random.Random(seed)
    per_call: list[list[tuple[float, int, Step]]] = []
    for n in range(calls):
        hour = rnd.choices(range(23), weights=[1] * 7 + [4] * 4 + [3] * 2 + [6] * 5 + [2] * 5)[0]
        call = _Call(rnd, f"1795{n:07d}.{n}", start + hour * 3600 + rnd.uniform(0, 3600))
        call.play()
        per_call.append(sorted(call.steps, key=lambda s: (s[0], s[1])))
    return [step for _, _, step in heapq.merge(*per_call, key=lambda s: s[0])]


def play(live: Any, steps: list[Step]) -> Iterator[Any]:
    """Feed the steps to a ``LiveStats`` (or the reference); yields what each returned."""
    for step in steps:
        if isinstance(step, WrapUp):
            yield live.wrap_up(step.call, step.agent, step.seconds)
        else:
            yield live.apply(step)
