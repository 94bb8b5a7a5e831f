"""Queue member (agent) state: logged in, paused and why, in use, ring-no-answer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Asterisk's AST_DEVICE_* numbers, as QueueMember* events report them in `Status`.
DEVICE_STATUS = {
    "0": "unknown",
    "1": "not_in_use",
    "2": "in_use",
    "3": "busy",
    "4": "invalid",
    "5": "unavailable",
    "6": "ringing",
    "7": "ring_in_use",
    "8": "on_hold",
}


@dataclass(slots=True)
class MemberState:
    queue: str
    interface: str
    member: str
    logged_in: bool = True
    paused: bool = False
    reason: str = ""
    status: str = "unknown"
    in_call: bool = False
    ring_no_answer: int = 0
    penalty: int = 0

    def as_tuple(self) -> tuple[Any, ...]:
        return (
            self.member,
            self.logged_in,
            self.paused,
            self.reason,
            self.status,
            self.in_call,
            self.ring_no_answer,
            self.penalty,
        )

    def as_data(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "interface": self.interface,
            "member": self.member,
            "logged_in": self.logged_in,
            "paused": self.paused,
            "reason": self.reason,
            "status": self.status,
            "in_call": self.in_call,
            "ring_no_answer": self.ring_no_answer,
            "penalty": self.penalty,
        }


class MemberBook:
    """Every queue member seen, keyed by (queue, interface). Pure: events in, states out."""

    __slots__ = ("_members",)

    def __init__(self) -> None:
        self._members: dict[tuple[str, str], MemberState] = {}

    def get(self, queue: str, interface: str) -> MemberState | None:
        return self._members.get((queue, interface))

    def all(self) -> list[MemberState]:
        return list(self._members.values())

    def member_for_device(self, device: str) -> MemberState | None:
        for state in self._members.values():
            if state.interface == device or state.interface.removesuffix("/n") == device:
                return state
        return None

    def _state(self, queue: str, interface: str, member: str) -> MemberState:
        key = (queue, interface)
        state = self._members.get(key)
        if state is None:
            state = self._members[key] = MemberState(queue, interface, member or interface)
        elif member:
            state.member = member
        return state

    def update(self, event: Mapping[str, str], kind: str) -> list[MemberState]:
        """Apply a QueueMember* / Agent* / QueueMember (list item) event; return the states it
        changed (a removed member is returned logged out and forgotten)."""
        interface = event.get("Interface") or event.get("Location") or ""
        if not interface:
            return []
        member = event.get("MemberName") or event.get("Name") or ""
        queue = event.get("Queue") or ""
        fresh = False
        if queue:
            fresh = (queue, interface) not in self._members
            targets = [self._state(queue, interface, member)]
        else:  # e.g. a pause in every queue at once
            targets = [s for (q, i), s in self._members.items() if i == interface]
        paused = event.get("Paused")
        status = event.get("Status")
        in_call = event.get("InCall")
        penalty = event.get("Penalty")
        changed = []
        for state in targets:
            before = state.as_tuple()
            if kind == "removed":
                state.logged_in = False
                self._members.pop((state.queue, state.interface), None)
                changed.append(state)
                continue
            if kind in ("added", "status", "pause", "penalty", "list"):
                state.logged_in = True
            if kind == "ring_no_answer":
                state.ring_no_answer += 1
            if paused is not None:
                state.paused = paused == "1"
                state.reason = event.get("PausedReason", "") if state.paused else ""
            if status is not None:
                state.status = DEVICE_STATUS.get(status, status)
            if in_call is not None:
                state.in_call = in_call == "1"
            if penalty and penalty.lstrip("-").isdigit():
                state.penalty = int(penalty)
            if fresh or state.as_tuple() != before:
                changed.append(state)
        return changed
