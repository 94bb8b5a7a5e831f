"""`cti replay`: run a recorded AMI trace through the call tracker, JSON Lines out."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cti.config import Config
from cti.replay import TraceError, replay, summaries
from cti.tracker import CallTracker

HELP = "Replay a recorded AMI trace (.ami or .json) through the call tracker (JSON Lines out)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("trace", type=Path, help="a .ami (raw AMI bytes) or .json trace")
    parser.add_argument(
        "--summary", action="store_true", help="one line per call after the trace ends"
    )


def run(args: argparse.Namespace, config: Config) -> int:
    tracker = CallTracker(region=config.phone.default_region)
    out = sys.stdout
    try:
        if args.summary:
            for summary in summaries(args.trace, tracker):
                out.write(json.dumps(summary, ensure_ascii=False) + "\n")
        else:
            for event in replay(args.trace, tracker):
                out.write(json.dumps(event.to_dict(), ensure_ascii=False, default=str) + "\n")
    except TraceError as exc:
        print(f"cti replay: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    return 0
