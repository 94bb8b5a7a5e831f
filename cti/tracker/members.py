"""Queue member (agent) state: logged in, paused and why, in use, ring-no-answer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# The events that say a member is logged in.
LOGGED_IN_KINDS = frozenset({"added", "status", "pause", "penalty", "list"})
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
        get = event.get
        interface = get("Interface") or get("Location") or ""
        if not interface:
            return []
        member = get("MemberName") or get("Name") or ""
        queue = get("Queue") or ""
        members = self._members
        fresh = False
        targets: list[MemberState]
        if queue:
            key = (queue, interface)
            state = members.get(key)
            if state is None:
                fresh = True
                state = members[key] = MemberState(queue, interface, member or interface)
            elif member:
                state.member = member  # a new name alone is not a change
            targets = [state]
        else:  # e.g. a pause in every queue at once
            targets = [s for (q, i), s in members.items() if i == interface]
        paused = get("Paused")
        status = get("Status")
        in_call = get("InCall")
        penalty = get("Penalty")
        changed = []
        for state in targets:
            if kind == "removed":
                state.logged_in = False
                members.pop((state.queue, state.interface), None)
                changed.append(state)
                continue
            diff = fresh  # field by field: no snapshot tuples on this hot path
            if not state.logged_in and kind in LOGGED_IN_KINDS:
                state.logged_in = diff = True
            if kind == "ring_no_answer":
                state.ring_no_answer += 1
                diff = True
            if paused is not None:
                now_paused = paused == "1"
                reason = get("PausedReason", "") if now_paused else ""
                if now_paused != state.paused or reason != state.reason:
                    state.paused, state.reason, diff = now_paused, reason, True
            if status is not None:
                text = DEVICE_STATUS.get(status, status)
                if text != state.status:
                    state.status, diff = text, True
            if in_call is not None:
                busy = in_call == "1"
                if busy != state.in_call:
                    state.in_call, diff = busy, True
            if penalty and penalty.lstrip("-").isdigit():
                value = int(penalty)
                if value != state.penalty:
                    state.penalty, diff = value, True
            if diff:
                changed.append(state)
        return changed
