"""The import's faster number check gives exactly ``phonenumbers``' answer."""

from __future__ import annotations

import phonenumbers
from hypothesis import given, settings
from hypothesis import strategies as st

from crm_core.phone import is_valid

CALLING_CODES = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
# Calling codes shared by several regions (+1, +7, +44, +47, +61, +262, +590...): where the
# faster path differs from phonenumbers' own.
SHARED = [c for c in CALLING_CODES if len(phonenumbers.COUNTRY_CODE_TO_REGION_CODE[c]) > 1]
REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)


def _example_digits(region: str) -> list[str]:
    """Valid national numbers of every type for ``region``, to mutate from."""
    found = []
    types = phonenumbers.PhoneNumberType
    for kind in (types.FIXED_LINE, types.MOBILE, types.TOLL_FREE, types.VOIP):
        example = phonenumbers.example_number_for_type(region, kind)
        if example is not None:
            found.append(str(example.national_number))
    return found


EXAMPLES = [(region, d) for region in REGIONS for d in _example_digits(region)]


def _same_answer(number: phonenumbers.PhoneNumber) -> None:
    assert is_valid(number) == phonenumbers.is_valid_number(number), number


@settings(max_examples=3000, deadline=None)
@given(st.sampled_from(SHARED + CALLING_CODES), st.text("0123456789", min_size=1, max_size=15))
def test_any_calling_code_and_digits_get_phonenumbers_own_validity(code: int, digits: str) -> None:
    number = phonenumbers.PhoneNumber(country_code=code, national_number=int(digits))
    if digits.startswith("0"):
        number.italian_leading_zero = True
    _same_answer(number)


@settings(max_examples=3000, deadline=None)
@given(st.sampled_from(EXAMPLES), st.integers(0, 14), st.sampled_from("0123456789"),
       st.sampled_from(["keep", "replace", "insert", "drop"]))  # fmt: skip
def test_numbers_near_a_valid_one_get_phonenumbers_own_validity(
    example: tuple[str, str], at: int, digit: str, how: str
) -> None:
    """Valid numbers of every region and type, and the nearly valid ones a digit away."""
    region, digits = example
    at = min(at, len(digits))
    digits = {"keep": digits, "replace": digits[:at] + digit + digits[at + 1 :],
              "insert": digits[:at] + digit + digits[at:],
              "drop": digits[:at] + digits[at + 1 :]}[how] or digit  # fmt: skip
    try:
        number = phonenumbers.parse(digits, region)
    except phonenumbers.NumberParseException:
        return
    _same_answer(number)
