"""What the AGI environment (the ``agi_*`` header block) says about the call."""

from __future__ import annotations

from collections.abc import Mapping

# ``agi_callingpres``: Asterisk's presentation (callerid.h AST_PRES_*); bits 0x60 say whether
# the number may be shown: 0x00 allowed, 0x20 prohibited (withheld), 0x40 not available.
_PRES_RESTRICTION = 0x60


def withheld(env: Mapping[str, str]) -> bool:
    """The caller withheld their number (or it is not available), whatever number Asterisk
    holds: a carrier trusted for P-Asserted-Identity (``trust_id_inbound``) passes the number
    of a caller who withheld it, with the presentation prohibited."""
    value = env.get("agi_callingpres", "")
    return value.isdigit() and int(value) & _PRES_RESTRICTION != 0


def caller_id(env: Mapping[str, str]) -> str | None:
    """The caller ID as presented; None when Asterisk has none (it writes ``unknown``);
    ``anonymous`` for a number the caller withheld (never looked up, shown or kept)."""
    value = env.get("agi_callerid", "")
    if value in ("", "unknown"):
        return None
    return "anonymous" if withheld(env) else value


def dialled_number(env: Mapping[str, str]) -> str | None:
    """The number the caller dialled: ``agi_dnid``, else the extension being run (the DID)."""
    for key in ("agi_dnid", "agi_extension"):
        value = env.get(key, "")
        if value and value != "unknown":
            return value
    return None
