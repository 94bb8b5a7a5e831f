"""Caller-ID normalisation: every way a number is written or presented gives one E.164 form."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm_core.phone import normalise, to_e164

LONDON = "+442071234567"


@pytest.mark.parametrize(
    "raw",
    [
        "+442071234567",
        "02071234567",
        "00442071234567",
        "442071234567",
        "+44 20 7123 4567",
        "020 7123 4567",
        "(020) 7123-4567",
        "+44 (0)20 7123 4567",
        "0044 20 7123 4567",
        " +442071234567 ",
        "tel:+442071234567",
        "sip:+442071234567@trunk.example.com",
        "020 7123 4567 ext. 12",
    ],
)
def test_every_way_of_writing_a_london_number_gives_the_same_e164(raw: str) -> None:
    result = normalise(raw, "GB")
    assert result.kind == "e164"
    assert result.e164 == LONDON


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("(202) 555-0532", "US", "+12025550532"),
        ("202-555-0532", "US", "+12025550532"),
        ("1 202 555 0532", "US", "+12025550532"),
        ("011 44 20 7123 4567", "US", LONDON),
        ("030 12345678", "DE", "+493012345678"),
        ("+49 30 12345678", "GB", "+493012345678"),
        ("0049 30 12345678", "FR", "+493012345678"),
        ("01 23 45 67 89", "FR", "+33123456789"),
        ("06 12 34 56 78", "FR", "+33612345678"),
        ("+33 6 12 34 56 78", "GB", "+33612345678"),
        ("(11) 91234-5678", "BR", "+5511912345678"),
        ("+55 11 91234-5678", "GB", "+5511912345678"),
        ("01 234 5678", "IE", "+35312345678"),
        ("07700 900456", "GB", "+447700900456"),  # Ofcom drama range, used by the demo traces
        ("0800 555 0100", "GB", "+448005550100"),
    ],
)
def test_national_and_international_numbers_of_other_countries(
    raw: str, region: str, e164: str
) -> None:
    assert to_e164(raw, region) == e164


@pytest.mark.parametrize("raw", ["201", "2001", "8002", "100", "123456", "*97"])
def test_extensions_and_short_numbers_are_internal_not_customers(raw: str) -> None:
    result = normalise(raw, "GB")
    if raw.startswith("*"):
        assert result.kind == "invalid"  # a feature code is not a caller
    else:
        assert result.kind == "internal"
        assert result.internal == raw
    assert result.e164 is None


def test_the_internal_length_limit_is_configurable() -> None:
    assert normalise("1234567", "GB", internal_max_digits=7).kind == "internal"
    assert normalise("1234", "GB", internal_max_digits=3).kind == "invalid"


@pytest.mark.parametrize(
    "raw",
    [None, "", "   ", "anonymous", "Anonymous", "ANONYMOUS", "restricted", "<unknown>", "unknown",
     "Unavailable", "private", '"Anonymous"'],
)  # fmt: skip
def test_withheld_caller_ids_are_anonymous(raw: str | None) -> None:
    assert normalise(raw, "GB").kind == "anonymous"
    assert to_e164(raw, "GB") is None


@pytest.mark.parametrize(
    "raw",
    ["abc", "+999123456789", "12345678901234567890", "0000000000", "+44", "0207123456712345",
     "++442071234567", "+44 20 7123 4567 8", "020-7123-456a", "1" * 200, "DROP TABLE customers",
     "07700 900", "2125551234"],
)  # fmt: skip
def test_garbage_is_invalid_not_a_crash_nor_a_wrong_number(raw: str) -> None:
    result = normalise(raw, "GB")
    assert result.kind == "invalid"
    assert result.e164 is None


@given(st.text(max_size=80), st.sampled_from(["GB", "US", "DE", "FR", "BR", "IE", "ZZ", "xx", ""]))
def test_normalise_never_raises_and_answers_a_known_kind(raw: str, region: str) -> None:
    result = normalise(raw, region)
    assert result.kind in ("e164", "internal", "anonymous", "invalid")
    if result.e164 is not None:
        assert result.kind == "e164"
        assert result.e164.startswith("+")
        assert result.e164[1:].isdigit()
        # E.164 is a fixed point: normalising it again gives itself, whatever the region.
        assert to_e164(result.e164, "US") == result.e164


@given(st.from_regex(r"\+?[0-9 ()\-.]{0,25}", fullmatch=True))
def test_digit_soup_never_raises(raw: str) -> None:
    assert normalise(raw, "GB").kind in ("e164", "internal", "anonymous", "invalid")
