"""`cti lookup`: resolve a caller ID and print the customer's 360° view."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from cti.config import Config

HELP = "Resolve a caller ID and print the customer's 360° view"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("number", help="the caller ID as presented (+44…, 020…, anonymous, 201…)")
    parser.add_argument("--json", action="store_true",
                        help="one JSON object: status, e164, candidates, view")  # fmt: skip


def _text(result: dict[str, Any], reasons: list[str]) -> list[str]:
    lines = [f"status: {result['status']}", f"e164:   {result['e164'] or '-'}"]
    for candidate, reason in zip(result["candidates"], reasons, strict=True):
        why = f"  [{reason}]" if reason else ""
        lines.append(
            f"  #{candidate['customer_id']} {candidate['external_id'] or '-'} "
            f"{candidate['name']}{why}"
        )
    view = result["view"]
    if not view:
        return lines
    lines.append("")
    lines.append(f"{view['name']} ({view['kind']}, {view['external_id'] or 'no external id'})")
    if view["highlights"]:
        lines.append("!! " + ", ".join(h.replace("_", " ").upper() for h in view["highlights"]))
    for key in ("email", "language", "address", "organisation"):
        if view[key]:
            lines.append(f"{key}: {view[key]}")
    for phone in view["phones"]:
        lines.append(f"phone ({phone['kind']}): {phone['number']}  {phone['e164'] or 'invalid'}")
    if view["flags"]:
        lines.append("flags: " + ", ".join(view["flags"]))
    for case in view["open_cases"]:
        lines.append(
            f"open case #{case['case_id']} [{case['status']}, {case['tier'] or '-'}] "
            f"{case['subject']} (SLA {case['sla_deadline'] or '-'})"
        )
    for order in view["orders"]:
        lines.append(
            f"order {order['reference']}: {order['status']}, {order['delivery_state'] or '-'}"
            f" {order['tracking_ref'] or ''}".rstrip()
        )
    if view["products"]:
        lines.append("products: " + ", ".join(view["products"]))
    for item in view["interactions"]:
        lines.append(
            f"call {item['started_at'] or '?'} {item['direction']} {item['queue'] or '-'} "
            f"{item['agent'] or '-'} {item['outcome']} {item['disposition'] or ''}".rstrip()
        )
        if item["notes"]:
            lines.extend(f"    {note}" for note in item["notes"].splitlines())
    return lines


async def _main(args: argparse.Namespace, config: Config) -> int:
    from crm_core.errors import CrmUnavailable
    from crm_core.store import CrmStore

    try:
        store = await CrmStore.from_config(config)
        try:
            resolution = await store.resolve(args.number)
            view = None
            if resolution.customer_id is not None:
                view = await store.view(resolution.customer_id)
        finally:
            await store.close()
    except CrmUnavailable as exc:
        print(f"cti lookup: {exc}", file=sys.stderr)
        return 1
    result = {
        "status": resolution.status,
        "e164": resolution.e164,
        "candidates": [
            {"customer_id": c.customer_id, "external_id": c.external_id, "name": c.name}
            for c in resolution.candidates
        ],
        "view": view.to_dict() if view else None,
    }
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print("\n".join(_text(result, [c.rank_reason for c in resolution.candidates])))
    return 0


def run(args: argparse.Namespace, config: Config) -> int:
    return asyncio.run(_main(args, config))
