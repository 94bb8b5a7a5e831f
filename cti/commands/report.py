"""`cti report --from --to [--group-by G] [--csv]`: statistics over a period, from the database."""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
from typing import Any, TextIO

from cti.config import Config

HELP = "Print queue statistics over a period (--csv for a spreadsheet)"

COLUMNS = (
    "offered",
    "answered",
    "abandoned",
    "short_abandoned",
    "left",
    "service_level",
    "asa_s",
    "p90_answer_s",
    "longest_wait_s",
    "aht_s",
    "avg_hold_s",
    "transfers_out",
    "escalations_out",
    "repeat_calls",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="start", required=True, metavar="WHEN",
                        help="start, included (ISO date or time; UTC without a zone)")  # fmt: skip
    parser.add_argument("--to", dest="end", required=True, metavar="WHEN",
                        help="end (ISO date or time), excluded")  # fmt: skip
    parser.add_argument("--group-by", default="queue", choices=["queue", "tier", "agent", "hour"])
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--csv", action="store_true", help="CSV, one row per group")
    out.add_argument("--json", action="store_true", help="the whole report as JSON")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".")
    return str(value)


def write_table(report: dict[str, Any], out: TextIO) -> None:
    head = (report["group_by"], *COLUMNS)
    rows = [(key, *(_cell(g.get(c)) for c in COLUMNS)) for key, g in report["groups"].items()]
    widths = [max(len(str(r[i])) for r in (head, *rows)) for i in range(len(head))]
    print(f"{report['from']} .. {report['to']}", file=out)
    for row in (head, *rows):
        cells = [str(v).rjust(w) if i else str(v).ljust(w)
                 for i, (v, w) in enumerate(zip(row, widths, strict=True))]  # fmt: skip
        print("  ".join(cells), file=out)
    o = report["outbound"]
    print(f"outbound: {o['calls']} calls, {o['answered']} answered, {o['talk_s']} s talk", file=out)
    print(f"repeat calls within {report['repeat_days']} days: {report['repeat_calls']}", file=out)
    for name, a in report["agents"].items():
        pauses = ", ".join(f"{r or '-'} {s:.0f} s" for r, s in a["pause_by_reason"].items())
        print(f"agent {name}: {a['calls']} calls, occupancy {_cell(a['occupancy'])}, "
              f"logged in {a['login_s']:.0f} s, paused {a['pause_s']:.0f} s ({pauses or 'none'})",
              file=out)  # fmt: skip


def write_csv(report: dict[str, Any], out: TextIO) -> None:
    writer = csv.writer(out)
    writer.writerow((report["group_by"], *COLUMNS))
    for key, g in report["groups"].items():
        writer.writerow((key, *("" if g.get(c) is None else g.get(c) for c in COLUMNS)))


async def _main(args: argparse.Namespace, config: Config) -> int:
    from crm_core.errors import CrmUnavailable
    from crm_core.store import CrmStore
    from cti.stats.live import thresholds_of
    from cti.stats.period import period_figures, report_engine
    from cti.supervisor.service import parse_when

    try:
        start, end = parse_when(args.start, "--from"), parse_when(args.end, "--to")
    except ValueError as exc:
        print(f"cti report: {exc}", file=sys.stderr)
        return 2
    if end <= start:
        print("cti report: --to must be after --from", file=sys.stderr)
        return 2
    try:
        await (await CrmStore.from_config(config)).close()  # reachable and migrated
        engine = report_engine(config.database_url)
        try:
            report = await period_figures(engine, start, end, args.group_by,
                                          thresholds_of(config),
                                          repeat_days=config.stats.repeat_days)  # fmt: skip
        finally:
            await engine.dispose()
    except (CrmUnavailable, OSError) as exc:
        print(f"cti report: {exc}", file=sys.stderr)
        return 1
    data = report.to_dict()
    if args.csv:
        write_csv(data, sys.stdout)
    elif args.json:
        print(json.dumps(data, indent=2))
    else:
        write_table(data, sys.stdout)
    return 0


def run(args: argparse.Namespace, config: Config) -> int:
    return asyncio.run(_main(args, config))
