"""The fast path for numbers written as plain digits gives exactly ``phonenumbers``' answer.

``crm_core.phone._parse`` (the fast path where it applies) is compared with
``crm_core.phone._parse_slow`` (``phonenumbers.parse`` + validity), and
``phone_fast.is_valid`` with ``phonenumbers.is_valid_number``, on every region's example
numbers of every type written the ways files write them, on numbers a digit away from those,
and on any digits at all.
"""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from crm_core import phone, phone_fast

REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)
CALLING_CODES = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
TYPES = [getattr(phonenumbers.PhoneNumberType, name) for name in (
    "FIXED_LINE", "MOBILE", "TOLL_FREE", "PREMIUM_RATE", "SHARED_COST", "VOIP",
    "PERSONAL_NUMBER", "PAGER", "UAN", "VOICEMAIL")]  # fmt: skip


def _examples() -> list[phonenumbers.PhoneNumber]:
    found = []
    for region in REGIONS:
        for kind in TYPES:
            number = phonenumbers.example_number_for_type(region, kind)
            if number is not None:
                found.append(number)
    for code in phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS:
        number = phonenumbers.example_number_for_non_geo_entity(code)
        if number is not None:
            found.append(number)
    return found


EXAMPLES = _examples()


def _written(number: phonenumbers.PhoneNumber) -> list[str]:
    """The ways a file writes a number, as digits (the decoration is gone by then)."""
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    digits = "".join(c for c in national if c.isdigit())
    return [e164, e164[1:], "00" + e164[1:], digits]


def _same(text: str, region: str | None) -> None:
    assert phone._parse(text, region) == phone._parse_slow(text, region), (text, region)


def test_the_fast_path_answers_for_plain_digits_and_leaves_other_text_to_phonenumbers() -> None:
    assert phone_fast.parse("07400123456", "GB") == (44, "7400123456")
    assert phone_fast.parse("+447400123456", None) == (44, "7400123456")
    assert phone_fast.parse("0740O123456", "GB") is phone_fast.SLOW  # a letter O
    assert phone_fast.parse("٠٧٤٠٠١٢٣٤٥٦", "GB") is phone_fast.SLOW  # Arabic-Indic digits
    assert phone_fast.parse("00447400123456", "GB") is phone_fast.SLOW  # an IDD: not followed


# Default regions unlike each other: a national prefix with a carrier code and a transform rule
# (BR, AR, MX), none (IT), several (GB), a calling code of one digit (US), the Crown
# dependencies that share +44 (JE).
DEFAULT_REGIONS = [None, "GB", "US", "BR", "AR", "MX", "IT", "JE"]


@pytest.mark.parametrize("region", DEFAULT_REGIONS)
def test_every_example_number_written_every_way_gets_phonenumbers_answer(
    region: str | None,
) -> None:
    """Every region's example of every type, with the region or ``region`` as default."""
    for number in EXAMPLES:
        own = phonenumbers.region_code_for_number(number)
        for text in _written(number):
            _same(text, region)
            if region is None:
                _same(text, own)


@settings(max_examples=3000, deadline=None)
@given(st.sampled_from(EXAMPLES), st.sampled_from([*REGIONS, None]), st.integers(0, 16),
       st.sampled_from("0123456789"), st.sampled_from(["replace", "insert", "drop"]),
       st.integers(0, 3))  # fmt: skip
def test_numbers_a_digit_away_from_a_valid_one_get_phonenumbers_answer(
    number: phonenumbers.PhoneNumber, region: str | None, at: int, digit: str, how: str,
    way: int,
) -> None:  # fmt: skip
    text = _written(number)[way]
    plus = text[:1]
    body = text.lstrip("+")
    at = min(at, len(body))
    body = {"replace": body[:at] + digit + body[at + 1 :],
            "insert": body[:at] + digit + body[at:],
            "drop": body[:at] + body[at + 1 :]}[how]  # fmt: skip
    _same(plus + body, region)


@settings(max_examples=5000, deadline=None)
@given(st.sampled_from(["", "+", "0", "00", "+0"]),
       st.sampled_from(["", *(str(c) for c in CALLING_CODES)]),
       st.text("0123456789", max_size=18),
       st.sampled_from([*REGIONS, None, "ZZ", "001"]))  # fmt: skip
@example("", "44", "7400123456", "GB")  # the region's calling code without a plus
@example("", "1", "4155552671", "US")
@example("+", "", "999123456", None)  # a plus and no calling code
@example("+", "", "999123456", "GB")
@example("", "", "180020123456", "GB")  # GB's second national prefix
def test_any_digits_get_phonenumbers_answer(
    prefix: str, code: str, digits: str, region: str | None
) -> None:
    _same(prefix + code + digits, region)


def _valid_same(number: phonenumbers.PhoneNumber) -> None:
    nsn = phonenumbers.national_significant_number(number)
    expected = phonenumbers.is_valid_number(number)
    assert phone_fast.is_valid(number.country_code or 0, nsn) == expected, number


def test_every_example_number_is_valid_and_one_digit_more_is_as_phonenumbers_says() -> None:
    for number in EXAMPLES:
        _valid_same(number)
        longer = phonenumbers.PhoneNumber(
            country_code=number.country_code, national_number=(number.national_number or 0) * 10
        )
        _valid_same(longer)


@settings(max_examples=3000, deadline=None)
@given(st.sampled_from(CALLING_CODES), st.text("0123456789", min_size=1, max_size=17))
def test_any_calling_code_and_digits_get_phonenumbers_validity(code: int, digits: str) -> None:
    number = phonenumbers.PhoneNumber(country_code=code, national_number=int(digits))
    if digits.startswith("0") and len(digits) > 1:
        number.italian_leading_zero = True
        zeros = len(digits) - len(digits.lstrip("0"))
        number.number_of_leading_zeros = min(zeros, len(digits) - 1)
    _valid_same(number)
