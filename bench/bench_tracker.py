"""Call tracker throughput on the shared traces, repeated to at least a million events.

    .venv/bin/python bench/bench_tracker.py [--events N] [--skip-cacofonisk]

Prints, on the same events in the same run:
  * parse alone: our AmiParser vs panoramisk 1.4's AMIProtocol.data_received on the same bytes;
  * raw AMI bytes -> parse + track (target >= 100,000 events/s on one core);
  * tracker alone (target >= 2x cacofonisk), and cacofonisk's EventHandler on the same events;
  * memory (RSS and tracker state) after the first repetition and at the end: it must stay flat.
Each repetition rewrites every *Uniqueid/*Linkedid value so the calls are distinct.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import structlog

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cti.ami.wire import AmiParser, serialise_action  # noqa: E402
from cti.tracker import CallTracker  # noqa: E402

TRACES = ROOT.parent / "shared" / "ami-traces"
CHUNK = 4096  # a typical socket read
DROP = {"VarSet", "Newexten"}


def load_traces() -> list[list[dict[str, str]]]:
    traces = []
    for path in sorted(TRACES.rglob("*.json")):
        if path.name.endswith(".truth.json") or "protocol" in path.parts:
            continue
        events = [e for e in json.loads(path.read_text()) if isinstance(e, dict) and "Event" in e]
        traces.append([{k: str(v) for k, v in e.items() if k != "content"} for e in events])
    return traces


def rewrite(events: list[dict[str, str]], rep: int) -> list[dict[str, str]]:
    """The same events with every Uniqueid/Linkedid made distinct for this repetition."""
    tag = f"r{rep}."
    out = []
    for e in events:
        new = dict(e)
        for key, value in e.items():
            if value and (key.endswith("Uniqueid") or key.endswith("Linkedid")):
                new[key] = tag + value
        out.append(new)
    return out


def to_wire(events: list[dict[str, str]]) -> bytes:
    return b"".join(serialise_action(e) for e in events)


def chunks(data: bytes) -> Iterator[bytes]:
    for i in range(0, len(data), CHUNK):
        yield data[i : i + CHUNK]


def rss_mib() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:>12,.0f} events/s  ({n:,} events in {seconds:.2f} s)"


def panoramisk_parser() -> tuple[object, list[int]] | None:
    try:
        from panoramisk.ami_protocol import AMIProtocol
    except ImportError:
        return None
    count = [0]

    class Counting(AMIProtocol):  # type: ignore[misc]
        def handle_message(self, message: object) -> None:
            count[0] += 1

    proto = Counting()
    proto.queue = __import__("collections").deque()
    proto.version = None
    proto.factory = None
    proto.log = logging.getLogger("bench.panoramisk")
    return proto, count


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=1_000_000, help="at least this many events")
    ap.add_argument("--skip-cacofonisk", action="store_true")
    args = ap.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    logging.disable(logging.WARNING)  # cacofonisk warns on every event it cannot place

    traces = load_traces()
    base = [e for t in traces for e in t]
    reps = -(-args.events // len(base))
    total = reps * len(base)
    kept = sum(1 for e in base if e["Event"] not in DROP) * reps
    print(f"shared traces: {len(traces)} traces, {len(base):,} events; x{reps} = {total:,} events")
    print(f"  ({kept:,} after dropping VarSet/Newexten, {100 - 100 * kept / total:.0f}% dropped)")

    # --- raw bytes: parse alone, parse + track, panoramisk's parser -----------------------
    t_parse = t_both = t_pano = 0.0
    n_parse = n_pano = 0
    pano = panoramisk_parser()
    tracker = CallTracker()
    rss0 = sizes1 = None
    for rep in range(reps):
        data = to_wire(rewrite(base, rep))
        gc.collect()
        t0 = time.perf_counter()
        parser = AmiParser()
        for chunk in chunks(data):
            n_parse += len(parser.feed(chunk))
        t1 = time.perf_counter()
        parser = AmiParser(skip_events=DROP)
        feed = tracker.feed
        for chunk in chunks(data):
            for event in parser.feed(chunk):
                feed(event)
        t2 = time.perf_counter()
        t_parse += t1 - t0
        t_both += t2 - t1
        if pano is not None:
            proto, count = pano
            t3 = time.perf_counter()
            for chunk in chunks(data):
                proto.data_received(chunk)  # type: ignore[attr-defined]
            t_pano += time.perf_counter() - t3
            n_pano = count[0]
        if rep == 0:
            rss0, sizes1 = rss_mib(), dict(tracker.sizes)
    print("\nraw AMI bytes (4 KiB reads):")
    print(f"  parse alone, AmiParser           {rate(n_parse, t_parse)}")
    if pano is not None:
        print(f"  parse alone, panoramisk 1.4      {rate(n_pano, t_pano)}")
    print(f"  parse + track (drop VarSet/...)  {rate(total, t_both)}   target >= 100,000")
    print(
        f"  memory: RSS {rss0:.1f} MiB after 1 repetition, {rss_mib():.1f} MiB after {reps};"
        f" tracker state {sizes1} -> {tracker.sizes}"
    )

    # --- tracker alone, and cacofonisk on the same events ---------------------------------
    t_ours = t_caco = 0.0
    caco = None
    if not args.skip_cacofonisk:
        try:
            from cacofonisk.handlers import EventHandler
            from cacofonisk.reporters import BaseReporter

            caco = EventHandler(BaseReporter())
            caco_wanted = set(caco.event_handlers())
        except ImportError as exc:
            print(f"\ncacofonisk: skipped ({exc}); `.venv/bin/pip install cacofonisk` to compare")
    tracker = CallTracker()
    caco_errors = 0
    for rep in range(reps):
        events = rewrite(base, rep)
        gc.collect()
        feed = tracker.feed
        t0 = time.perf_counter()
        for event in events:
            feed(event)
        t_ours += time.perf_counter() - t0
        if caco is not None:
            on_event = caco.on_event
            t0 = time.perf_counter()
            for event in events:
                if event["Event"] in caco_wanted:  # as its FileRunner does
                    try:
                        on_event(event)
                    except Exception:
                        caco_errors += 1
            t_caco += time.perf_counter() - t0
    print("\ntracker alone (events already parsed):")
    print(f"  ours, CallTracker                {rate(total, t_ours)}")
    if caco is not None:
        print(f"  cacofonisk EventHandler          {rate(total, t_caco)}  ({caco_errors} raised)")
        print(f"  ratio ours / cacofonisk          {t_caco / t_ours:.2f}x   target >= 2x")
    print(f"  tracker state at the end: {tracker.sizes}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
