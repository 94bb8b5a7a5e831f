"""A routing config with one rule of each kind, and a fixed clock, for the routing tests."""

from __future__ import annotations

from datetime import UTC, datetime

from cti.config import Config, parse_config
from cti.routing.rules import RuleSet, load_rules

ROUTING_TOML = """
[tiers.tier1]
queue = "tier1"
[tiers.tier2]
queue = "tier2"
[tiers.tier3]
queue = "tier3"
[tiers.billing]
queue = "billing"
[tiers.vip]
queue = "vip"
priority = 10
[tiers.relay]
queue = "relay"
[tiers.french]
queue = "french"
[tiers.sales]
queue = "sales"
[tiers.afterhours]
queue = "afterhours"

[routing]
timezone = "Europe/London"

[routing.business_hours]
mon-fri = "08:00-20:00"
sat = "09:00-13:00"
holidays = ["2026-12-25"]

[routing.default]
tier = "tier1"
reason = "default route"

[[routing.rules]]
name = "closed"
when = { open = false }
then = { tier = "afterhours", reason = "outside business hours" }

[[routing.rules]]
name = "sales-line"
when = { dnid = "08005550199" }
then = { tier = "sales", reason = "sales line" }

[[routing.rules]]
name = "withheld"
when = { caller = "anonymous" }
then = { tier = "tier1", reason = "withheld number" }

[[routing.rules]]
name = "vip"
when = { flag = "vip" }
then = { tier = "vip", priority = 20, reason = "VIP customer" }

[[routing.rules]]
name = "arrears"
when = { flag = "payment_arrears" }
then = { queue = "billing", reason = "payment arrears" }

[[routing.rules]]
name = "relay"
when = { flag = "hearing_impaired" }
then = { tier = "relay", reason = "relay-trained agents" }

[[routing.rules]]
name = "open-case"
when = { open_case_tier = ["tier2", "tier3"] }
then = { tier = "$case_tier", priority = 5, reason = "open case returns to its tier" }

[[routing.rules]]
name = "fibre"
when = { product = "fibre" }
then = { tier = "tier2", reason = "fibre customer" }

[[routing.rules]]
name = "french"
when = { language = "fr" }
then = { tier = "french", reason = "French speaker" }

[[routing.rules]]
name = "order-in-transit"
when = { order_status = "in_transit" }
[routing.rules.then]
tier = "tier1"
reason = "order in transit"
set = { CTI_ORDER_STATUS = "$order_status", CTI_ORDER_REF = "$order_reference" }

[[routing.rules]]
name = "not-in-crm"
when = { caller = ["unknown", "ambiguous"] }
then = { tier = "tier1", priority = 1, reason = "not in the CRM" }
"""

# Monday 23 November 2026, 10:00 in London (GMT): open.
OPEN = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
# The same Monday, 21:00: closed.
CLOSED = datetime(2026, 11, 23, 21, 0, tzinfo=UTC)


def routing_config(extra: str = "") -> Config:
    return parse_config(ROUTING_TOML + extra, "routing-test.toml", env={})


def routing_rules() -> RuleSet:
    return load_rules(routing_config())
