"""`cti route-test`: the routing decision for a caller, without a PBX."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import datetime

from crm_core.types import CustomerView, Resolution
from cti.config import Config
from cti.routing.router import RouteDecision, Router
from cti.routing.rules import RuleSet, load_rules

HELP = "Print the routing decision for a caller, without a PBX"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--caller", required=True, help="caller ID as Asterisk presents it")
    parser.add_argument("--dnid", help="the number dialled (for dnid rules)")
    parser.add_argument(
        "--at",
        help="ISO time to route at, e.g. 2026-11-23T21:30 (local to routing.timezone "
        "unless it has an offset); default now",
    )
    parser.add_argument(
        "--deadline-ms",
        type=int,
        default=5000,
        help="how long to wait for the CRM (default 5000; the daemon uses [agi] deadline_ms)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


class _Unreachable:
    """The CRM could not be opened: every lookup fails, as the router's fallback expects."""

    def __init__(self, error: Exception) -> None:
        self._error = error

    async def resolve(self, caller_id: str | None) -> Resolution:
        raise self._error

    async def view(self, customer_id: int) -> CustomerView | None:
        raise self._error


async def _route(
    config: Config,
    rules: RuleSet,
    caller: str,
    dnid: str | None,
    at: datetime | None,
    deadline_s: float,
) -> RouteDecision:
    from crm_core import CrmStore

    try:
        store = await CrmStore.from_config(config)
    except Exception as exc:
        print(f"cti: CRM unavailable, showing the fallback: {exc}", file=sys.stderr)
        return await Router(_Unreachable(exc), rules, deadline_s=deadline_s).route(caller, dnid, at)
    async with store:
        router = Router(store, rules, deadline_s=deadline_s)
        try:
            return await router.route(caller, dnid, at)
        finally:
            await router.aclose()


def _format(decision: RouteDecision) -> str:
    rows = [
        ("queue", decision.queue),
        ("priority", str(decision.priority)),
        ("tier", decision.tier),
        ("customer", "-" if decision.customer_id is None else str(decision.customer_id)),
        ("caller", decision.status),
        ("reason", decision.reason),
        ("rule", decision.rule + (" (CRM slow or down)" if decision.fallback else "")),
    ]
    rows += [(f"set {name}", value) for name, value in decision.variables.items()]
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)


def run(args: argparse.Namespace, config: Config) -> int:
    rules = load_rules(config)
    at = None
    if args.at:
        try:
            at = datetime.fromisoformat(args.at)
        except ValueError:
            print(
                f"cti: --at {args.at!r} is not an ISO time (e.g. 2026-11-23T21:30)", file=sys.stderr
            )
            return 2
    if args.deadline_ms <= 0:
        print("cti: --deadline-ms must be positive", file=sys.stderr)
        return 2
    decision = asyncio.run(
        _route(config, rules, args.caller, args.dnid, at, args.deadline_ms / 1000)
    )
    print(json.dumps(decision.to_dict()) if args.json else _format(decision))
    return 0
