"""`cti import`: import customers from a CSV file, with a data-quality report."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from cti.config import Config

HELP = "Import customers from a CSV file, with a data-quality report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="CSV with a header: external_id, name, phone*, email, flags")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")


async def _main(args: argparse.Namespace, config: Config) -> int:
    from crm_core.errors import CrmUnavailable
    from crm_core.importer import ImportFileError, import_csv
    from crm_core.store import CrmStore

    try:
        store = await CrmStore.from_config(config)
        try:
            report = await import_csv(store, args.file)
        finally:
            await store.close()
    except ImportFileError as exc:
        print(f"cti import: {exc}", file=sys.stderr)
        return 2
    except CrmUnavailable as exc:
        print(f"cti import: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        for line in report.lines():
            print(line)
    return 0


def run(args: argparse.Namespace, config: Config) -> int:
    return asyncio.run(_main(args, config))
