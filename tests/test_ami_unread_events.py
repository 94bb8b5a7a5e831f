"""Events nothing reads are dropped unparsed as they arrive (``cti.ami.client.UNREAD_EVENTS``):
nearly half of a queue call's events even once Asterisk's filters drop VarSet and Newexten.
Dropping them changes nothing the tracker reports, on every recorded Asterisk 22 trace."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from cti.ami.client import UNREAD_EVENTS
from cti.ami.wire import AmiParser
from cti.tracker.tracker import CallTracker

# What the client and the resync wait for by name: never to be dropped.
READ_BY_THE_CLIENT = {
    "FullyBooted",
    "Shutdown",
    "OriginateResponse",
    "CoreShowChannel",
    "CoreShowChannelsComplete",
    "Status",
    "StatusComplete",
    "BridgeListItem",
    "BridgeInfoChannel",
    "QueueParams",
    "QueueMember",
    "QueueEntry",
}


def test_no_event_the_tracker_or_the_client_reads_is_dropped() -> None:
    assert not UNREAD_EVENTS & CallTracker().wanted_events
    assert not UNREAD_EVENTS & READ_BY_THE_CLIENT


def _call_events(data: bytes, skip: frozenset[str]) -> tuple[list[object], int]:
    parser = AmiParser(skip_events=skip)
    tracker = CallTracker()
    out: list[object] = []
    for start in range(0, len(data), 1400):  # as the socket delivers it: in pieces
        for message in parser.feed(data[start : start + 1400]):
            out.extend(dataclasses.astuple(e) for e in tracker.feed(message))
    return out, parser.skipped


def test_the_tracker_reports_the_same_calls_with_the_unread_events_dropped(
    traces_dir: Path,
) -> None:
    traces = sorted((traces_dir / "asterisk22").glob("*.ami"))
    if not traces:
        pytest.skip("no recorded traces")
    dropped = 0
    for path in traces:
        data = path.read_bytes()
        everything, none = _call_events(data, frozenset())
        skipping, skipped = _call_events(data, UNREAD_EVENTS)
        assert none == 0
        assert everything and skipping == everything, path.name
        dropped += skipped
    assert dropped > 0  # the traces do carry such events: the comparison is not empty
