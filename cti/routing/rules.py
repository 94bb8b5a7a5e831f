"""Routing rules from config: conditions on the call and the CRM, first match wins, then a default.

The ``[routing]`` config section (see ``config/cti.example.toml``)::

    [routing]
    timezone = "Europe/London"
    [routing.business_hours]           # absent: always open
    mon-fri = "08:00-20:00"
    sat = "09:00-13:00"
    holidays = ["2026-12-25"]
    [routing.default]
    tier = "tier1"
    reason = "default route"
    [[routing.rules]]
    name = "vip"
    when = { flag = "vip" }            # every condition must hold
    then = { tier = "vip", priority = 20, reason = "VIP customer" }

Conditions (``when``); a list value matches any of its items:

* ``flag`` customer flag (``vip``, ``payment_arrears``, ``hearing_impaired``...)
* ``open_case_tier`` the tier of an open case (a tier name, a list, or ``"any"``)
* ``product`` a product the customer owns
* ``language`` the customer's language (``en`` matches ``en-GB``)
* ``order_status`` an order's status or delivery state (``in_transit``...)
* ``caller`` the resolution status: ``match``, ``ambiguous``, ``unknown``, ``anonymous``,
  ``internal``
* ``dnid`` the number dialled; ``open`` inside business hours (true/false);
  ``time`` a local time range (``"22:00-06:00"`` wraps); ``days`` (``"mon-fri"``)

Actions (``then``): ``tier`` (or ``queue``, one of the tier table's queues; ``tier = "$case_tier"``
sends the caller back to the tier of the open case matched by ``open_case_tier``), ``priority``
(0-9999, default the tier's), ``reason`` (default the rule name) and ``set``, extra dialplan
variables whose values may name ``$case_tier``, ``$order_status``, ``$order_reference``,
``$language``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cti.config import ConfigError, TierConfig
from cti.routing.hours import BusinessHours, TimeRange, minute_of_day, parse_days

if TYPE_CHECKING:
    from crm_core.types import Resolution, RoutingFacts
    from cti.config import Config

CONDITIONS = frozenset(
    {"flag", "open_case_tier", "product", "language", "order_status", "caller", "dnid"}
    | {"open", "time", "days"}
)
CALLER_STATUSES = frozenset({"match", "ambiguous", "unknown", "anonymous", "internal"})
# Variables the router always sets; a rule's ``set`` may not override them.
RESERVED_VARIABLES = frozenset(
    {"CTI_QUEUE", "CTI_PRIORITY", "CTI_TIER", "CTI_CUSTOMER_ID", "CTI_REASON"}
)
PLACEHOLDERS = frozenset({"case_tier", "order_status", "order_reference", "language"})
MAX_PRIORITY = 9999  # the dialplan accepts 1-4 digits for QUEUE_PRIO
_VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,79}$")
_PLACEHOLDER = re.compile(r"\$([a-z_]+)")

Captures = dict[str, str]


@dataclass(frozen=True)
class CallFacts:
    """What is known about the call without asking the CRM."""

    dnid: str | None
    at: datetime  # local to the routing time zone
    is_open: bool


@dataclass(frozen=True)
class CrmFacts:
    """What the CRM said about the caller (``facts`` only for a single match)."""

    resolution: Resolution
    facts: RoutingFacts | None


def _strings(rule: str, key: str, value: Any) -> frozenset[str]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(v, str) and v.strip() for v in items):
        raise ConfigError(f"{rule}: when.{key} must be a non-empty string or list of strings")
    return frozenset(v.strip() for v in items)


@dataclass(frozen=True)
class Condition:
    """One ``when`` entry. ``test`` returns captures (possibly empty) on a match, else None."""

    key: str
    values: frozenset[str] = frozenset()
    flag: bool = True
    time_range: TimeRange | None = None
    days: tuple[int, ...] = ()

    @property
    def needs_crm(self) -> bool:
        return self.key not in ("dnid", "open", "time", "days")

    @property
    def needs_view(self) -> bool:
        """Needs the customer's 360° view, not just who is calling."""
        return self.needs_crm and self.key != "caller"

    def test_local(self, call: CallFacts) -> bool:
        """The conditions that need no CRM; CRM conditions pass here and are tested later."""
        if self.key == "dnid":
            return call.dnid is not None and call.dnid.lstrip("+") in self.values
        if self.key == "open":
            return call.is_open is self.flag
        if self.key == "time":
            return self.time_range is not None and self.time_range.contains(minute_of_day(call.at))
        if self.key == "days":
            return call.at.weekday() in self.days
        return True

    def test_crm(self, crm: CrmFacts) -> Captures | None:
        if self.key == "caller":
            return {} if crm.resolution.status in self.values else None
        view = crm.facts
        if view is None:
            return None
        if self.key == "flag":
            return {} if self.values.intersection(view.flags) else None
        if self.key == "product":
            return {} if self.values.intersection(view.products) else None
        if self.key == "language":
            language = (view.language or "").lower()
            primary = language.split("-")[0].split("_")[0]
            if language in self.values or primary in self.values:
                return {"language": view.language or ""}
            return None
        if self.key == "open_case_tier":
            for tier in view.open_case_tiers:
                if tier and ("any" in self.values or tier in self.values):
                    return {"case_tier": tier}
            return None
        if self.key == "order_status":
            for order in view.orders:
                for state in (order.delivery_state, order.status):
                    if state and state.lower() in self.values:
                        return {"order_status": state, "order_reference": order.reference}
            return None
        raise AssertionError(f"unhandled condition {self.key}")  # load_rules rejects others


def _condition(rule: str, key: str, value: Any, tiers: Mapping[str, TierConfig]) -> Condition:
    if key == "open":
        if not isinstance(value, bool):
            raise ConfigError(f"{rule}: when.open must be true or false")
        return Condition(key, flag=value)
    if key == "time":
        try:
            return Condition(key, time_range=TimeRange.parse(str(value), wrap=True))
        except ValueError as exc:
            raise ConfigError(f"{rule}: when.time: {exc}") from exc
    if key == "days":
        try:
            return Condition(key, days=parse_days(str(value)))
        except ValueError as exc:
            raise ConfigError(f"{rule}: when.days: {exc}") from exc
    if key not in CONDITIONS:
        known = ", ".join(sorted(CONDITIONS))
        raise ConfigError(f"{rule}: unknown condition {key!r} (known: {known})")
    values = _strings(rule, key, value)
    if key == "caller" and not values <= CALLER_STATUSES:
        bad = ", ".join(sorted(values - CALLER_STATUSES))
        raise ConfigError(
            f"{rule}: when.caller {bad!r} is not one of {', '.join(sorted(CALLER_STATUSES))}"
        )
    if key == "open_case_tier" and values != {"any"}:
        unknown = sorted(values - set(tiers))
        if unknown:
            raise ConfigError(
                f"{rule}: when.open_case_tier names unknown tier {', '.join(unknown)} "
                f"(tiers: {', '.join(tiers)})"
            )
    if key in ("language", "order_status"):
        values = frozenset(v.lower() for v in values)
    if key == "dnid":
        values = frozenset(v.lstrip("+") for v in values)
    return Condition(key, values)


@dataclass(frozen=True)
class Action:
    """Where a matching call goes. ``tier`` may be ``$case_tier`` (resolved per call)."""

    tier: str
    priority: int | None
    reason: str
    variables: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Outcome:
    """An action applied to one call."""

    tier: str
    queue: str
    priority: int
    reason: str
    variables: dict[str, str]


@dataclass(frozen=True)
class Rule:
    name: str
    conditions: tuple[Condition, ...]
    action: Action

    @cached_property
    def needs_crm(self) -> bool:
        return any(c.needs_crm for c in self.conditions)

    def matches_locally(self, call: CallFacts) -> bool:
        return all(c.test_local(call) for c in self.conditions)

    def match_crm(self, crm: CrmFacts) -> Captures | None:
        captures: Captures = {}
        for condition in self.conditions:
            if not condition.needs_crm:
                continue
            found = condition.test_crm(crm)
            if found is None:
                return None
            captures.update(found)
        return captures


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    default: Action
    tiers: Mapping[str, TierConfig]
    hours: BusinessHours
    source: str = "<config>"
    queues: frozenset[str] = field(default=frozenset())

    @cached_property
    def needs_view(self) -> bool:
        return any(c.needs_view for r in self.rules for c in r.conditions)

    def call_facts(self, at: datetime, dnid: str | None) -> CallFacts:
        local = self.hours.local(at)
        return CallFacts(dnid=dnid, at=local, is_open=self.hours.is_open(local))

    def apply(self, action: Action, captures: Captures | None = None) -> Outcome:
        """The tier, queue, priority and variables an action gives for one call."""
        captures = captures or {}
        tier_name = captures.get("case_tier", "") if action.tier == "$case_tier" else action.tier
        tier = self.tiers.get(tier_name)
        if tier is None:  # a case in a tier the table does not know: its default's tier
            tier_name = self.default.tier
            tier = self.tiers[tier_name]
        variables = {
            name: _PLACEHOLDER.sub(lambda m: captures.get(m.group(1), ""), value)
            for name, value in action.variables
        }
        priority = tier.priority if action.priority is None else action.priority
        return Outcome(tier_name, tier.queue, priority, action.reason, variables)


def _action(
    rule: str,
    spec: Any,
    tiers: Mapping[str, TierConfig],
    *,
    case_tier_ok: bool,
    default_reason: str,
) -> Action:
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{rule}: 'then' must be a table, e.g. then = {{ tier = \"tier2\" }}")
    unknown = sorted(set(spec) - {"tier", "queue", "priority", "reason", "set"})
    if unknown:
        raise ConfigError(
            f"{rule}: unknown action {', '.join(unknown)} "
            "(known: tier, queue, priority, reason, set)"
        )
    tier = spec.get("tier")
    queue = spec.get("queue")
    if tier is None and queue is None:
        raise ConfigError(f"{rule}: 'then' needs a tier (or a queue from the tier table)")
    if queue is not None:
        by_queue = {t.queue: name for name, t in tiers.items()}
        if queue not in by_queue:
            raise ConfigError(
                f"{rule}: queue {queue!r} is not in the tier table (queues: {', '.join(by_queue)})"
            )
        if tier is not None and tiers.get(tier, None) is not None and tiers[tier].queue != queue:
            raise ConfigError(f"{rule}: tier {tier!r} and queue {queue!r} disagree")
        tier = tier or by_queue[queue]
    if tier == "$case_tier":
        if not case_tier_ok:
            raise ConfigError(f'{rule}: tier = "$case_tier" needs an open_case_tier condition')
    elif not isinstance(tier, str) or tier not in tiers:
        raise ConfigError(f"{rule}: unknown tier {tier!r} (tiers: {', '.join(tiers)})")
    priority = spec.get("priority")
    if priority is not None and (
        not isinstance(priority, int)
        or isinstance(priority, bool)
        or not 0 <= priority <= MAX_PRIORITY
    ):
        raise ConfigError(f"{rule}: priority must be a whole number from 0 to {MAX_PRIORITY}")
    reason = spec.get("reason", default_reason)
    if not isinstance(reason, str) or not reason.strip():
        raise ConfigError(f"{rule}: reason must be a non-empty string")
    extra = spec.get("set", {})
    if not isinstance(extra, Mapping):
        raise ConfigError(f"{rule}: 'set' must be a table of dialplan variables")
    variables = []
    for name, value in extra.items():
        if not _VARIABLE_NAME.match(name):
            raise ConfigError(f"{rule}: {name!r} is not a dialplan variable name")
        if name.upper() in RESERVED_VARIABLES:
            raise ConfigError(
                f"{rule}: {name} is set by the router itself; use tier/priority/reason"
            )
        if not isinstance(value, str | int):
            raise ConfigError(f"{rule}: set.{name} must be a string")
        for placeholder in _PLACEHOLDER.findall(str(value)):
            if placeholder not in PLACEHOLDERS:
                raise ConfigError(
                    f"{rule}: set.{name}: unknown ${placeholder} (known: "
                    + ", ".join(f"${p}" for p in sorted(PLACEHOLDERS))
                    + ")"
                )
        variables.append((name, str(value)))
    return Action(tier, priority, reason.strip(), tuple(variables))


def parse_rules(
    routing: Mapping[str, Any], tiers: Mapping[str, TierConfig], source: str = "<config>"
) -> RuleSet:
    """Validate the raw ``[routing]`` section against the tier table."""
    where = f"{source}: routing"
    if not tiers:
        raise ConfigError(f"{source}: tiers: at least one tier is needed for routing")
    unknown = sorted(set(routing) - {"timezone", "business_hours", "default", "rules"})
    if unknown:
        raise ConfigError(f"{where}: unknown key {', '.join(unknown)}")
    tz_name = routing.get("timezone", "UTC")
    try:
        timezone = ZoneInfo(str(tz_name))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"{where}.timezone: unknown time zone {tz_name!r}") from exc
    spec = routing.get("business_hours", {})
    if not isinstance(spec, Mapping):
        raise ConfigError(f'{where}.business_hours must be a table such as mon-fri = "08:00-20:00"')
    try:
        hours = BusinessHours.parse(spec, timezone)
    except ValueError as exc:
        raise ConfigError(f"{where}.business_hours: {exc}") from exc
    first_tier = next(iter(tiers))
    default = _action(
        f"{where}.default",
        routing.get("default", {"tier": first_tier}),
        tiers,
        case_tier_ok=False,
        default_reason="default route",
    )
    raw_rules = routing.get("rules", [])
    if not isinstance(raw_rules, list):
        raise ConfigError(f"{where}.rules must be an array of tables ([[routing.rules]])")
    rules: list[Rule] = []
    names: set[str] = set()
    for index, raw in enumerate(raw_rules, start=1):
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where}.rules[{index}]: must be a table")
        name = raw.get("name")
        label = f"{where}.rules[{index}]" + (f" {name!r}" if name else "")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{label}: every rule needs a name")
        if name == "default" or name in names:
            raise ConfigError(f"{label}: the name {name!r} is already taken")
        names.add(name)
        extra = sorted(set(raw) - {"name", "when", "then"})
        if extra:
            raise ConfigError(
                f"{label}: unknown key {', '.join(extra)} (a rule has name, when, then)"
            )
        when = raw.get("when", {})
        if not isinstance(when, Mapping) or not when:
            raise ConfigError(f"{label}: 'when' must be a table with at least one condition")
        conditions = tuple(_condition(label, k, v, tiers) for k, v in when.items())
        action = _action(
            label,
            raw.get("then"),
            tiers,
            case_tier_ok=any(c.key == "open_case_tier" for c in conditions),
            default_reason=name,
        )
        rules.append(Rule(name, conditions, action))
    return RuleSet(
        rules=tuple(rules),
        default=default,
        tiers=dict(tiers),
        hours=hours,
        source=source,
        queues=frozenset(t.queue for t in tiers.values()),
    )


def load_rules(config: Config) -> RuleSet:
    """The routing rules of a loaded config; a ``ConfigError`` names the failing rule."""
    return parse_rules(config.routing, config.tiers, config.source)
