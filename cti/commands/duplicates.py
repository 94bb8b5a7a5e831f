"""`cti duplicates [--min-score N] [--json]`: likely duplicate customers, with scores."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from cti.config import Config

HELP = "List likely duplicate customers (same number, email, similar names at one address)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--min-score", type=int, default=50, metavar="N",
                        help="list pairs scoring at least N of 100 (default 50)")  # fmt: skip
    parser.add_argument("--limit", type=int, default=200, metavar="N",
                        help="at most N pairs, best first (default 200; 0: all)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="the whole report as JSON")


async def _main(args: argparse.Namespace, config: Config) -> int:
    from crm_core.errors import CrmUnavailable
    from crm_core.merge import CustomerMaintenance
    from crm_core.store import CrmStore

    if not 0 <= args.min_score <= 100:
        print("cti duplicates: --min-score must be between 0 and 100", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        store = await CrmStore.from_config(config)
        try:
            report = await CustomerMaintenance(store).duplicates(min_score=args.min_score)
        finally:
            await store.close()
    except CrmUnavailable as exc:
        print(f"cti duplicates: {exc}", file=sys.stderr)
        return 1
    took = time.perf_counter() - started
    pairs = report.pairs[: args.limit] if args.limit > 0 else report.pairs
    if args.json:
        out = report.to_dict()
        out["pairs"] = [p.to_dict() for p in pairs]
        out["seconds"] = round(took, 3)
        print(json.dumps(out, ensure_ascii=False))
        return 0
    for pair in pairs:
        print(
            f"{pair.score:3d}  #{pair.first_id} {pair.first_name}  ~  "
            f"#{pair.second_id} {pair.second_name}"
        )
        for reason in pair.reasons:
            print(f"       {reason.points:+4d}  {reason.detail}")
    print(
        f"{len(report.pairs)} likely duplicate pair(s) scoring {args.min_score}+ among "
        f"{report.customers} customers ({report.compared} pairs compared, "
        f"{report.skipped_blocks} oversized groups skipped) in {took:.1f} s"
    )
    return 0


def run(args: argparse.Namespace, config: Config) -> int:
    return asyncio.run(_main(args, config))
