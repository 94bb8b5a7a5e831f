"""The fast path of ``crm_core.phone`` for numbers written as plain digits.

Nearly every number in an import file, once its spaces and dashes are gone, is ASCII digits
with or without a leading ``+`` (``07400123456``, ``+447400123456``). For those, ``parse``
and ``is_valid`` give exactly what ``phonenumbers.parse`` and ``phonenumbers.is_valid_number``
give, step by step as they take them, with every regular expression of the metadata compiled
once (``phonenumbers`` looks each one up again for every number, and most of its time goes to
steps that cannot change plain digits: extracting the number from text, extensions, non-ASCII
digits, letters). Anything else, or a case these functions do not follow (an international
dialling prefix in a national number, a plus with no known calling code and a default region),
is ``SLOW``: the caller asks ``phonenumbers``. Proved equal to ``phonenumbers`` by a hypothesis
test (``tests/test_crm_phone_fast.py``). Pure functions; the compiled patterns are cached.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumberDesc
from phonenumbers.phonenumberutil import (
    PhoneNumberType,
    ValidationResult,
    _number_type_helper,
    _test_number_length,
)


class Slow(enum.Enum):
    SLOW = "ask phonenumbers"


SLOW = Slow.SLOW
_MIN_NSN = 2  # phonenumbers' _MIN_LENGTH_FOR_NSN
_MAX_NSN = 17  # phonenumbers' _MAX_LENGTH_FOR_NSN
_MAX_CALLING_CODE = 3
_NON_GEO = "001"
# The lengths after which parse keeps the number as it was before the national prefix.
_KEEP_PREFIX = (
    ValidationResult.TOO_SHORT,
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY,
    ValidationResult.INVALID_LENGTH,
)


@dataclass(frozen=True)
class _Desc:
    """A PhoneNumberDesc: its possible lengths and its pattern, compiled."""

    lengths: frozenset[int]
    pattern: re.Pattern[str] | None

    def matches(self, nsn: str) -> bool:
        """phonenumbers' ``_is_number_matching_desc`` (a desc with no lengths takes any)."""
        if self.lengths and len(nsn) not in self.lengths:
            return False
        return self.pattern is not None and self.pattern.fullmatch(nsn) is not None


def _desc(desc: PhoneNumberDesc | None) -> _Desc | None:
    if desc is None:
        return None
    pattern = desc.national_number_pattern
    return _Desc(frozenset(desc.possible_length or ()), re.compile(pattern) if pattern else None)


@dataclass(frozen=True)
class _Plan:
    """What parse and is_valid need of one region's metadata, compiled."""

    metadata: PhoneMetadata
    country_code: int
    general: _Desc | None
    # The types' patterns as one alternation, for each length some type allows (a type
    # without lengths allows any): one match instead of up to ten.
    types_by_length: dict[int, re.Pattern[str] | None]
    types_any_length: re.Pattern[str] | None  # for the other lengths
    combined: bool  # False: a pattern refers back to a group, ask phonenumbers
    idd: re.Pattern[str] | None
    national_prefix: re.Pattern[str] | None
    transform: str | None
    leading_digits: re.Pattern[str] | None

    def general_match(self, nsn: str) -> bool:
        """phonenumbers' ``_match_national_number(nsn, general_desc, False)``: the pattern
        only, not the lengths."""
        pattern = self.general.pattern if self.general else None
        return pattern is not None and pattern.fullmatch(nsn) is not None

    def known_type(self, nsn: str) -> bool:
        """phonenumbers' ``_number_type_helper(nsn, metadata) != UNKNOWN``: the general
        description and any of the types (whichever; the type itself does not matter here)."""
        if not self.combined:
            return _number_type_helper(nsn, self.metadata) != PhoneNumberType.UNKNOWN
        if self.general is None or not self.general.matches(nsn):
            return False
        pattern = self.types_by_length.get(len(nsn), self.types_any_length)
        return pattern is not None and pattern.fullmatch(nsn) is not None

    def strip_national_prefix(self, number: str) -> str:
        """phonenumbers' ``_maybe_strip_national_prefix_carrier_code``, the number only."""
        if not number or self.national_prefix is None:
            return number
        found = self.national_prefix.match(number)
        if found is None:
            return number
        viable = self.general_match(number)
        groups = found.groups()
        if not self.transform or groups[len(groups) - 1] is None:
            rest = number[found.end() :]
        else:
            rest = self.national_prefix.sub(self.transform, number, count=1)
        if viable and not self.general_match(rest):
            return number
        return rest


# By the metadata's id: phonenumbers loads each region's metadata once and keeps it.
_PLANS: dict[int, _Plan] = {}


def _plan_of(metadata: PhoneMetadata) -> _Plan:
    plan = _PLANS.get(id(metadata))
    if plan is None or plan.metadata is not metadata:
        plan = _PLANS[id(metadata)] = _compile(metadata)
    return plan


def _compile(md: PhoneMetadata) -> _Plan:
    kinds = [md.premium_rate, md.toll_free, md.shared_cost, md.voip, md.personal_number,
             md.pager, md.uan, md.voicemail, md.fixed_line]  # fmt: skip
    if not md.same_mobile_and_fixed_line_pattern:
        kinds.append(md.mobile)
    types = [d for d in map(_desc, kinds) if d is not None and d.pattern is not None]
    lengths = {n for d in types for n in d.lengths}
    combined = not any(_BACKREFERENCE.search(d.pattern.pattern) for d in types if d.pattern)
    if not combined:
        types, lengths = [], set()
    return _Plan(
        metadata=md,
        country_code=int(md.country_code or 0),
        general=_desc(md.general_desc),
        types_by_length={
            n: _either(d for d in types if n in d.lengths or not d.lengths) for n in lengths
        },
        types_any_length=_either(d for d in types if not d.lengths),
        combined=combined,
        idd=re.compile(md.international_prefix) if md.international_prefix is not None else None,
        national_prefix=re.compile(md.national_prefix_for_parsing)
        if md.national_prefix_for_parsing
        else None,
        transform=md.national_prefix_transform_rule,
        leading_digits=re.compile(md.leading_digits) if md.leading_digits is not None else None,
    )


def _either(descs: Iterable[_Desc]) -> re.Pattern[str] | None:
    """One pattern that fully matches what any of ``descs``' patterns fully matches (none of
    phonenumbers' number patterns refers back to a group, so they can be put side by side)."""
    patterns = [d.pattern.pattern for d in descs if d.pattern is not None]
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{p})" for p in patterns))


_BACKREFERENCE = re.compile(r"\\[1-9]|\(\?P=")
_REGION_PLANS: dict[str, _Plan | None] = {}
_CALLING_CODE_PLANS: dict[tuple[int, str], _Plan | None] = {}


def _region_plan(region: str) -> _Plan | None:
    if region not in _REGION_PLANS:
        metadata = PhoneMetadata.metadata_for_region(region.upper(), None)
        _REGION_PLANS[region] = _plan_of(metadata) if metadata is not None else None
    return _REGION_PLANS[region]


def _calling_code_plan(country_code: int, region: str) -> _Plan | None:
    key = (country_code, region)
    if key not in _CALLING_CODE_PLANS:
        metadata = PhoneMetadata.metadata_for_region_or_calling_code(country_code, region.upper())
        _CALLING_CODE_PLANS[key] = _plan_of(metadata) if metadata is not None else None
    return _CALLING_CODE_PLANS[key]


def _is_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def parse(text: str, region: str | None) -> tuple[int, str] | Slow | None:
    """``phonenumbers.parse(text, region)`` for ``text`` of ASCII digits with an optional
    leading ``+``: (calling code, national significant number), None where phonenumbers
    raises, SLOW where this does not follow it."""
    plus = text.startswith("+")
    digits = text[1:] if plus else text
    if len(digits) < 3 or not _is_digits(digits):
        return SLOW
    plan: _Plan | None
    if plus:
        country_code, nsn = _calling_code(digits)
        if country_code == 0:
            # phonenumbers tries again without the plus, against the default region.
            return None if region is None else SLOW
        main = phonenumbers.region_code_for_country_code(country_code)
        plan = _calling_code_plan(country_code, main) if main != region else _region_plan(main)
        if plan is None:
            return SLOW
    else:
        if region is None or region not in phonenumbers.SUPPORTED_REGIONS:
            return SLOW
        plan = _region_plan(region)
        if plan is None or (plan.idd is not None and plan.idd.match(digits)):
            return SLOW
        country_code, nsn = plan.country_code, digits
        prefix = str(plan.country_code)
        if digits.startswith(prefix):
            # The default region's calling code without its plus (phonenumbers'
            # _maybe_extract_country_code).
            without = plan.strip_national_prefix(digits[len(prefix) :])
            if (not plan.general_match(digits) and plan.general_match(without)) or (
                _test_number_length(digits, plan.metadata) == ValidationResult.TOO_LONG
            ):
                nsn = without
                main = phonenumbers.region_code_for_country_code(country_code)
                if main != region:
                    plan = _calling_code_plan(country_code, main)
                    if plan is None:
                        return SLOW
    if len(nsn) < _MIN_NSN:
        return None
    stripped = plan.strip_national_prefix(nsn)
    if _test_number_length(stripped, plan.metadata) not in _KEEP_PREFIX:
        nsn = stripped
    if not _MIN_NSN <= len(nsn) <= _MAX_NSN:
        return None
    return country_code, nsn


def _calling_code(digits: str) -> tuple[int, str]:
    """phonenumbers' ``_extract_country_code``: (0, digits) when none is known."""
    if digits.startswith("0"):
        return 0, digits
    for size in range(1, min(len(digits), _MAX_CALLING_CODE) + 1):
        code = int(digits[:size])
        if code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return code, digits[size:]
    return 0, digits


def is_valid(country_code: int, nsn: str) -> bool:
    """``phonenumbers.is_valid_number`` of the number ``parse`` returned."""
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(country_code)
    if not regions:
        return False
    if len(regions) == 1:
        return _valid_for_region(country_code, regions[0], nsn)
    # phonenumbers' region_code_for_number: the first region whose leading digits begin the
    # number, or that has none and whose patterns match it (then it is valid: the same
    # patterns again).
    for region in regions:
        plan = _region_plan(region)
        if plan is None:
            continue
        if plan.leading_digits is not None:
            if plan.leading_digits.match(nsn):
                return _valid_for_region(country_code, region, nsn)
        elif plan.known_type(nsn):
            return True
    return False


def _valid_for_region(country_code: int, region: str, nsn: str) -> bool:
    """phonenumbers' ``is_valid_number_for_region``."""
    plan = _calling_code_plan(country_code, region)
    if plan is None:
        return False
    if region != _NON_GEO and country_code != phonenumbers.country_code_for_valid_region(region):
        return False
    return plan.known_type(nsn)
