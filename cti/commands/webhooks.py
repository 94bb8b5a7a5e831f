"""`cti webhooks`: the outbox's pending and failed deliveries (webhooks, bus, CRM write-back),
and putting them back to be delivered now."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime

from cti.config import Config

HELP = "List pending and failed webhook, bus and write-back deliveries; --retry sends them again"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--retry", nargs="*", type=int, metavar="ID",
                        help="deliver these now (no ids: all pending and failed)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="one JSON object per line")


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


async def _main(args: argparse.Namespace, config: Config) -> int:
    from connectors.outbox import Outbox
    from crm_core.errors import CrmUnavailable
    from crm_core.store import CrmStore

    try:
        store = await CrmStore.from_config(config)
    except CrmUnavailable as exc:
        print(f"cti webhooks: {exc}", file=sys.stderr)
        return 1
    try:
        outbox = Outbox(store.engine, [])
        if args.retry is not None:
            count = await outbox.retry(args.retry or None)
            print(f"{count} item(s) will be delivered on the daemon's next pass")
            return 0
        items = await outbox.items()
    finally:
        await store.close()
    if args.json:
        for item in items:
            print(json.dumps(item.to_dict()))
        return 0
    if not items:
        print("nothing pending or failed")
        return 0
    header = f"{'id':>6}  {'status':8} {'target':20} {'event':12} {'call':20} {'tries':>5}"
    print(header + "  next try, last error")
    for i in items:
        detail = f"{_when(i.next_attempt_at)}  {i.last_error or ''}".rstrip()
        print(f"{i.id:>6}  {i.status:8} {i.target:20} {i.event:12} {i.ordering_key:20} "
              f"{i.attempts:>5}  {detail}")  # fmt: skip
    pending = sum(1 for i in items if i.status == "pending")
    print(f"{pending} pending, {len(items) - pending} failed")
    return 0


def run(args: argparse.Namespace, config: Config) -> int:
    return asyncio.run(_main(args, config))
