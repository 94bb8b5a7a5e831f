"""Call events: what the tracker emits, what the hub, the interaction log and stats consume."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

CallEventName = Literal[
    "offered",  # a call arrived: caller, caller_name, channel, uniqueid, dnid
    # click-to-dial: the agent's phone, rung by an Originate, dials out: agent, member,
    # interface, agent_channel, number, number_e164, customer_channel
    "outbound",
    "queued",  # QueueCallerJoin: queue, position, priority
    "ringing",  # an agent's phone rings: queue, member, interface, agent_channel
    # that phone stopped ringing without answering: member, interface, queue, agent_channel,
    # reason (ring_no_answer, cancel, busy, hangup..., or answered_elsewhere + answered_by: the
    # member or device whose phone of the same ring-all Dial answered)
    "ring_stopped",
    # agent (member name or device), interface, queue, wait_s; for an outbound call the number
    # answered: agent = who dialled, direction "outbound", customer_channel, ring_s
    "answered",
    "transferred",  # kind (blind/attended), from_agent, to, to_queue
    # Hold / Unhold: channel, uniqueid, by (the member or device whose phone held the call),
    # music_class (hold); a hold left open ends with the transfer or the end of the call
    "hold",
    "unhold",
    "abandoned",  # caller gave up while queued or ringing: queue, wait_s, position
    "left_queue",  # the caller left a queue without being answered there (redirect, timeout)
    # hangup_by (caller/agent/system; outbound: agent/customer/system), cause, duration_s,
    # talk_s (time bridged with agents), wait_s (time in queues), talk_legs [{agent, queue,
    # talk_s}], queue_legs [{queue, wait_s, result: answered/abandon/redirect/exit/hangup}],
    # direction (inbound/outbound); outbound calls also ``outbound``: the fields of the
    # ``outbound`` event + outcome (answered/no_answer/busy/cancelled/failed) and ring_s
    "ended",
    "agent_state",  # queue member state: member, interface, queue, status, paused, reason
]


@dataclass(frozen=True, slots=True)
class CallEvent:
    """One thing that happened to a call. ``call`` is the call's Linkedid (its identity)."""

    call: str
    event: CallEventName
    ts: float | None  # the AMI Timestamp header (epoch seconds) when present
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"call": self.call, "event": self.event, "ts": self.ts, **self.data}
