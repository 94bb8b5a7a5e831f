"""Routing rules: validated at start with errors naming the rule; first match wins, then default."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from fakes.crm_directory import MemoryDirectory, customer
from fakes.routing import CLOSED, OPEN, ROUTING_TOML, routing_config, routing_rules

from cti.config import ConfigError, load_config, parse_config
from cti.routing.router import Router
from cti.routing.rules import load_rules, parse_rules

ROOT = Path(__file__).resolve().parent.parent


def rules_from(routing_toml: str) -> None:
    config = parse_config(
        '[tiers.tier1]\nqueue = "tier1"\n[tiers.tier2]\nqueue = "tier2"\n' + routing_toml,
        "bad.toml",
        env={},
    )
    load_rules(config)


@pytest.mark.parametrize(
    ("routing", "message"),
    [
        (
            '[[routing.rules]]\nname = "vip"\nwhen = { flags = "vip" }\nthen = { tier = "tier2" }',
            "'vip': unknown condition 'flags'",
        ),
        (
            '[[routing.rules]]\nname = "late"\nwhen = { time = "25:00-26:00" }\n'
            'then = { tier = "tier2" }',
            "'late': when.time: bad time",
        ),
        (
            '[routing.business_hours]\nmon-fri = "20:00-08:00"',
            "business_hours: bad time range '20:00-08:00'",
        ),
        (
            '[[routing.rules]]\nname = "gold"\nwhen = { flag = "vip" }\nthen = { tier = "gold" }',
            "'gold': unknown tier 'gold'",
        ),
        (
            '[[routing.rules]]\nname = "q"\nwhen = { flag = "vip" }\nthen = { queue = "vipq" }',
            "'q': queue 'vipq' is not in the tier table",
        ),
        (
            '[[routing.rules]]\nname = "back"\nwhen = { flag = "vip" }\n'
            'then = { tier = "$case_tier" }',
            "'back': tier = \"$case_tier\" needs an open_case_tier condition",
        ),
        (
            '[[routing.rules]]\nname = "c"\nwhen = { open_case_tier = "tier9" }\n'
            'then = { tier = "tier2" }',
            "'c': when.open_case_tier names unknown tier tier9",
        ),
        (
            '[[routing.rules]]\nname = "who"\nwhen = { caller = "robot" }\n'
            'then = { tier = "tier2" }',
            "'who': when.caller 'robot' is not one of",
        ),
        (
            '[[routing.rules]]\nname = "p"\nwhen = { flag = "vip" }\n'
            'then = { tier = "tier2", priority = 10000 }',
            "'p': priority must be a whole number from 0 to 9999",
        ),
        (
            '[[routing.rules]]\nname = "v"\nwhen = { flag = "vip" }\n'
            'then = { tier = "tier2", set = { CTI_QUEUE = "x" } }',
            "'v': CTI_QUEUE is set by the router",
        ),
        (
            '[[routing.rules]]\nname = "t"\nwhen = { flag = "vip" }\n'
            'then = { tier = "tier2", set = { X = "$colour" } }',
            "'t': set.X: unknown $colour",
        ),
        ('[routing]\ntimezone = "Mars/Olympus"', "unknown time zone 'Mars/Olympus'"),
        ('[[routing.rules]]\nwhen = { flag = "vip" }\nthen = { tier = "tier2" }', "needs a name"),
    ],
)
def test_a_bad_rule_is_refused_at_start_with_an_error_naming_it(routing: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        rules_from(routing)
    assert message in str(error.value)
    assert str(error.value).startswith("bad.toml: routing")


def test_the_example_config_and_the_defaults_load() -> None:
    example = load_rules(load_config(ROOT / "config" / "cti.example.toml", env={}))
    assert [r.name for r in example.rules][:3] == ["closed", "anonymous", "vip"]
    defaults = load_rules(load_config(None, env={}))
    assert defaults.rules == () and defaults.default.tier == "tier1"
    assert defaults.hours.is_open(OPEN) and defaults.hours.is_open(CLOSED)  # no hours: 24/7


async def decide(directory: MemoryDirectory, caller: str | None, **kwargs: object):  # type: ignore[no-untyped-def]
    router = Router(directory, routing_rules(), deadline_s=0.5, clock=lambda: OPEN)
    return await router.route(caller, **kwargs)  # type: ignore[arg-type]


CRM = MemoryDirectory(
    {
        "+441110000001": customer(1, flags=("vip", "payment_arrears")),
        "+441110000002": customer(2, flags=("payment_arrears",)),
        "+441110000003": customer(3, flags=("hearing_impaired",)),
        "+441110000004": customer(4, case_tiers=("tier3",)),
        "+441110000005": customer(5, products=("fibre", "tv")),
        "+441110000006": customer(6, language="fr-FR"),
        "+441110000007": customer(7, orders=(("shipped", "in_transit"),)),
        "+441110000008": customer(8),
        "+441110000009": customer(9, case_tiers=("tier1",)),
    },
    ambiguous={"+441110000099"},
)


@pytest.mark.parametrize(
    ("caller", "queue", "priority", "rule", "reason"),
    [
        ("+441110000001", "vip", 20, "vip", "VIP customer"),  # first match wins over arrears
        ("+441110000002", "billing", 0, "arrears", "payment arrears"),
        ("+441110000003", "relay", 0, "relay", "relay-trained agents"),
        ("+441110000004", "tier3", 5, "open-case", "open case returns to its tier"),
        ("+441110000005", "tier2", 0, "fibre", "fibre customer"),
        ("+441110000006", "french", 0, "french", "French speaker"),
        ("anonymous", "tier1", 0, "withheld", "withheld number"),
        ("+449990000000", "tier1", 1, "not-in-crm", "not in the CRM"),
        ("+441110000099", "tier1", 1, "not-in-crm", "not in the CRM"),
        ("+441110000008", "tier1", 0, "default", "default route"),
        ("+441110000009", "tier1", 0, "default", "default route"),  # tier1 case: not listed
    ],
)
async def test_each_rule_kind_routes_its_caller(
    caller: str, queue: str, priority: int, rule: str, reason: str
) -> None:
    decision = await decide(CRM, caller)
    assert (decision.queue, decision.priority, decision.rule, decision.reason) == (
        queue,
        priority,
        rule,
        reason,
    )
    assert decision.fallback is False


async def test_a_matched_customer_carries_its_id_and_an_unknown_caller_none() -> None:
    assert (await decide(CRM, "+441110000008")).customer_id == 8
    assert (await decide(CRM, "+449990000000")).customer_id is None
    assert (await decide(CRM, "+441110000099")).customer_id is None  # ambiguous: not guessed


async def test_an_order_in_transit_sets_extra_dialplan_variables() -> None:
    decision = await decide(CRM, "+441110000007")
    assert decision.rule == "order-in-transit"
    assert decision.variables == {"CTI_ORDER_STATUS": "in_transit", "CTI_ORDER_REF": "ORD-200"}
    assert list(decision.dialplan_variables()) == [
        "CTI_QUEUE",
        "CTI_PRIORITY",
        "CTI_TIER",
        "CTI_CUSTOMER_ID",
        "CTI_REASON",
        "CTI_ORDER_STATUS",
        "CTI_ORDER_REF",
    ]


async def test_the_dialled_number_picks_its_service_line() -> None:
    decision = await decide(CRM, "+441110000001", dnid="08005550199")
    assert (decision.queue, decision.rule, decision.customer_id) == ("sales", "sales-line", 1)


@pytest.mark.parametrize(
    ("at", "open_"),
    [
        (datetime(2026, 11, 23, 19, 59, tzinfo=UTC), True),  # Monday 19:59 GMT
        (datetime(2026, 11, 23, 20, 0, tzinfo=UTC), False),
        (datetime(2026, 7, 6, 19, 30, tzinfo=UTC), False),  # Monday 20:30 BST: summer time
        (datetime(2026, 7, 6, 6, 30, tzinfo=UTC), False),  # 07:30 BST
        (datetime(2026, 7, 6, 7, 0, tzinfo=UTC), True),  # 08:00 BST
        (datetime(2026, 11, 28, 12, 59, tzinfo=UTC), True),  # Saturday
        (datetime(2026, 11, 29, 12, 0, tzinfo=UTC), False),  # Sunday
        (datetime(2026, 12, 25, 12, 0, tzinfo=UTC), False),  # a Friday, but a holiday
    ],
)
async def test_business_hours_are_local_to_the_routing_time_zone(at: datetime, open_: bool) -> None:
    decision = await decide(CRM, "+441110000001", at=at)
    assert (decision.rule == "closed") is not open_
    if not open_:
        assert (decision.queue, decision.reason) == ("afterhours", "outside business hours")
        assert decision.customer_id == 1  # still known, for the screen-pop


async def test_a_time_range_may_wrap_past_midnight_and_days_narrow_it() -> None:
    rules = parse_rules(
        {
            "rules": [
                {
                    "name": "night",
                    "when": {"time": "22:00-06:00", "days": "mon-fri"},
                    "then": {"tier": "tier2"},
                }
            ]
        },
        routing_config().tiers,
    )
    router = Router(MemoryDirectory(), rules, deadline_s=0.5)
    monday = datetime(2026, 11, 23, tzinfo=UTC)
    results = {}
    for hour in (5, 6, 21, 22):
        results[hour] = (await router.route("+441", at=monday.replace(hour=hour))).rule
    assert results == {5: "night", 6: "default", 21: "default", 22: "night"}
    sunday_night = datetime(2026, 11, 29, 23, 0, tzinfo=UTC)
    assert (await router.route("+441", at=sunday_night)).rule == "default"


def test_the_routing_test_config_loads() -> None:
    assert "routing.rules" in ROUTING_TOML
    assert len(routing_rules().rules) == 11
