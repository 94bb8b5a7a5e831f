"""[[cases.reasons]]: each reason names a configured tier and a positive SLA."""

from __future__ import annotations

import pytest

from cti.config import ConfigError, parse_config

REASON = """
[[cases.reasons]]
name = "outage"
label = "Service outage"
tier = "{tier}"
sla_hours = {hours}
"""


def test_configured_reasons_replace_the_defaults() -> None:
    config = parse_config(REASON.format(tier="tier3", hours=4), env={})
    [reason] = config.cases.reasons
    assert (reason.name, reason.label, reason.tier, reason.sla_hours) == (
        "outage", "Service outage", "tier3", 4.0)  # fmt: skip


@pytest.mark.parametrize(
    ("tier", "hours", "message"),
    [
        ("tier9", 4, "cases.reasons: tier tier9 is not in [tiers]"),
        ("tier1", 0, "cases.reasons.0.sla_hours: Input should be greater than 0"),
    ],
)
def test_a_reason_with_an_unknown_tier_or_no_sla_is_refused(
    tier: str, hours: int, message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_config(REASON.format(tier=tier, hours=hours), "cti.toml", env={})


def test_a_site_with_its_own_tiers_still_loads_without_configuring_reasons() -> None:
    config = parse_config('[tiers.billing]\nqueue = "billing"\n', env={})
    assert set(config.tiers) == {"billing"} and config.cases.reasons
