"""The one contract of every event that leaves the daemon (webhooks and the message bus).

Events out: ``offered``, ``answered``, ``transferred``, ``abandoned``, ``ended``, and
``alert`` (the supervisor console's alerts, raised or cleared). Each is one JSON object, the
same for every webhook and for the bus::

    {
      "id": "3f0c…",                 # the idempotency key: a redelivery carries the same id
      "event": "answered",
      "call_id": "1764750000.42",    # the call's Linkedid; events of one call keep their order
      "occurred_at": "2026-12-03T09:00:20+00:00",
      "caller": "+442071234567",     # as presented (E.164 when the caller is known)
      "customer_id": 12,             # null when nobody, or nobody for sure (ambiguous)
      "customer_sources": ["store", "hubspot"],
      "queue": "tier1",              # the queue of the event, else the call's current one
      "agent": "alice",              # who talks to the caller now, when someone does
      "data": {…},                   # the call event's own fields (wait_s, kind, to, cause…)
      "interaction": {…}             # ended only: the interaction record (direction, queues,
    }                                #   agents, wait_s, talk_s, outcome, notes, disposition,
                                     #   transfers)

An ``alert`` has the same envelope with ``call_id``, ``caller`` and ``customer_id`` null;
``queue`` (a queue's alert) or ``agent`` (an agent's) names its subject, and ``data`` is
``{"kind": "service_level" | "longest_wait" | "long_pause", "subject", "value", "limit",
"raised"}`` (``raised`` false: the condition cleared)::

    {"id": "…", "event": "alert", "call_id": null, "occurred_at": "2026-12-03T09:15:00+00:00",
     "caller": null, "customer_id": null, "customer_sources": [], "queue": "tier1",
     "agent": null, "data": {"kind": "service_level", "subject": "tier1", "value": 0.72,
     "limit": 0.8, "raised": true}}

Webhook deliveries add the headers ``X-CTI-Event``, ``Idempotency-Key`` (= ``id``),
``X-CTI-Timestamp`` and ``X-CTI-Signature: v1=<hex HMAC-SHA256 of "timestamp.body">``. On the
bus, the routing key is ``<event>.<queue>`` (``none`` without a queue) and the message id is
``id``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from crm_core.types import InteractionRecord

EVENTS_OUT = frozenset({"offered", "answered", "transferred", "abandoned", "ended"})
ALERT = "alert"
AGENT_ALERTS = frozenset({"long_pause"})  # an agent's alert; the others are a queue's


def event_payload(
    event: str,
    call_id: str,
    ts: float | None,
    data: dict[str, Any],
    context: Any,
    interaction: InteractionRecord | None = None,
) -> dict[str, Any]:
    """The event as it goes out; ``context`` is the call's ``cti.calls.CallContext`` (or None)."""
    customer_id = getattr(context, "customer_id", None)
    status = getattr(context, "status", None)
    if status == "ambiguous":
        customer_id = None
    view = getattr(context, "view", None) or {}
    payload: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "event": event,
        "call_id": call_id,
        "occurred_at": datetime.fromtimestamp(ts, UTC).isoformat() if ts else None,
        "caller": getattr(context, "caller", None) or data.get("caller"),
        "customer_id": customer_id,
        "customer_sources": sorted(set((view.get("sources") or {}).values())),
        "queue": data.get("queue") or data.get("to_queue") or getattr(context, "queue", None),
        "agent": data.get("agent") or getattr(context, "agent", None),
        "data": {k: v for k, v in data.items() if _plain(v)},
    }
    if interaction is not None:
        payload["interaction"] = interaction.to_dict()
    return payload


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool | list | dict)


def alert_payload(alert: Any) -> dict[str, Any]:
    """An alert (``cti.supervisor.alerts.AlertEvent``) as it goes out."""
    of_agent = alert.kind in AGENT_ALERTS
    return {
        "id": uuid.uuid4().hex,
        "event": ALERT,
        "call_id": None,
        "occurred_at": datetime.fromtimestamp(alert.ts, UTC).isoformat(),
        "caller": None,
        "customer_id": None,
        "customer_sources": [],
        "queue": None if of_agent else alert.subject,
        "agent": alert.subject if of_agent else None,
        "data": {
            "kind": alert.kind,
            "subject": alert.subject,
            "value": alert.value,
            "limit": alert.limit,
            "raised": alert.raised,
        },
    }
