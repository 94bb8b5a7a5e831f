"""Call tracker throughput on the shared traces, repeated to at least a million events.

    .venv/bin/python bench/bench_tracker.py [--events N] [--skip-cacofonisk]

Prints, on the same events in the same run:
  * parse alone: our AmiParser vs panoramisk 1.4's AMIProtocol.data_received on the same bytes;
  * raw AMI bytes -> parse + track (target >= 100,000 events/s on one core);
  * tracker alone (target >= 2x cacofonisk), and cacofonisk's EventHandler on the very same
    events: the whole stream as recorded, and both pre-filtered identically;
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
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import structlog

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cti.ami.wire import AmiParser, serialise_action  # noqa: E402
from cti.tracker import CallTracker  # noqa: E402
from cti.tracker.tracker import RECENTLY_ENDED  # noqa: E402

TRACES = ROOT.parent / "shared" / "ami-traces"
CHUNK = 4096  # a typical socket read
DROP = {"VarSet", "Newexten"}


def load_traces() -> list[tuple[str, list[dict[str, str]]]]:
    traces = []
    for path in sorted(TRACES.rglob("*.json")):
        if path.name.endswith(".truth.json") or "protocol" in path.parts:
            continue
        events = [e for e in json.loads(path.read_text()) if isinstance(e, dict) and "Event" in e]
        clean = [{k: str(v) for k, v in e.items() if k != "content"} for e in events]
        traces.append((str(path.relative_to(TRACES)), clean))
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


def recorded_wire(at_least: int) -> None:
    """Parse, and parse + track, on the recorded Asterisk 22 .ami files: real wire bytes."""
    files = sorted((TRACES / "asterisk22").glob("*.ami"))
    blob = b"".join(f.read_bytes() for f in files)
    per_pass = len(AmiParser().feed(blob))
    passes = -(-at_least // per_pass)
    t_parse = t_both = 0.0
    for _ in range(passes):  # same ids each pass: every call ends within its own file
        t0 = time.process_time()
        parser = AmiParser()
        for chunk in chunks(blob):
            parser.feed(chunk)
        t1 = time.process_time()
        parser = AmiParser(skip_events=DROP)
        tracker = CallTracker()
        for chunk in chunks(blob):
            for event in parser.feed(chunk):
                tracker.feed(event)
        t_both += time.process_time() - t1
        t_parse += t1 - t0
    n = passes * per_pass
    print(f"  recorded Asterisk 22 wire bytes ({len(files)} .ami files x{passes}):")
    print(f"    parse alone, AmiParser         {rate(n, t_parse)}")
    print(f"    parse + track                  {rate(n, t_both)}   target >= 100,000")


def memory(base: list[dict[str, str]], reps: int) -> None:
    """Memory the tracker itself holds (tracemalloc) as repetitions go by: it must stay flat.

    Ended call ids are remembered (to ignore late events) up to a cap; a cap of 1,000 here
    is reached in the first repetitions, so what follows shows any real leak."""
    keep = 1_000
    tracker = CallTracker(remember_ended=keep)
    n = min(reps, 30)  # tracemalloc is slow
    tracemalloc.start()
    held = []
    for rep in range(n):
        events = rewrite(base, rep)
        for event in events:
            tracker.feed(event)
        del events
        gc.collect()
        held.append(tracemalloc.get_traced_memory()[0] / 1024)
    tracemalloc.stop()
    marks = ", ".join(f"{held[i - 1]:.0f} KiB after {i}" for i in (1, n // 3, 2 * n // 3, n))
    print(
        f"  tracker memory (tracemalloc, ended ids kept: {keep:,}; default {RECENTLY_ENDED:,}):"
        f" {marks} repetitions ({n * len(base):,} events); state {tracker.sizes}"
    )


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
    ap.add_argument("--tracker-only", action="store_true", help="only the tracker-alone part")
    args = ap.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    logging.disable(logging.WARNING)  # cacofonisk warns on every event it cannot place

    traces = load_traces()
    base = [e for _, t in traces for e in t]
    reps = -(-args.events // len(base))
    total = reps * len(base)
    kept = sum(1 for e in base if e["Event"] not in DROP) * reps
    print(f"shared traces: {len(traces)} traces, {len(base):,} events; x{reps} = {total:,} events")
    print(f"  ({kept:,} after dropping VarSet/Newexten, {100 - 100 * kept / total:.0f}% dropped)")

    if not args.tracker_only:
        raw_bytes(base, reps, total, args.events)
    tracker_alone(args, traces, base)
    return 0


def raw_bytes(base: list[dict[str, str]], reps: int, total: int, at_least: int) -> None:
    # --- raw bytes: parse alone, parse + track, panoramisk's parser -----------------------
    t_parse = t_both = t_pano = 0.0
    n_parse = n_pano = 0
    pano = panoramisk_parser()
    tracker = CallTracker()
    rss0 = sizes1 = None
    for rep in range(reps):
        data = to_wire(rewrite(base, rep))
        gc.collect()
        t0 = time.process_time()
        parser = AmiParser()
        for chunk in chunks(data):
            n_parse += len(parser.feed(chunk))
        t1 = time.process_time()
        parser = AmiParser(skip_events=DROP)
        feed = tracker.feed
        for chunk in chunks(data):
            for event in parser.feed(chunk):
                feed(event)
        t2 = time.process_time()
        t_parse += t1 - t0
        t_both += t2 - t1
        if pano is not None:
            proto, count = pano
            t3 = time.process_time()
            for chunk in chunks(data):
                proto.data_received(chunk)  # type: ignore[attr-defined]
            t_pano += time.process_time() - t3
            n_pano = count[0]
        if rep == 0:
            rss0, sizes1 = rss_mib(), dict(tracker.sizes)
    print("\nraw AMI bytes (4 KiB reads; CPU seconds of this process, the machine is shared):")
    print(f"  parse alone, AmiParser           {rate(n_parse, t_parse)}")
    if pano is not None:
        print(f"  parse alone, panoramisk 1.4      {rate(n_pano, t_pano)}")
    print(f"  parse + track (drop VarSet/...)  {rate(total, t_both)}   target >= 100,000")
    print(
        f"  process RSS {rss0:.1f} MiB after 1 repetition, {rss_mib():.1f} MiB after {reps}"
        f" (includes the test data); tracker state {sizes1} -> {tracker.sizes}"
    )
    recorded_wire(at_least)
    memory(base, reps)


Trace = list[dict[str, str]]


def tracker_alone(args: argparse.Namespace, traces: list[tuple[str, Trace]], base: Trace) -> None:
    # --- tracker alone, and cacofonisk on the same events ---------------------------------
    caco_cls: Any = None
    reporter_cls: Any = None
    if not args.skip_cacofonisk:
        try:
            from cacofonisk.handlers import EventHandler
            from cacofonisk.reporters import BaseReporter

            caco_cls, reporter_cls = EventHandler, BaseReporter
        except ImportError as exc:
            print(f"\ncacofonisk: skipped ({exc}); `.venv/bin/pip install cacofonisk` to compare")
    ours_wanted = CallTracker().wanted_events
    caco_wanted = frozenset(caco_cls.event_handlers()) if caco_cls is not None else frozenset()
    union = ours_wanted | caco_wanted
    print("\ntracker alone (events already parsed; CPU seconds of this process).")
    print("  Both trackers get the SAME events, in the same repetition, alternately:")
    print("  'whole stream' = every event as recorded (ours drops VarSet/Newexten itself, in")
    print("  feed(), and that is timed); 'same pre-filter' = both get only the event types either")
    print("  tracker uses, filtered before timing, identically for both.")
    families = {
        "all shared traces": base,
        "cacofonisk's own fixtures": [e for path, t in traces if "cacofonisk" in path for e in t],
        "asterisk22 recordings": [e for path, t in traces if "asterisk22" in path for e in t],
    }
    summary: list[str] = []
    for label, events_base in families.items():
        f_reps = -(-args.events // len(events_base))
        f_total = f_reps * len(events_base)
        kept = sum(1 for e in events_base if e["Event"] in union) * f_reps
        results: dict[str, list[float]] = {"ours": [0.0, 0.0], "caco": [0.0, 0.0]}
        raised = 0
        trackers = [CallTracker(), CallTracker()]
        cacos = [caco_cls(reporter_cls()) for _ in range(2)] if caco_cls is not None else []
        for rep in range(f_reps):
            for way in (0, 1):  # 0: whole stream, 1: same pre-filter for both
                # a fresh copy per side (with the same ids): neither sees the other's dicts
                mine = rewrite(events_base, rep)
                theirs = rewrite(events_base, rep)
                if way:
                    mine = [e for e in mine if e["Event"] in union]
                    theirs = [e for e in theirs if e["Event"] in union]
                gc.collect()
                feed = trackers[way].feed
                t0 = time.process_time()
                for event in mine:
                    feed(event)
                results["ours"][way] += time.process_time() - t0
                if cacos:
                    on_event = cacos[way].on_event
                    gc.collect()
                    t0 = time.process_time()
                    for event in theirs:
                        try:
                            on_event(event)
                        except Exception:
                            raised += 1
                    results["caco"][way] += time.process_time() - t0
        print(f"  {label} (x{f_reps}):")
        for way, (what, n) in enumerate((("whole stream", f_total), ("same pre-filter", kept))):
            print(f"    ours,       {what:<16} {rate(n, results['ours'][way])}")
            if cacos:
                print(f"    cacofonisk, {what:<16} {rate(n, results['caco'][way])}")
                ratio = results["caco"][way] / results["ours"][way]
                print(f"    ratio ours / cacofonisk, {what:<16} {ratio:.2f}x   target >= 2x")
                summary.append(f"  {label:<26} {what:<16} {ratio:5.2f}x")
        if raised:
            print(f"    cacofonisk raised {raised:,} times (caught, timed)")
        print(f"    tracker state at the end: {trackers[0].sizes}")
    if summary:
        print("\nours / cacofonisk, same events, same run (target >= 2x):")
        print("\n".join(summary))


if __name__ == "__main__":
    raise SystemExit(main())
