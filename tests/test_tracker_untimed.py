"""A PBX without ``timestampevents = yes`` (Asterisk's default) sends no ``Timestamp``: the
tracker follows the same calls to the same ends, only without the times it cannot know.

Every recorded Asterisk 22 trace, its ``Timestamp`` headers taken out: each call's summary is
the one of the trace as recorded, its times (``wait_s``, ``duration_s``) unknown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from cti.replay import read_events, summaries
from cti.tracker import CallTracker

TRACES = Path(__file__).resolve().parent.parent.parent / "shared" / "ami-traces" / "asterisk22"
NAMES = sorted(p.stem for p in TRACES.glob("*.ami"))
TIMES = ("wait_s", "duration_s")


def without_times(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k not in TIMES}


@pytest.mark.skipif(not NAMES, reason="recorded traffic not found beside the checkout")
@pytest.mark.parametrize("name", NAMES)
def test_calls_end_as_they_do_with_timestamps(name: str, tmp_path: Path) -> None:
    timed = summaries(TRACES / f"{name}.ami", CallTracker())
    untimed_trace = tmp_path / f"{name}.json"
    recorded = read_events(TRACES / f"{name}.ami")
    events = [{k: v for k, v in e.items() if k != "Timestamp"} for e in recorded]
    untimed_trace.write_text(json.dumps(events), encoding="utf-8")
    with capture_logs() as logs:
        untimed = summaries(untimed_trace, CallTracker())
    assert [e for e in logs if e["event"] == "tracker.event_failed"] == []
    assert [without_times(s) for s in untimed] == [without_times(s) for s in timed]
    assert all(s[k] is None for s in untimed for k in TIMES)
