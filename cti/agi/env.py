"""What the AGI environment (the ``agi_*`` header block) says about the call."""

from __future__ import annotations

from collections.abc import Mapping


def caller_id(env: Mapping[str, str]) -> str | None:
    """The caller ID as presented; None when Asterisk has none (it writes ``unknown``)."""
    value = env.get("agi_callerid", "")
    return None if value in ("", "unknown") else value


def dialled_number(env: Mapping[str, str]) -> str | None:
    """The number the caller dialled: ``agi_dnid``, else the extension being run (the DID)."""
    for key in ("agi_dnid", "agi_extension"):
        value = env.get(key, "")
        if value and value != "unknown":
            return value
    return None
