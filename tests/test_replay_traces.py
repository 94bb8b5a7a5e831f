"""Every shared trace replays to its ground truth (the rules of ../shared/tools/check-replay)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cti.replay import TraceError, read_events, summaries
from cti.tracker import SUMMARY_KEYS, CallTracker

# The same place as the ``traces_dir`` fixture (parametrisation happens before fixtures exist).
TRACES = Path(__file__).resolve().parent.parent.parent / "shared" / "ami-traces"
TOLERANCE = 1.0


def _pairs() -> list[tuple[Path, Path]]:
    out = []
    for truth in sorted(TRACES.rglob("*.truth.json")):
        stem = truth.name[: -len(".truth.json")]
        for suffix in (".json", ".ami"):
            trace = truth.with_name(stem + suffix)
            if trace.exists():
                out.append((truth, trace))
    return out


def _same(expected: Any, got: Any, where: str) -> str | None:
    """The checker's subset comparison: first difference, or None."""
    if isinstance(expected, bool) or expected is None or isinstance(expected, str):
        return None if got == expected and type(got) is type(expected) else f"{where}: {got!r}"
    if isinstance(expected, int | float):
        ok = isinstance(got, int | float) and not isinstance(got, bool)
        return None if ok and abs(got - expected) <= TOLERANCE else f"{where}: {got!r}"
    if isinstance(expected, list):
        if not isinstance(got, list) or len(got) != len(expected):
            return f"{where}: {got!r} (expected {expected!r})"
        for i, (e, g) in enumerate(zip(expected, got, strict=True)):
            diff = _same(e, g, f"{where}[{i}]")
            if diff:
                return diff
        return None
    if isinstance(expected, dict):
        if not isinstance(got, dict):
            return f"{where}: {got!r}"
        for key, value in expected.items():
            if key not in got:
                return f"{where}.{key} missing"
            diff = _same(value, got[key], f"{where}.{key}")
            if diff:
                return diff
        return None
    return f"{where}: unexpected truth value {expected!r}"


@pytest.mark.parametrize(
    ("truth", "trace"),
    _pairs(),
    ids=lambda p: str(p.relative_to(TRACES)) if isinstance(p, Path) else str(p),
)
def test_trace_summary_matches_ground_truth(truth: Path, trace: Path, traces_dir: Path) -> None:
    expected = json.loads(truth.read_text())["calls"]
    got = summaries(trace, CallTracker())
    for summary in got:
        assert tuple(summary) == SUMMARY_KEYS
    by_id: dict[str, list[dict[str, Any]]] = {}
    for summary in got:
        by_id.setdefault(summary["call_id"], []).append(summary)
    for call in expected:
        found = by_id.get(call["call_id"], [])
        assert len(found) == 1, f"call {call['call_id']} reported {len(found)} times"
        diff = _same(call, found[0], call["call_id"])
        assert diff is None, diff


def test_ami_and_json_of_the_same_recording_give_the_same_events(traces_dir: Path) -> None:
    ami = traces_dir / "asterisk22" / "blind_transfer_tier1_to_tier2.ami"
    from_ami = [e.to_dict() for e in _replay(ami)]
    from_json = [e.to_dict() for e in _replay(ami.with_suffix(".json"))]
    assert from_ami == from_json
    assert [e["event"] for e in from_ami if e["call"] == "1795394598.16"][:3] == [
        "offered",
        "queued",
        "ringing",
    ]


def _replay(path: Path) -> list[Any]:
    from cti.replay import replay

    return list(replay(path, CallTracker()))


def test_a_missing_trace_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="cannot read"):
        list(read_events(tmp_path / "nope.ami"))


def test_a_json_trace_that_is_not_a_list_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"Event": "Newchannel"}')
    with pytest.raises(TraceError, match="JSON list"):
        list(read_events(bad))


def test_responses_between_events_are_not_events(tmp_path: Path) -> None:
    trace = tmp_path / "t.ami"
    trace.write_bytes(
        b"Asterisk Call Manager/11.0.0\r\n"
        b"Response: Success\r\nMessage: Authentication accepted\r\n\r\n"
        b"Event: FullyBooted\r\nStatus: Fully Booted\r\n\r\n"
        b"Event: Hangup\r\nChannel: SIP/a-1\r\nUniqueid: 1.1\r\nLinkedid: 1.1"  # no blank line
    )
    assert [e["Event"] for e in read_events(trace)] == ["FullyBooted", "Hangup"]


def test_cli_summary_prints_one_json_line_per_call_with_exactly_the_summary_keys(
    traces_dir: Path, tmp_path: Path
) -> None:
    trace = traces_dir / "asterisk22" / "answered_tier1.ami"
    config = tmp_path / "cti.toml"
    config.write_text('[phone]\ndefault_region = "GB"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "cti", "replay", str(trace), "--summary", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(lines) == 1
    assert tuple(lines[0]) == SUMMARY_KEYS
    assert lines[0]["caller_e164"] == "+442071234567"
    assert lines[0]["answered_by"] == "Agent 1001"


def test_cli_on_a_missing_trace_exits_non_zero_with_a_message(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cti", "replay", str(tmp_path / "missing.ami")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "cannot read" in proc.stderr


def test_json_events_reach_the_tracker_as_decoded_without_a_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cti.replay

    trace = tmp_path / "t.json"
    trace.write_text(
        json.dumps(
            [
                {"Event": "Newchannel", "Channel": "SIP/a-1", "Uniqueid": "1.1", "Linkedid": "1.1"},
                {"Event": "VarSet", "Channel": "SIP/a-1", "Variable": "X", "Value": "1"},
                {"Event": "Hangup", "Channel": "SIP/a-1", "Uniqueid": "1.1", "Linkedid": "1.1"},
            ]
        )
    )
    decoded: list[Any] = []
    real_loads = json.loads

    def loads(text: str) -> Any:
        decoded.extend(real_loads(text))
        return decoded

    monkeypatch.setattr(cti.replay.json, "loads", loads)
    events = list(read_events(trace, CallTracker().wanted_events))
    assert [e["Event"] for e in events] == ["Newchannel", "Hangup"]  # VarSet: not wanted
    assert events[0] is decoded[0] and events[1] is decoded[2]


def test_a_json_trace_with_non_string_values_still_gives_strings(tmp_path: Path) -> None:
    trace = tmp_path / "t.json"
    trace.write_text(json.dumps([{"Event": "Hangup", "Cause": 16, "Uniqueid": "1.1"}]))
    assert list(read_events(trace)) == [{"Event": "Hangup", "Cause": "16", "Uniqueid": "1.1"}]
