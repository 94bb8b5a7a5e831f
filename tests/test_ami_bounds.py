"""AMI input is bounded: over-long lines are cut and counted, 1 MB caller IDs neither grow the
daemon's memory nor reach the database, and channels whose Hangup never comes expire."""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from interaction_world import (
    call_id_of,
    metric,
    recorded,
    renumbered,
    unique_shift,
    wait_until,
    world,
)

from cti.ami.wire import MAX_LINE, AmiParser
from cti.tracker.tracker import CallTracker

MB = 1 << 20


def test_a_1_mb_header_is_cut_to_the_line_bound_and_never_buffered_whole() -> None:
    parser = AmiParser()
    value = b"9" * MB
    head = b"Event: NewCallerid\r\nChannel: PJSIP/x-1\r\nCallerIDNum: "
    out = parser.feed(head)
    for start in range(0, MB, 65536):  # as it arrives from the socket
        out += parser.feed(value[start : start + 65536])
        assert parser.pending <= MAX_LINE + len(head)
    out += parser.feed(b"\r\nUniqueid: 1.1\r\n\r\nEvent: Next\r\n\r\n")
    assert [m["Event"] for m in out] == ["NewCallerid", "Next"]
    assert len(out[0]["CallerIDNum"]) < MAX_LINE and out[0]["Uniqueid"] == "1.1"
    assert parser.stats().lines_cut == 1

    # Also when the whole line arrives in one read.
    parser = AmiParser()
    (msg,) = parser.feed(head + value + b"\r\nUniqueid: 1.2\r\n\r\n")
    assert len(msg["CallerIDNum"]) < MAX_LINE and msg["Uniqueid"] == "1.2"
    assert parser.stats().lines_cut == 1


def test_a_block_that_never_ends_is_dropped_not_kept() -> None:
    parser = AmiParser()
    for _ in range(40_000):
        parser.feed(b"Key: value value value value value\r\n")
    assert parser.pending < 2 * MB
    assert parser.stats().blocks_dropped >= 1
    assert parser.feed(b"\r\nEvent: After\r\n\r\n")[-1] == {"Event": "After"}


def call_with_big_caller_id(events: list[dict[str, str]], shift: int) -> list[dict[str, str]]:
    """A recorded call (only the events the tracker reads) whose caller ID is 1 MB (a spoofed
    SIP From user) where it is set and where the call is offered to the queue."""
    wanted = CallTracker().wanted_events
    call = [e for e in renumbered(events, shift) if e.get("Event") in wanted]
    big = "+44" + "7" * (MB - 3)
    setting = {"NewCallerid", "QueueCallerJoin"}
    return [{**e, "CallerIDNum": big} if e.get("Event") in setting else e for e in call]


async def progressing(left: Callable[[], int], what: str, stall_s: float = 60.0) -> None:
    """Until nothing is ``left``; fail only when it stops falling for ``stall_s``. The work is
    seconds of CPU: on a machine shared by many it may take minutes, and is not stuck."""
    last, since = left(), time.monotonic()
    while (now := left()) > 0:
        if now < last:
            last, since = now, time.monotonic()
        assert time.monotonic() - since < stall_s, f"{now} {what} left, none done in {stall_s} s"
        await asyncio.sleep(0.05)


@pytest.mark.slow
@pytest.mark.timeout(900)  # see ``progressing``: a stall fails it within a minute
async def test_300_calls_with_1_mb_caller_ids_keep_memory_and_stored_caller_ids_bounded(
    tmp_path: Path, traces_dir: Path
) -> None:
    trace = recorded(traces_dir, "abandoned_in_queue")
    url = f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}"
    shift = unique_shift()
    async with world(url, tmp_path) as w:
        daemon = await w.start()
        calls = [call_with_big_caller_id(trace, shift + n * 10) for n in range(300)]

        def ended(call_id: str) -> bool:
            ctx = daemon.parts.calls.get(call_id)
            return ctx is not None and ctx.state == "ended"

        gc.collect()
        tracemalloc.start()
        try:
            for n, call in enumerate(calls):
                await w.ami.play(call)
                if n % 50 == 49:
                    batch = [call_id_of(c) for c in calls[n - 49 : n + 1]]
                    await progressing(lambda b=batch: sum(not ended(c) for c in b), "calls")
            recorder = daemon.parts.recorder
            await progressing(lambda: recorder.pending, "records to write")
            assert await recorder.flush(60)
            gc.collect()
            held, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        # Unbounded, the 300 ended calls (kept for their wrap-up grace) held 300+ MB.
        assert held < 40 * MB, f"{held / MB:.1f} MB held after 300 calls"
        assert peak < 80 * MB, f"{peak / MB:.1f} MB at the peak"
        ended_calls = [daemon.parts.calls.get(call_id_of(c)) for c in calls]
        assert all(ctx is not None and ctx.state == "ended" for ctx in ended_calls)
        assert all(len(ctx.caller or "") <= 4096 for ctx in ended_calls if ctx is not None)
        row = await w.store.interaction(call_id_of(calls[-1]))
        assert row is not None and len(row["caller"]) <= 64
        assert row["extra"]["caller_truncated"] is True
        _, text = await w.get("/metrics")
        assert (metric(text, "cti_ami_malformed_total", {"kind": "line_cut"}) or 0) >= 300


async def test_a_call_whose_hangup_never_comes_ends_when_asterisk_no_longer_lists_it(
    tmp_path: Path, traces_dir: Path
) -> None:
    events = renumbered(recorded(traces_dir, "answered_tier1"), unique_shift())
    first_hangup = next(i for i, e in enumerate(events) if "Hangup" in e.get("Event", ""))
    answered, lost = events[:first_hangup], events[first_hangup:]
    assert any(e["Event"] == "BridgeEnter" for e in answered)
    call_id = call_id_of(events)
    url = f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}"
    async with world(url, tmp_path) as w:
        daemon = await w.start(channel_check_s=0.2)
        await w.ami.play(answered)
        calls = daemon.parts.calls
        await wait_until(lambda: (c := calls.get(call_id)) is not None and c.state == "answered")
        await w.ami.play([{"Event": "FullyBooted", "Status": "Fully Booted"}])  # still talking
        assert calls.get(call_id).state == "answered"  # type: ignore[union-attr]

        # Asterisk hangs the call up, but its Hangup events never reach the daemon.
        for name in {e["Channel"] for e in events if e.get("Event") == "Newchannel"}:
            w.ami.state.remove_channel(name)
        assert lost  # (the events that are not sent)
        await wait_until(lambda: calls.get(call_id).state == "ended", within_s=10)  # type: ignore[union-attr]
        ctx = calls.get(call_id)
        assert ctx is not None and ctx.outcome == "answered" and ctx.hangup_by == "system"
        assert not [
            uid
            for uid, chan in daemon.parts.tracker.channels.items()  # type: ignore[attr-defined]
            if chan.linkedid == call_id
        ]
        assert await daemon.parts.recorder.flush(10)
        row = await w.store.interaction(call_id)
        assert row is not None and row["outcome"] == "answered"
        _, text = await w.get("/metrics")
        assert (metric(text, "cti_ami_channels_expired_total") or 0) >= 2
