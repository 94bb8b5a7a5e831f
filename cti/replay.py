"""Replay a recorded trace through the call tracker: the same code path as the live daemon."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

from cti.ami.wire import AmiParser
from cti.tracker import CallTracker
from cti.tracker.events import CallEvent

READ_CHUNK = 1 << 16


class TraceError(ValueError):
    """The trace cannot be read (missing, not a trace, bad JSON)."""


def read_events(path: Path, wanted: Collection[str] | None = None) -> Iterator[dict[str, str]]:
    """AMI events from a ``.ami`` (raw wire bytes) or ``.json`` (list of objects) trace.

    Only messages with an ``Event`` header are events; responses to actions are skipped.
    ``wanted`` (event names) lets a JSON trace skip the others before they are looked at.
    """
    try:
        if path.suffix == ".json":
            yield from _read_json(path, wanted)
            return
        parser = AmiParser()
        with path.open("rb") as fh:
            while chunk := fh.read(READ_CHUNK):
                for msg in parser.feed(chunk):
                    if "Event" in msg:
                        yield msg
            for msg in parser.feed(b"\r\n\r\n"):  # a last block without its blank line
                if "Event" in msg:
                    yield msg
    except OSError as exc:
        raise TraceError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _read_json(path: Path, wanted: Collection[str] | None) -> Iterator[dict[str, str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise TraceError(f"{path}: not JSON ({exc})") from exc
    if not isinstance(data, list):
        raise TraceError(f"{path}: expected a JSON list of AMI events")
    for i, item in enumerate(data):
        if type(item) is not dict:
            raise TraceError(f"{path}: item {i} is not an object")
        name = item.get("Event")
        if name is None or (wanted is not None and str(name) not in wanted):
            continue
        # The format has only string values: the decoded object is the event as it is. A
        # copy of each (hundreds of thousands in a big trace) cost more than the tracking.
        for value in item.values():
            if type(value) is not str:
                yield {str(k): v if isinstance(v, str) else str(v) for k, v in item.items()}
                break
        else:
            yield item


def replay(path: Path, tracker: CallTracker) -> Iterator[CallEvent]:
    """Every call event the tracker emits for the trace, in order."""
    feed = tracker.feed
    for event in read_events(path, tracker.wanted_events):
        yield from feed(event)


def summaries(path: Path, tracker: CallTracker) -> list[dict[str, Any]]:
    """One summary per call: those that ended in the trace, then those still open at its end."""
    out = [ev.data["summary"] for ev in replay(path, tracker) if ev.event == "ended"]
    out.extend(tracker.open_summaries())
    return out
