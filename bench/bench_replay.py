"""`cti replay --summary` of a big JSON trace, end to end, beside the tracker alone.

    .venv/bin/python bench/bench_replay.py [--events 300000] [--keep PATH]

Builds a JSON trace of at least N events by repeating the shared traces (every *Uniqueid and
*Linkedid rewritten per repetition so the calls are distinct), then times, on that one file:
  * end to end: read and decode the file, feed the tracker, build the summaries (what
    `cti replay --summary` does, without the printing);
  * reading alone (`cti.replay.read_events`);
  * the tracker alone on the events already in memory;
  * cacofonisk's FileRunner on the same file, when cacofonisk is installed.
The end-to-end time is what a user waits for; the difference to the tracker alone is the reader.
Times are CPU seconds of this process (best of --runs): on a shared machine wall time mostly
measures the neighbours.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import structlog

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_tracker import load_traces, rewrite  # noqa: E402

from cti.replay import read_events, summaries  # noqa: E402
from cti.tracker import CallTracker  # noqa: E402


def build(path: Path, at_least: int) -> int:
    base = [e for _, events in load_traces() for e in events]
    out: list[dict[str, str]] = []
    rep = 0
    while len(out) < at_least:
        out.extend(rewrite(base, rep))
        rep += 1
    path.write_text(json.dumps(out))
    return len(out)


def best(runs: int, fn: object) -> float:
    times = []
    for _ in range(runs):
        gc.collect()
        start = time.process_time()
        fn()  # type: ignore[operator]
        times.append(time.process_time() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="write the built trace here (and keep it)")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    logging.disable(logging.WARNING)  # cacofonisk warns on every event it cannot place
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "big.json"
        n = build(path, args.events)
        size = path.stat().st_size / 1e6
        print(f"trace: {n:,} events, {size:.0f} MB JSON")
        events = list(read_events(path))

        def end_to_end() -> None:
            summaries(path, CallTracker())

        def reading() -> None:
            for _ in read_events(path):
                pass

        def tracker_alone() -> None:
            tracker = CallTracker()
            feed = tracker.feed
            for event in events:
                feed(event)
            tracker.open_summaries()

        runs = [
            ("end to end (cti replay --summary)", end_to_end),
            ("reading the JSON alone", reading),
            ("tracker alone (events in memory)", tracker_alone),
        ]
        try:
            from cacofonisk.reporters import BaseReporter
            from cacofonisk.runners.file_runner import FileRunner

            def cacofonisk() -> None:
                FileRunner(str(path), BaseReporter()).run()

            runs.append(("cacofonisk FileRunner, same file", cacofonisk))
        except ImportError:
            print("cacofonisk: skipped (`.venv/bin/pip install cacofonisk` to compare)")
        for label, fn in runs:
            seconds = best(args.runs, fn)
            print(f"{label:36s} {seconds:6.2f} s CPU  {n / seconds:>10,.0f} events/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
