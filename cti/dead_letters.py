"""The dead-letter file: interaction records the CRM did not take, kept where they can be seen.

One JSON object per line (``jq`` reads it)::

    {"call_id": "...", "state": "refused", "error": "...", "at": "2026-...", "record": {...}}

``state`` is ``refused`` (the database said no to this record: a data error, retrying it as is
will not help) or ``unwritten`` (the daemon stopped while the database was down). The recorder
loads the file when it starts and tries every record again, so an ``unwritten`` record is
written once the database is back, and a ``refused`` one once it has been corrected (by hand in
the file, or by a newer daemon that can store it).

Why a file and not a table: it is the one place that works in both failures. A refused record
comes from a database that is up, but the records left at shutdown are there because it is
down; and it works whatever the interaction store is (the built-in CRM or a connector). Put it
on a persistent volume (``[crm] dead_letter_path``); ``/healthz`` names it when it is not empty.

The file is rewritten whole (write, fsync, rename): it holds the few records that failed, not
the log.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import structlog

from crm_core.types import InteractionRecord

log = structlog.get_logger(__name__)

State = Literal["refused", "unwritten"]


@dataclass(frozen=True)
class DeadLetter:
    record: InteractionRecord
    state: State
    error: str
    at: datetime

    def to_json(self) -> str:
        return json.dumps(
            {
                "call_id": self.record.call_id,
                "state": self.state,
                "error": self.error,
                "at": self.at.isoformat(),
                "record": self.record.to_dict(),
            },
            ensure_ascii=True,  # a NUL stays the six characters \u0000 on disk
        )

    @classmethod
    def from_json(cls, line: str) -> DeadLetter:
        data = json.loads(line)
        state = data.get("state")
        if state not in ("refused", "unwritten"):
            raise ValueError(f"unknown state {state!r}")
        return cls(
            record=record_from_dict(data["record"]),
            state=state,
            error=str(data.get("error", "")),
            at=_when(data.get("at")) or datetime.now(UTC),
        )


def _when(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def record_from_dict(data: dict[str, Any]) -> InteractionRecord:
    """The inverse of ``InteractionRecord.to_dict()``."""
    return InteractionRecord(
        call_id=str(data["call_id"]),
        customer_id=data.get("customer_id"),
        caller=data.get("caller"),
        direction=data.get("direction") or "inbound",
        started_at=_when(data.get("started_at")),
        answered_at=_when(data.get("answered_at")),
        ended_at=_when(data.get("ended_at")),
        queues=tuple(data.get("queues") or ()),
        tiers=tuple(data.get("tiers") or ()),
        agents=tuple(data.get("agents") or ()),
        outcome=data.get("outcome") or "unanswered",
        wait_s=data.get("wait_s"),
        talk_s=data.get("talk_s"),
        transfers=tuple(data.get("transfers") or ()),
        routing_reason=data.get("routing_reason"),
        disposition=data.get("disposition"),
        notes=data.get("notes") or "",
        extra=dict(data.get("extra") or {}),
    )


class DeadLetterFile:
    """Loads and saves the dead letters (blocking file I/O: call it from a thread)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def load(self) -> list[DeadLetter]:
        """The letters in the file; a line that cannot be read is reported and the file kept
        aside (``.unreadable``) so that nothing in it is overwritten."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        letters, bad = [], 0
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                letters.append(DeadLetter.from_json(line))
            except (ValueError, KeyError, TypeError) as exc:
                bad += 1
                log.error("dead_letters.unreadable_line", path=str(self.path), line=number,
                          error=repr(exc))  # fmt: skip
        if bad:
            aside = self.path.with_name(self.path.name + ".unreadable")
            os.replace(self.path, aside)
            log.error("dead_letters.kept_aside", path=str(aside), unreadable=bad)
        return letters

    def save(self, letters: list[DeadLetter]) -> None:
        """Replace the file's content (removes the file when there is nothing to keep)."""
        if not letters:
            self.path.unlink(missing_ok=True)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as out:
            for letter in letters:
                out.write(letter.to_json() + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)
