"""Alerts: a queue's service level or longest wait past its limit, an agent paused too long.

``alerts(board, ...)`` is pure: the board's rows in, the alerts that hold now out.
``AlertEvent`` is the one outward shape of an alert, a call-event-like message
(``{"event": "alert", "call": null, "ts", ...}``) for the console; webhooks and the bus get it
as ``connectors.events.alert_payload``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cti.config import SupervisorConfig


@dataclass(frozen=True, slots=True)
class AlertEvent:
    kind: str  # service_level / longest_wait / long_pause
    subject: str  # the queue or the agent
    value: float
    limit: float
    ts: float
    raised: bool = True  # False: the condition cleared

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.subject}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "call": None,
            "event": "alert",
            "ts": self.ts,
            "kind": self.kind,
            "subject": self.subject,
            "value": self.value,
            "limit": self.limit,
            "raised": self.raised,
        }


def pause_limit(config: SupervisorConfig, reason: str) -> float:
    return config.max_pause_by_reason.get(reason, config.max_pause_s)


def alerts(board: dict[str, Any], config: SupervisorConfig, now: float) -> list[AlertEvent]:
    found: list[AlertEvent] = []
    for q in board["queues"]:
        level = q.get("service_level")
        if level is not None and level < q["target"]:
            found.append(AlertEvent("service_level", q["queue"], level, q["target"], now))
        if config.max_wait_s and q["longest_wait_s"] > config.max_wait_s:
            found.append(
                AlertEvent("longest_wait", q["queue"], q["longest_wait_s"], config.max_wait_s, now)
            )
    for a in board["agents"]:
        paused_s = a.get("paused_s")
        if paused_s is None:
            continue
        limit = pause_limit(config, a.get("reason") or "")
        if limit and paused_s > limit:
            found.append(AlertEvent("long_pause", a["name"], paused_s, limit, now))
    return found
