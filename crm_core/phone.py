"""Phone-number normalisation: every stored number and every incoming caller ID goes through here.

Pure functions, no I/O. ``normalise`` never raises: anything it cannot read is ``invalid``.
A number is accepted as E.164 when ``phonenumbers`` finds it valid for its country, or when it
lies in one of Ofcom's ranges reserved for drama and tests (07700 900xxx, 01632 960xxx), which
``phonenumbers`` rejects but demo data, recorded traces and test PBXs use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import phonenumbers

from crm_core import phone_fast

NumberKind = Literal["e164", "internal", "anonymous", "invalid"]

# What Asterisk and SIP trunks present for a withheld or missing caller ID (compared lowercased).
ANONYMOUS_IDS = frozenset(
    {
        "",
        "anonymous",
        "restricted",
        "unknown",
        "<unknown>",
        "unavailable",
        "private",
        "withheld",
        "blocked",
        "none",
        "null",
    }
)
# Characters a person or a PBX may put around the digits of a number.
_DECORATION = re.compile(r"[\s\-./()\[\]]")
_EXTENSION = re.compile(r"\s*(?:;ext=|ext\.?|x|#)\s*\d{1,7}\s*$", re.IGNORECASE)
_DIALLABLE = re.compile(r"\+?\d+")
_MAX_INPUT = 64
# Ofcom's fictional ranges that phonenumbers does not count as valid.
_RESERVED_FICTION = re.compile(r"\+44(?:7700900|1632960)\d{3}")


@dataclass(frozen=True, slots=True)
class Normalised:
    kind: NumberKind
    e164: str | None = None
    # The digits that made an internal extension (``201``); None otherwise.
    internal: str | None = None


ANONYMOUS = Normalised("anonymous")
INVALID = Normalised("invalid")


def is_valid(number: phonenumbers.PhoneNumber) -> bool:
    """``phonenumbers.is_valid_number``, without its second pass: it finds the number's region
    (for a calling code shared by several regions, the first whose metadata has no
    ``leading_digits`` and whose patterns match the number), then matches the same patterns
    again for that region. When the region was found by its patterns, they matched: valid."""
    region = phonenumbers.region_code_for_number(number)
    if region is None:
        return False
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(number.country_code or 0, ())
    if len(regions) > 1:
        metadata = phonenumbers.PhoneMetadata.metadata_for_region(region.upper(), None)
        if metadata is not None and metadata.leading_digits is None:
            return True
    return phonenumbers.is_valid_number_for_region(number, region)


def _accept(number: phonenumbers.PhoneNumber) -> str | None:
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if is_valid(number) or _RESERVED_FICTION.fullmatch(e164):
        return e164
    return None


def _parse(text: str, region: str | None) -> str | None:
    """The E.164 form of ``text`` when phonenumbers parses it and finds it valid (or
    fictional); plain digits take the fast path, which gives the same answer."""
    fast = phone_fast.parse(text, region)
    if fast is phone_fast.SLOW:
        return _parse_slow(text, region)
    if fast is None:
        return None
    country_code, nsn = fast
    e164 = f"+{country_code}{nsn}"
    if phone_fast.is_valid(country_code, nsn) or _RESERVED_FICTION.fullmatch(e164):
        return e164
    return None


def _parse_slow(text: str, region: str | None) -> str | None:
    try:
        return _accept(phonenumbers.parse(text, region))
    except phonenumbers.NumberParseException:
        return None


def normalise(raw: str | None, region: str, internal_max_digits: int = 6) -> Normalised:
    """Classify a caller ID or typed number: E.164, internal extension, anonymous or invalid.

    ``+442071234567``, ``02071234567`` (GB), ``00442071234567`` and ``442071234567`` all give
    ``+442071234567``; ``201`` is internal; ``anonymous``/``<unknown>``/empty are anonymous.
    """
    if raw is None:
        return ANONYMOUS
    if not isinstance(raw, str):  # a caller passing an int or bytes gets an answer, not a crash
        return INVALID
    text = raw.strip().strip('"').strip()
    if text.lower() in ANONYMOUS_IDS:
        return ANONYMOUS
    if len(text) > _MAX_INPUT:
        return INVALID
    # "tel:+44..." and "sip:+44...@host" URIs, as some trunks present them.
    lowered = text.lower()
    if lowered.startswith(("tel:", "sip:", "sips:")):
        text = text.split(":", 1)[1].split("@", 1)[0].split(";", 1)[0]
    text = _EXTENSION.sub("", text)
    compact = _DECORATION.sub("", text)
    if not _DIALLABLE.fullmatch(compact):
        return INVALID
    digits = compact.lstrip("+")
    if not compact.startswith("+") and len(digits) <= internal_max_digits:
        return Normalised("internal", internal=digits)
    region = (region or "ZZ").upper()
    if compact.startswith("+"):
        e164 = _parse(compact, None)
    elif digits.startswith("00"):
        # The international prefix used by most of the world, whatever the default region.
        e164 = _parse("+" + digits[2:], None) or _parse(digits, region)
    else:
        e164 = _parse(digits, region)
        if e164 is None and not digits.startswith("0"):
            # An international number presented without its "+" (``442071234567``).
            e164 = _parse("+" + digits, None)
    return Normalised("e164", e164) if e164 else INVALID


def to_e164(raw: str | None, region: str) -> str | None:
    """The E.164 form of a number, or None when it is not a routable external number."""
    return normalise(raw, region).e164
