"""Answers to AMI actions: ``AmiResponse`` and the outcome of an Originate."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# OriginateResponse ``Reason`` codes (Asterisk's AST_CONTROL_* values).
ORIGINATE_REASONS = {
    0: "failed (no such extension or channel, or the channel could not be created)",
    1: "hung up before answer",
    3: "rang, not answered in time",
    4: "answered",
    5: "busy",
    8: "congestion",
}


@dataclass(frozen=True, slots=True)
class AmiResponse:
    """The ``Response:`` block of an action, plus, for list actions, its items and the
    ``...Complete`` event (``complete``, which carries e.g. BridgeInfo's bridge fields)."""

    fields: dict[str, str]
    items: list[dict[str, str]] = field(default_factory=list)
    complete: dict[str, str] | None = None

    @property
    def response(self) -> str:
        return self.fields.get("Response", "")

    @property
    def success(self) -> bool:
        return self.response in ("Success", "Goodbye")

    @property
    def message(self) -> str:
        return self.fields.get("Message", "")

    @property
    def action_id(self) -> str:
        return self.fields.get("ActionID", "")

    def get(self, key: str, default: str = "") -> str:
        return self.fields.get(key, default)

    def __getitem__(self, key: str) -> str:
        return self.fields[key]


@dataclass(frozen=True, slots=True)
class OriginateResult:
    """The ``OriginateResponse`` event of an async Originate, matched by ActionID."""

    success: bool
    reason: int
    channel: str
    uniqueid: str
    fields: dict[str, str]

    @property
    def reason_text(self) -> str:
        return ORIGINATE_REASONS.get(self.reason, f"reason {self.reason}")

    @classmethod
    def from_event(cls, event: Mapping[str, str]) -> OriginateResult:
        try:
            reason = int(event.get("Reason", "0"))
        except ValueError:
            reason = 0
        return cls(
            success=event.get("Response") == "Success",
            reason=reason,
            channel=event.get("Channel", ""),
            uniqueid=event.get("Uniqueid", ""),
            fields=dict(event),
        )
