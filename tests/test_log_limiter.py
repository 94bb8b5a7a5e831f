"""Repeated warnings are rate-limited with a count, so an outage does not flood the log."""

from __future__ import annotations

import json

import pytest
import structlog

from cti.logsetup import WarningLimiter, configure_logging, suppressed_warnings


def test_8000_identical_warnings_write_a_few_lines_and_then_say_how_many_were_dropped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    now = [0.0]
    configure_logging(
        "info", "json", limiter=WarningLimiter(burst=5, window_s=30.0, clock=lambda: now[0])
    )
    log = structlog.get_logger("test")
    for n in range(8000):
        log.warning("crm lookup failed", call_id=f"c{n}")
        now[0] += 0.001  # 8 s of calls
    log.info("other lines are not limited")
    log.warning("another kind of warning")
    now[0] += 30.0
    log.warning("crm lookup failed", call_id="after")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    failed = [line for line in lines if line["event"] == "crm lookup failed"]
    assert len(failed) == 6
    assert [line["call_id"] for line in failed[:5]] == ["c0", "c1", "c2", "c3", "c4"]
    assert failed[5]["suppressed"] == 7995
    assert failed[5]["note"] == "7995 similar warnings suppressed"
    assert {line["event"] for line in lines} >= {
        "other lines are not limited",
        "another kind of warning",
    }
    assert suppressed_warnings() == 7995
