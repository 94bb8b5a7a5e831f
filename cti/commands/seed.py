"""`cti seed`: fill the CRM store with realistic demo customers."""

from __future__ import annotations

import argparse
import asyncio
import sys

from cti.config import Config

HELP = "Fill the CRM store with realistic demo customers"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--customers", "-n", type=int, default=1000, metavar="N",
                        help="generated customers to add (default 1000)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=1, metavar="S",
                        help="random seed: the same seed gives the same customers")  # fmt: skip
    parser.add_argument("--batch", type=int, default=5000, help="customers per bulk write")
    parser.add_argument("--no-demo", action="store_true",
                        help="do not add the fixed demo customers (DEMO_NUMBERS)")  # fmt: skip
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


async def _main(args: argparse.Namespace, config: Config) -> int:
    from crm_core.errors import CrmError
    from crm_core.seed import seed
    from crm_core.store import CrmStore

    if args.customers < 0 or args.batch < 1:
        print("cti seed: --customers must be >= 0 and --batch >= 1", file=sys.stderr)
        return 2
    try:
        store = await CrmStore.from_config(config)
        try:
            report = await seed(store, args.customers, seed=args.seed, batch=args.batch,
                                demo=not args.no_demo, progress=not args.quiet)  # fmt: skip
        finally:
            await store.close()
    except CrmError as exc:  # unavailable, or rows the database refused
        print(f"cti seed: {exc}", file=sys.stderr)
        return 1
    rows = ", ".join(f"{n} {table}" for table, n in report.rows.items())
    print(
        f"seeded {report.customers} customers ({report.demo_customers} demo customers added) "
        f"in {report.seconds:.1f} s: {rows}"
    )
    return 0


def run(args: argparse.Namespace, config: Config) -> int:
    return asyncio.run(_main(args, config))
