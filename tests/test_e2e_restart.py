"""End to end over real sockets, on SQLite and PostgreSQL: the daemon is stopped (SIGTERM path)
or killed mid-call, or Asterisk dies under it; the call is recorded exactly once, with the
figures it really had (wait, talk, queue, agent, routing reason) and its end marked estimated
where nobody saw it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from fakes.ami_server import FakeAmiServer
from test_e2e_calls import KNOWN_CALLER, Harness, call_id_of, daemon_config, trace, wait_until

from crm_core.testing import empty_store
from cti.routing.router import RouteDecision
from cti.tracker.tracker import CallTracker

REASON = "open case: billing"


@pytest.fixture
async def world(db_url: str) -> AsyncIterator[Harness]:
    store = await empty_store(db_url)
    await store.upsert_customer(
        name="Grace Hopper", external_id="CUST-000123", phones=[KNOWN_CALLER]
    )
    ami = FakeAmiServer()
    await ami.start()
    session = aiohttp.ClientSession()
    config = daemon_config(db_url, ami.port)
    config = config.model_copy(update={"ami": config.ami.model_copy(update={"heartbeat_s": 0.1})})
    h = Harness(ami=ami, store=store, config=config, session=session)
    try:
        yield h
    finally:
        await h.stop_daemon()
        await session.close()
        await ami.stop()
        await store.close()


def truth(events: list[dict[str, str]]) -> dict[str, Any]:
    """What a tracker that saw the whole call reports when it ends."""
    tracker = CallTracker()
    for event in events:
        for out in tracker.feed(event):
            if out.event == "ended":
                return {"ts": out.ts, **out.data}
    raise AssertionError("the trace does not end its call")


def split_answered(events: list[dict[str, str]]) -> int:
    tracker = CallTracker()
    return 1 + next(
        i for i, e in enumerate(events) if any(c.event == "answered" for c in tracker.feed(e))
    )


async def route(h: Harness, events: list[dict[str, str]]) -> None:
    """The FastAGI decision for the call, as the daemon's router would have logged it."""
    assert h.daemon is not None
    agi = next(e for e in events if e.get("Event") == "Newchannel" and e["Channel"].endswith(";2"))
    decision = RouteDecision("tier1", 0, "tier1", None, REASON, "open-case")
    h.daemon.parts.decisions.record(agi["Uniqueid"], agi["Channel"], decision, datetime.now(UTC))


async def answered_then_down(h: Harness, traces_dir: Path) -> tuple[str, list[dict[str, str]]]:
    events = trace(traces_dir, "answered_tier1")
    call_id, cut = call_id_of(events), split_answered(events)
    await h.start_daemon()
    await route(h, events)
    await h.ami.play(events[:cut])
    assert h.daemon is not None
    calls = h.daemon.parts.calls
    await wait_until(lambda: (c := calls.get(call_id)) is not None and c.state == "answered")
    await calls.lookup_settled(call_id)
    return call_id, events[cut:]


async def kill(h: Harness) -> None:
    """The process dies: its tasks stop where they are, nothing is written on the way out."""
    daemon = h.daemon
    assert daemon is not None
    p = daemon.parts
    tasks = [daemon._pump, getattr(p.call_state, "_task", None), getattr(p.ami, "_task", None)]
    for task in tasks:
        if task is not None:
            task.cancel()
    await asyncio.gather(*(t for t in tasks if t is not None), return_exceptions=True)
    if p.ami is not None and getattr(p.ami, "_protocol", None) is not None:
        p.ami._protocol.abort("killed")  # type: ignore[attr-defined]
    # What the OS would free: the listening sockets (not part of what is checked here).
    for desk in h.desktops.values():
        await desk.close()
    h.desktops.clear()
    with contextlib.suppress(Exception):
        await p.agi.stop()
    if daemon._runner is not None:
        await daemon._runner.cleanup()
    await p.recorder.stop(0.1)
    h.daemon = None


def seconds(value: Any) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


async def test_a_daemon_restarted_mid_call_records_the_real_wait_talk_and_routing_reason(
    world: Harness, traces_dir: Path
) -> None:
    call_id, rest = await answered_then_down(world, traces_dir)
    expected = truth(trace(traces_dir, "answered_tier1"))
    assert world.daemon is not None
    calls = world.daemon.parts.calls
    calls.mark_escalation(call_id, "Agent 1001", "tier2", "billing dispute", "wants a refund")
    await world.stop_daemon()  # SIGTERM: Daemon.stop()

    daemon = await world.start_daemon()
    ctx = daemon.parts.calls.get(call_id)
    assert ctx is not None and ctx.state == "answered" and ctx.agent == "Agent 1001"
    await world.ami.play(rest)
    await wait_until(
        lambda: (c := daemon.parts.calls.get(call_id)) is not None and c.state == "ended"
    )
    row = await world.interaction(call_id)
    assert row is not None and await world.interaction_rows(call_id) == 1
    assert row["outcome"] == "answered" and row["agents"] == ["Agent 1001"]
    assert row["queues"] == ["tier1"] and row["routing_reason"] == REASON
    assert row["wait_s"] == pytest.approx(expected["summary"]["wait_s"], abs=0.01)
    assert row["talk_s"] == pytest.approx(expected["talk_s"], abs=0.01)
    assert seconds(row["ended_at"]) == pytest.approx(expected["ts"], abs=0.01)
    assert "ended_at" not in row["extra"].get("estimated", [])
    assert row["customer_id"] is not None
    # The escalation and its note, made before the restart, are not lost with it.
    assert row["extra"]["escalations"][0]["reason"] == "billing dispute"
    assert "wants a refund" in row["notes"]


@pytest.mark.parametrize("how", ["stopped", "killed"])
async def test_a_call_that_ends_while_the_daemon_is_down_is_recorded_once_with_its_figures(
    world: Harness, traces_dir: Path, how: str
) -> None:
    call_id, rest = await answered_then_down(world, traces_dir)
    assert world.daemon is not None
    answered_at = world.daemon.parts.calls.get(call_id).answered_at  # type: ignore[union-attr]
    wait_s = world.daemon.parts.calls.get(call_id).wait_s  # type: ignore[union-attr]
    await asyncio.sleep(0.6)  # the call goes on a while, seen by the daemon
    if how == "stopped":
        await world.stop_daemon()
    else:
        await kill(world)
    for event in rest:  # it ends on the PBX while no daemon runs
        world.ami.state.apply_event(event)

    daemon = await world.start_daemon()
    await wait_until(
        lambda: (
            daemon.parts.calls.get(call_id) is None
            or daemon.parts.calls.get(call_id).state == "ended"
        )
    )  # type: ignore[union-attr]
    row = await world.interaction(call_id)
    assert row is not None and await world.interaction_rows(call_id) == 1
    assert row["outcome"] == "answered" and row["agents"] == ["Agent 1001"]
    assert row["queues"] == ["tier1"] and row["routing_reason"] == REASON
    assert row["wait_s"] == pytest.approx(wait_s, abs=0.01)
    assert "ended_at" in row["extra"]["estimated"]
    assert row["ended_at"] >= row["started_at"]
    # Up at least until it was last seen: the stop, or the last heartbeat before the kill.
    assert row["talk_s"] >= 0.4
    assert seconds(row["ended_at"]) - answered_at < 5.0
    assert daemon.parts.calls.active() == []


async def test_asterisk_killed_mid_call_ends_the_call_when_the_link_was_lost(
    world: Harness, traces_dir: Path
) -> None:
    call_id, _rest = await answered_then_down(world, traces_dir)
    daemon = world.daemon
    assert daemon is not None
    await asyncio.sleep(1.5)  # the call goes on, without events
    for name in list(world.ami.state.channels):  # SIGKILL: the channels die with Asterisk
        world.ami.state.remove_channel(name)
    await world.ami.refuse_connections(0.3)
    await world.ami.drop_connections()
    await wait_until(lambda: daemon.resyncs >= 2)
    await wait_until(lambda: daemon.parts.calls.get(call_id).state == "ended")  # type: ignore[union-attr]
    row = await world.interaction(call_id)
    assert row is not None and await world.interaction_rows(call_id) == 1
    assert row["talk_s"] >= 1.4  # not 0: it lasted until the link dropped
    assert "ended_at" in row["extra"]["estimated"]
    assert row["outcome"] == "answered"


async def test_a_call_older_than_the_daemon_gets_its_routing_back_from_the_callers_channel(
    world: Harness, traces_dir: Path
) -> None:
    events = trace(traces_dir, "agi_routed_vip_tier2")
    call_id = call_id_of(events)
    cut = next(i for i, e in enumerate(events) if e.get("Event") == "AgentConnect") + 1
    # What this daemon's router sets besides the lab's AGI (README: CTI_TIER, CTI_REASON), in
    # the shape of the recorded VarSet of CTI_QUEUE.
    varset = next(e for e in events if e.get("Variable") == "CTI_QUEUE")
    extra = [
        {**varset, "Variable": "CTI_REASON", "Value": "VIP customer"},
        {**varset, "Variable": "CTI_TIER", "Value": "tier2"},
    ]
    at = events.index(varset) + 1
    for event in [*events[:at], *extra, *events[at:cut]]:  # before the daemon was there
        world.ami.state.apply_event(event)

    daemon = await world.start_daemon()  # nothing saved: it only has what Asterisk says
    ctx = daemon.parts.calls.get(call_id)
    assert ctx is not None and ctx.routing is not None
    assert ctx.routing["queue"] == "tier2" and ctx.routing["reason"] == "VIP customer"
    assert ctx.routing["priority"] == 10
    await world.ami.play(events[cut:])
    await wait_until(lambda: daemon.parts.calls.get(call_id).state == "ended")  # type: ignore[union-attr]
    row = await world.interaction(call_id)
    assert row is not None and row["routing_reason"] == "VIP customer"
    assert "started_at" in row["extra"]["estimated"]  # from Asterisk's Duration, not seen


async def test_a_waiting_call_gone_while_the_daemon_was_down_says_its_outcome_is_unknown(
    world: Harness, traces_dir: Path
) -> None:
    events = trace(traces_dir, "answered_tier1")
    call_id = call_id_of(events)
    cut = next(i for i, e in enumerate(events) if e.get("Event") == "AgentCalled")
    await world.start_daemon()
    await world.ami.play(events[:cut])  # waiting in tier1
    assert world.daemon is not None
    calls = world.daemon.parts.calls
    await wait_until(lambda: (c := calls.get(call_id)) is not None and c.state == "queued")
    await world.stop_daemon()
    for event in events[cut:]:  # answered and over while nobody watched
        world.ami.state.apply_event(event)

    await world.start_daemon()
    row = await world.interaction(call_id)
    assert row is not None and await world.interaction_rows(call_id) == 1
    assert row["outcome"] == "unknown"  # not "abandoned", not "unanswered": nobody knows
    assert row["queues"] == ["tier1"]
    assert {"outcome", "agents"} <= set(row["extra"]["not_known"])
    seen_until, found_again = row["extra"]["unseen"]
    assert seen_until is not None and found_again is None


@pytest.mark.parametrize("how", ["stopped", "killed"])
async def test_a_call_answered_while_the_daemon_is_down_marks_its_answer_estimated(
    world: Harness, traces_dir: Path, how: str
) -> None:
    """The saved state knew the call ringing, not its answer: the resync's estimate of the
    answer (no earlier than the agent's leg began) is recorded as an estimate, not as seen."""
    events = trace(traces_dir, "answered_tier1")
    call_id = call_id_of(events)
    tracker = CallTracker()
    rung = 1 + next(
        i for i, e in enumerate(events) if any(c.event == "ringing" for c in tracker.feed(e))
    )
    answered = split_answered(events)
    await world.start_daemon()
    await route(world, events)
    await world.ami.play(events[:rung])
    assert world.daemon is not None
    calls = world.daemon.parts.calls
    await wait_until(lambda: (c := calls.get(call_id)) is not None and c.state == "ringing")
    await asyncio.sleep(0.3)  # the ringing call's state saved
    if how == "stopped":
        await world.stop_daemon()
    else:
        await kill(world)
    for event in events[rung:answered]:  # answered on the PBX while no daemon runs
        world.ami.state.apply_event(event)

    daemon = await world.start_daemon()
    await wait_until(
        lambda: (c := daemon.parts.calls.get(call_id)) is not None and c.state == "answered"
    )
    await world.ami.play(events[answered:])
    await wait_until(
        lambda: (c := daemon.parts.calls.get(call_id)) is not None and c.state == "ended"
    )
    row = await world.interaction(call_id)
    assert row is not None and await world.interaction_rows(call_id) == 1
    assert row["outcome"] == "answered" and row["agents"] == ["Agent 1001"]
    assert row["extra"]["restored"] is True
    assert "answered_at" in row["extra"]["estimated"]
    assert "started_at" not in row["extra"]["estimated"]  # the saved state knew it
