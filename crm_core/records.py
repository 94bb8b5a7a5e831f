"""What an interaction record may hold, checked before it reaches the database.

Both stores then behave alike: PostgreSQL refuses a NUL in text and a value longer than its
``VARCHAR``, SQLite would store either. ``storable(record)`` repairs what can be repaired
without changing what the record says, and marks it in ``extra``:

* the caller ID (it comes from the network, a spoofed SIP ``From`` can hold anything): NUL and
  other control characters are removed (``caller_sanitized``), and one longer than the column is
  cut (``caller_truncated`` with ``caller_length``, the length presented);

and refuses the rest with ``InvalidInteraction`` naming the field: a NUL or an unpaired
surrogate in a note, a disposition or any stored text, a value too long for its column. Those
are someone's words or our own identifiers; cutting or rewriting them would store something
nobody said.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from crm_core.errors import InvalidInteraction
from crm_core.types import InteractionRecord

# Column lengths of crm_core.models.Interaction.
CALLER_MAX = 64
_LIMITS = {"call_id": 64, "direction": 8, "outcome": 16, "routing_reason": 200, "disposition": 64}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _bad_text(value: str) -> str | None:
    if "\x00" in value:
        return "contains a NUL character (\\u0000), which the database cannot store"
    if _SURROGATE.search(value):
        return "contains an unpaired surrogate, which is not valid Unicode"
    return None


def _check_json(call_id: str, field: str, value: Any) -> None:
    if isinstance(value, str):
        problem = _bad_text(value)
        if problem:
            raise InvalidInteraction(call_id, field, problem)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _check_json(call_id, f"{field}.{key}", str(key))
            _check_json(call_id, f"{field}.{key}", item)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_json(call_id, f"{field}[{index}]", item)


def _clean_caller(caller: str) -> str:
    return _SURROGATE.sub("\ufffd", _CONTROL.sub("", caller))


def storable_caller(caller: str) -> str:
    """A caller ID as every table that keeps one can store it (``storable``'s rule, unmarked:
    the call legs of the statistics have no ``extra``)."""
    return _clean_caller(caller)[:CALLER_MAX]


def storable(rec: InteractionRecord) -> InteractionRecord:
    """The record as the database can store it; ``InvalidInteraction`` if it cannot be."""
    call_id = rec.call_id if isinstance(rec.call_id, str) else ""
    if not call_id:
        raise InvalidInteraction(repr(rec.call_id), "call_id", "is empty")
    for field, limit in _LIMITS.items():
        value = getattr(rec, field)
        if value is None:
            continue
        problem = _bad_text(value)
        if problem is None and len(value) > limit:
            problem = f"is {len(value)} characters long, the most is {limit}"
        if problem:
            raise InvalidInteraction(call_id[:64], field, problem)
    problem = _bad_text(rec.notes)
    if problem:
        raise InvalidInteraction(call_id, "notes", problem)
    for field in ("queues", "tiers", "agents", "transfers", "extra"):
        _check_json(call_id, field, getattr(rec, field))

    extra: dict[str, Any] = {}
    caller = rec.caller
    if caller is not None:
        clean = _clean_caller(caller)
        if clean != caller:
            extra["caller_sanitized"] = True
        if len(clean) > CALLER_MAX:
            extra["caller_truncated"] = True
            extra["caller_length"] = len(caller)
            clean = clean[:CALLER_MAX]
        caller = clean
    if not extra:
        return rec
    return dataclasses.replace(rec, caller=caller, extra={**rec.extra, **extra})
