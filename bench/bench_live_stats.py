"""Today's live figures (``/api/stats/live``, the supervisor console) at the end of a busy day.

A generated day (``tests/live_day.py``: about 60,000 legs of 55,500 calls in six queues of three
tiers, 200 agents, abandons, timeouts, holds, transfers, escalations, wrap-ups) is fed, event
by event, to ``cti.stats.live.LiveStats`` and to the way it computed figures before
(``tests/live_reference.py``: every request grouped and recomputed the whole day). For each:

- ``apply``: mean time per event over the whole day, and over its last hour; ``wrap_up``: per
  wrap-up measured (joined to its call's legs);
- ``to_dict``: one ``/api/stats/live`` answer in the afternoon, with calls in progress, and at
  the end of the day (median of 5);
- ``figures(queue)``, ``figures(hour)``: what the console's refresh reads (median of 5).

The two answers must be equal (the run fails otherwise).

    .venv/bin/python bench/bench_live_stats.py [--calls 55500]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from live_day import LIMITS, TIERS, WrapUp, day  # noqa: E402
from live_reference import ReferenceLiveStats  # noqa: E402

from cti.stats.live import LiveStats  # noqa: E402


def median_ms(fn: Callable[[], Any], runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def run(name: str, live: Any, steps: list[Any]) -> dict[str, Any]:
    last_hour = max(s.ts or 0.0 for s in steps if not isinstance(s, WrapUp)) - 3600
    spent = {"apply": 0.0, "wrap_up": 0.0, "apply_late": 0.0}
    count = dict.fromkeys(spent, 0)
    midday = len(steps) * 3 // 4
    busy: dict[str, float] = {}
    for n, step in enumerate(steps):
        if n == midday:  # an afternoon's answer, with calls in progress
            busy["calls"] = len({leg.call_id for leg in live.legs.live_legs()})
            busy["ms"] = median_ms(lambda: live.to_dict(live.now))
        t = time.perf_counter()
        if isinstance(step, WrapUp):
            live.wrap_up(step.call, step.agent, step.seconds)
            kinds: tuple[str, ...] = ("wrap_up",)
        else:
            live.apply(step)
            kinds = ("apply", "apply_late") if live.now >= last_hour else ("apply",)
        took = time.perf_counter() - t
        for kind in kinds:
            spent[kind] += took
            count[kind] += 1
    us = {kind: spent[kind] / max(1, count[kind]) * 1e6 for kind in spent}
    now = live.now + 1
    out = {
        "name": name,
        "legs": len(live.today()),
        "to_dict_ms": median_ms(lambda: live.to_dict(now)),
        "queue_ms": median_ms(lambda: live.figures("queue", now)),
        "hour_ms": median_ms(lambda: live.figures("hour", now)),
        "answer": live.to_dict(now),
    }
    print(
        f"{name:>7}: {out['legs']} legs; apply {us['apply']:.1f} µs/event (last hour "
        f"{us['apply_late']:.1f}), wrap_up {us['wrap_up']:.1f} µs; to_dict in the afternoon "
        f"({busy['calls']:.0f} calls in progress) {busy['ms']:.2f} ms, at the end of the day "
        f"{out['to_dict_ms']:.2f} ms; figures(queue) {out['queue_ms']:.2f} ms, "
        f"figures(hour) {out['hour_ms']:.2f} ms",
        flush=True,
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=55_500)
    args = parser.parse_args()
    t = time.perf_counter()
    steps = day(args.calls)
    print(f"generated {len(steps)} events and wrap-ups in {time.perf_counter() - t:.1f} s")
    before = run("before", ReferenceLiveStats(LIMITS, TIERS), steps)
    after = run("after", LiveStats(LIMITS, TIERS), steps)
    same = before["answer"] == after["answer"]
    print(f"to_dict: {before['to_dict_ms'] / after['to_dict_ms']:.0f}x faster; equal: {same}")
    if not same:
        sys.exit("the figures differ")


if __name__ == "__main__":
    main()
