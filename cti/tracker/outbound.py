"""Outbound calls (click-to-dial): what tells them apart, and how they end.

Asterisk's Originate rings its first channel (the agent's phone) with a Dial that has no
calling channel: the DialBegin/DialEnd of that ring carry only ``Dest*`` headers. Once the
phone answers, the channel runs the Originate's context and extension, which dials the
number. So a call is outbound when the channel an Originate rang first dials out before the
call ever joins a queue. (A test harness that plays callers with Originate, like the recorded
Asterisk 22 lab, rings a Local channel whose other half then queues: that is an inbound call,
and it stays one.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# DialEnd DialStatus -> outcome of the outbound call
DIAL_OUTCOMES = {
    "ANSWER": "answered",
    "NOANSWER": "no_answer",
    "BUSY": "busy",
    "CANCEL": "cancelled",  # the agent hung up before the number answered
}
# Q.850 causes of the dialled channel's Hangup, when no DialEnd said more
CAUSE_OUTCOMES = {"17": "busy", "18": "no_answer", "19": "no_answer", "21": "busy"}
_NUMBER = re.compile(r"^\+?[0-9*#]{3,}$")


@dataclass(slots=True, eq=False)
class Outbound:
    """The outbound side of a call: who dialled what, and how the number answered."""

    agent: str  # queue member name of the agent's phone, or its device
    member: str | None
    interface: str  # the agent's phone as a device (``PJSIP/2001``, ``Local/2001@agents``)
    agent_channel: str
    number: str | None  # what was dialled
    dial_ts: float | None
    first_dest: str  # uniqueid of the channel the agent's channel dialled
    agent_uid: str | None = None  # the agent's phone behind a Local pipe, when there is one
    chain: set[str] = field(default_factory=set)  # uniqueids on the way to the number
    # answered / no_answer / busy / cancelled / failed; agent_no_answer, agent_busy...: the
    # agent's own phone did not answer the Originate, nothing was dialled
    status: str | None = None
    ring_s: float | None = None
    answered: bool = False

    def as_data(self, e164: str | None) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "member": self.member,
            "interface": self.interface,
            "agent_channel": self.agent_channel,
            "number": self.number,
            "number_e164": e164,
        }

    def outcome(self) -> str:
        if self.answered:
            return "answered"
        return self.status if self.status and self.status != "answered" else "failed"


def dial_outcome(status: str) -> str:
    return DIAL_OUTCOMES.get(status, "failed")


def dialled_number(event: Any) -> str | None:
    """The number asked for: the extension the dialling channel runs (the Originate's Exten),
    else the head of the dial string (``+442071234567@trunk``)."""
    exten = (event.get("Exten") or "").strip()
    if _NUMBER.match(exten):
        return exten
    head = (event.get("DialString") or "").split("@", 1)[0].rsplit("/", 1)[-1].strip()
    return head if _NUMBER.match(head) else (exten or head or None)
