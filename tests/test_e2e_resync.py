"""End to end over real sockets: the AMI link drops, or the daemon restarts, in the middle of a
call. Nothing is lost, nothing is left hanging, and the call is recorded exactly once."""

from __future__ import annotations

from pathlib import Path

from test_e2e_calls import (
    SUPERVISOR,
    Harness,
    call_id_of,
    harness,
    trace,
    wait_until,
)

from cti.tracker.tracker import CallTracker

__all__ = ["harness"]  # the fixture, shared with test_e2e_calls


def answered_half(traces_dir: Path) -> tuple[str, list[dict[str, str]], list[dict[str, str]]]:
    """answered_tier1 cut right after the agent is bridged with the caller."""
    events = trace(traces_dir, "answered_tier1")
    tracker = CallTracker()  # where the tracker reports the answer, offline
    cut = 1 + next(
        i for i, e in enumerate(events) if any(c.event == "answered" for c in tracker.feed(e))
    )
    return call_id_of(events), events[:cut], events[cut:]


async def test_a_dropped_ami_link_mid_call_resyncs_and_the_call_completes_once(
    harness: Harness, traces_dir: Path
) -> None:
    daemon = await harness.start_daemon()
    sup, agent = await harness.desktops_for(SUPERVISOR, "Agent 1001")
    call_id, first, rest = answered_half(traces_dir)
    await harness.ami.play(first)
    await agent.wait_for("answered", call_id)

    await harness.ami.drop_connections()
    await wait_until(lambda: daemon.resyncs >= 2)
    ctx = daemon.parts.calls.get(call_id)
    assert ctx is not None and ctx.state == "answered" and ctx.agent == "Agent 1001"

    await harness.ami.play(rest)
    await sup.wait_for("ended", call_id)
    assert agent.about(call_id).count("ended") == 1
    row = await harness.interaction(call_id)
    assert row is not None and row["agents"] == ["Agent 1001"] and row["outcome"] == "answered"
    assert await harness.interaction_rows(call_id) == 1
    assert daemon.parts.calls.active() == []


async def test_a_call_that_ended_while_the_link_was_down_is_closed_by_the_resync(
    harness: Harness, traces_dir: Path
) -> None:
    daemon = await harness.start_daemon()
    _sup, agent = await harness.desktops_for(SUPERVISOR, "Agent 1001")
    call_id, first, rest = answered_half(traces_dir)
    await harness.ami.play(first)
    await agent.wait_for("answered", call_id)

    await harness.ami.refuse_connections(0.3)
    await harness.ami.drop_connections()
    for event in rest:  # the call goes on and ends on the PBX while nobody listens
        harness.ami.state.apply_event(event)
    await wait_until(lambda: daemon.resyncs >= 2)

    await agent.wait_for("ended", call_id)
    assert daemon.parts.calls.active() == []
    row = await harness.interaction(call_id)
    assert row is not None and row["agents"] == ["Agent 1001"]
    assert await harness.interaction_rows(call_id) == 1


async def test_a_daemon_restarted_mid_call_records_the_call_once_when_it_ends(
    harness: Harness, traces_dir: Path
) -> None:
    await harness.start_daemon()
    call_id, first, rest = answered_half(traces_dir)
    await harness.ami.play(first)
    await wait_until(
        lambda: (
            harness.daemon is not None
            and (ctx := harness.daemon.parts.calls.get(call_id)) is not None
            and ctx.state == "answered"
        )
    )
    await harness.stop_daemon()
    assert await harness.store.interaction(call_id) is None  # not ended: nothing written yet

    daemon = await harness.start_daemon()  # a new process would do the same: resync adopts
    (sup,) = await harness.desktops_for(SUPERVISOR)
    assert daemon.parts.calls.get(call_id) is not None
    await harness.ami.play(rest)
    await sup.wait_for("ended", call_id)
    row = await harness.interaction(call_id)
    assert row is not None and row["outcome"] == "answered"
    assert "Agent 1001" in row["agents"]
    assert await harness.interaction_rows(call_id) == 1
