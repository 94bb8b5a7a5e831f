"""`cti import`: import customers from a CSV file, with a data-quality report."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from cti.config import Config

HELP = "Import customers from a CSV file, with a data-quality report"
EPILOG = """\
Re-importing updates customers on external_id and changes only what the file says: a column
the file does not have leaves that field alone, and so does an empty cell unless --clear-empty.
A phone column named for a kind (phone_mobile, "Phone (work)") stands for the customer's
numbers of that kind, a plain "phone" column for all the others. do_not_call is only ever
cleared with --clear-do-not-call. Every field changed is listed in the report; rejected rows
are listed with their line and the reason, and never stop the other rows.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("file", help="CSV with a header: external_id, name, phone*, email, flags")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="report what would be created and changed, write nothing",
    )
    parser.add_argument(
        "--clear-empty",
        action="store_true",
        help="an empty cell clears the field (default: leaves it as it is)",
    )
    parser.add_argument(
        "--clear-do-not-call",
        action="store_true",
        help="let the file clear do_not_call (default: it is kept, and reported)",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


async def _main(args: argparse.Namespace, config: Config) -> int:
    from crm_core.errors import CrmUnavailable
    from crm_core.importer import ImportFileError, ImportOptions, import_csv
    from crm_core.store import CrmStore

    options = ImportOptions(
        clear_empty=args.clear_empty, clear_do_not_call=args.clear_do_not_call, dry_run=args.dry_run
    )
    try:
        store = await CrmStore.from_config(config)
        try:
            report = await import_csv(
                store, args.file, options, progress=not args.quiet and sys.stderr.isatty()
            )
        finally:
            await store.close()
    except ImportFileError as exc:
        print(f"cti import: {exc}", file=sys.stderr)
        return 2
    except CrmUnavailable as exc:
        print(f"cti import: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False, default=str))
    else:
        for line in report.lines():
            print(line)
    return 0


def run(args: argparse.Namespace, config: Config) -> int:
    return asyncio.run(_main(args, config))
