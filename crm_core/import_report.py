"""What ``cti import`` tells the user: counts, every rejected row, every field it changed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from crm_core.types import Candidate


@dataclass(frozen=True)
class RejectedRow:
    line: int
    external_id: str | None
    reason: str


@dataclass(frozen=True)
class InvalidNumber:
    line: int
    external_id: str
    column: str
    value: str


@dataclass(frozen=True)
class SharedNumber:
    e164: str
    customers: tuple[Candidate, ...]


@dataclass(frozen=True)
class FieldChange:
    """One field of an existing customer that the import changed (or would, in a dry run)."""

    line: int
    external_id: str
    field: str  # a column, a flag, or "phones"
    old: Any
    new: Any


@dataclass(frozen=True)
class MergedRow:
    """A row naming a customer merged into another: it applied to the survivor."""

    line: int
    external_id: str
    survivor_id: int
    survivor_external_id: str | None


@dataclass(frozen=True)
class KeptDoNotCall:
    """A do-not-call flag the file would have cleared and the import kept."""

    line: int
    external_id: str


@dataclass
class ImportReport:
    rows: int = 0
    created: int = 0
    updated: int = 0  # existing customers the file named (changed or not)
    unchanged: int = 0  # of those, the ones with nothing to change
    rejected: list[RejectedRow] = field(default_factory=list)
    invalid_numbers: list[InvalidNumber] = field(default_factory=list)
    duplicates: list[SharedNumber] = field(default_factory=list)
    unknown_columns: list[str] = field(default_factory=list)
    changes: list[FieldChange] = field(default_factory=list)
    kept_do_not_call: list[KeptDoNotCall] = field(default_factory=list)
    merged: list[MergedRow] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    encoding: str = "utf-8"
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": [vars(r) for r in self.rejected],
            "invalid_numbers": [vars(n) for n in self.invalid_numbers],
            "duplicates": [
                {"e164": d.e164, "customers": [c.to_dict() for c in d.customers]}
                for d in self.duplicates
            ],
            "unknown_columns": self.unknown_columns,
            "changes": [vars(c) for c in self.changes],
            "kept_do_not_call": [vars(k) for k in self.kept_do_not_call],
            "merged": [vars(m) for m in self.merged],
            "warnings": self.warnings,
            "encoding": self.encoding,
            "dry_run": self.dry_run,
        }

    def lines(self) -> Iterator[str]:
        """The report for a person, one line each."""
        if self.dry_run:
            yield "dry run: nothing was written; this is what the import would do"
        yield (
            f"{self.rows} rows: {self.created} customers created, {self.updated} updated, "
            f"{len(self.rejected)} rejected"
        )
        if self.updated:
            changed = self.updated - self.unchanged
            yield f"{changed} existing customers changed, {self.unchanged} already up to date"
        for warning in self.warnings:
            yield f"warning: {warning}"
        if self.unknown_columns:
            yield f"unknown columns (ignored): {', '.join(self.unknown_columns)}"
        for r in self.rejected:
            yield f"line {r.line}: rejected ({r.external_id or 'no external_id'}): {r.reason}"
        for n in self.invalid_numbers:
            yield (
                f"line {n.line}: {n.external_id}: invalid number in {n.column}: {n.value!r} "
                "(kept as entered, not used for caller ID)"
            )
        for m in self.merged:
            yield (
                f"line {m.line}: {m.external_id} was merged into "
                f"{m.survivor_external_id or 'a customer'} (customer {m.survivor_id}): "
                "the row applies to it"
            )
        for c in self.changes:
            yield f"line {c.line}: {c.external_id}: {c.field} {_shown(c.old)} -> {_shown(c.new)}"
        for k in self.kept_do_not_call:
            yield (
                f"line {k.line}: {k.external_id}: do_not_call kept (the file does not set it; "
                "--clear-do-not-call clears it)"
            )
        for d in self.duplicates:
            who = ", ".join(f"{c.external_id or c.customer_id} ({c.name})" for c in d.customers)
            yield f"duplicate: {d.e164} is shared by {len(d.customers)} customers: {who}"


def _shown(value: Any) -> str:
    if value is None:
        return "(empty)"
    if isinstance(value, list):
        return "[" + ", ".join(value) + "]"
    return repr(value)
