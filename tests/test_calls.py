"""The live call context: what an agent's pop and the interaction log know about a call.

Events are shaped as the tracker emits them for the Asterisk 22 traces (Local channel pairs,
queue member names); the CRM is an in-memory directory implementing the same protocol as the
store, so the timing of a slow or failing CRM can be controlled.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from crm_core.types import Candidate, CustomerView, InteractionRecord, Resolution
from cti.calls import CallContext, LiveCalls, UnknownCall, context_from_saved, saved_context
from cti.tracker.events import CallEvent

CALL = "1795394704.76"
CALLER_CH = "Local/08005550100@from-pstn-00000026;1"
AGI_CH = "Local/08005550100@from-pstn-00000026;2"
TIERS = {"tier1": "tier1", "tier2": "tier2", "tier3": "tier3"}


def view(customer_id: int, name: str) -> CustomerView:
    return CustomerView(
        customer_id=customer_id,
        external_id=f"CUST-{customer_id:06d}",
        name=name,
        kind="person",
        organisation=None,
        language="en",
        email=None,
        address=None,
        phones=(),
        flags=("vip",),
        highlights=("vip",),
        open_cases=(),
        orders=(),
        products=(),
        interactions=(),
    )


class Directory:
    """A CRM directory with one known caller; ``delay_s``/``fail`` model a slow or down CRM."""

    def __init__(self, delay_s: float = 0.0, fail: bool = False) -> None:
        self.delay_s = delay_s
        self.fail = fail
        self.customers = {"+447700900456": view(456, "Zoë Ward")}

    async def resolve(self, caller_id: str | None) -> Resolution:
        await asyncio.sleep(self.delay_s)
        if self.fail:
            raise ConnectionError("crm down")
        found = self.customers.get(caller_id or "")
        if found is None:
            return Resolution("unknown", caller_id, caller_id or "")
        return Resolution("match", caller_id, caller_id or "", (Candidate(456, None, found.name),))

    async def view(self, customer_id: int) -> CustomerView | None:
        return next((v for v in self.customers.values() if v.customer_id == customer_id), None)


class Decisions:
    def __init__(self, by_uniqueid: dict[str, dict[str, Any]]) -> None:
        self.by_uniqueid = by_uniqueid

    def get(self, uniqueid: str) -> dict[str, Any] | None:
        return self.by_uniqueid.get(uniqueid)


class Recorded:
    def __init__(self) -> None:
        self.records: list[InteractionRecord] = []

    def submit(self, record: InteractionRecord) -> None:
        self.records.append(record)


def ev(name: str, ts: float, **data: Any) -> CallEvent:
    return CallEvent(CALL, name, ts, data)  # type: ignore[arg-type]


OFFERED = ev("offered", 100.0, caller="+447700900456", channel=CALLER_CH, uniqueid=CALL)
QUEUED = ev("queued", 100.6, queue="tier2", position=1, uniqueid="1795394704.77", channel=AGI_CH)
RING_2001 = ev("ringing", 100.7, queue="tier2", member="Agent 2001", interface="Local/2001@agents")
RING_2002 = ev("ringing", 100.7, queue="tier2", member="Agent 2002", interface="Local/2002@agents")
ANSWER_2001 = ev(
    "answered", 102.7, agent="Agent 2001", interface="Local/2001@agents", queue="tier2"
)


def live(**kwargs: Any) -> tuple[LiveCalls, Recorded]:
    recorded = Recorded()
    decisions = Decisions({"1795394704.77": {"queue": "tier2", "tier": "tier2", "reason": "VIP"}})
    options: dict[str, Any] = {
        "directory": Directory(),
        "decisions": decisions,
        "recorder": recorded,
        "tiers_by_queue": TIERS,
    }
    options.update(kwargs)
    return LiveCalls(**options), recorded


async def play(calls: LiveCalls, *events: CallEvent) -> CallContext | None:
    ctx = None
    for event in events:
        ctx = await calls.apply(event)
    return ctx


async def test_a_ringing_call_carries_the_callers_360_view_and_the_agi_routing_decision() -> None:
    calls, _ = live()
    ctx = await play(calls, OFFERED, QUEUED, RING_2001, RING_2002)
    assert ctx is not None and ctx.state == "ringing"
    assert ctx.status == "match" and ctx.customer_id == 456
    assert ctx.view is not None and ctx.view["name"] == "Zoë Ward"
    assert ctx.routing == {"queue": "tier2", "tier": "tier2", "reason": "VIP"}
    assert (ctx.queue, ctx.tier, ctx.queues) == ("tier2", "tier2", ["tier2"])
    assert [r["member"] for r in ctx.ringing_agents] == ["Agent 2001", "Agent 2002"]
    assert calls.for_agent("Agent 2002") == [ctx]
    assert calls.for_agent("Local/2001@agents") == [ctx]
    assert ctx.to_dict()["view"]["customer_id"] == 456


async def test_routing_decision_is_found_by_the_agi_channel_name_when_only_names_are_known() -> (
    None
):
    class ByChannel(Decisions):
        def by_channel(self, channel: str) -> dict[str, Any] | None:
            return {"reason": "by channel"} if channel == AGI_CH else None

    calls, _ = live(decisions=ByChannel({}))
    offered = ev("offered", 100.0, caller="+447700900456", channel=CALLER_CH)
    ctx = await play(calls, offered, ev("queued", 100.6, queue="tier1"))
    assert ctx is not None and ctx.routing == {"reason": "by channel"}


async def test_answering_withdraws_the_other_ringing_phones_and_sets_wait_time() -> None:
    calls, _ = live()
    ctx = await play(calls, OFFERED, QUEUED, RING_2001, RING_2002, ANSWER_2001)
    assert ctx is not None and ctx.state == "answered"
    assert (ctx.agent, ctx.agent_interface, ctx.agents) == (
        "Agent 2001",
        "Local/2001@agents",
        ["Agent 2001"],
    )
    assert ctx.ringing_agents == [] and ctx.wait_s == pytest.approx(2.7)
    assert calls.for_agent("Agent 2002") == []


async def test_a_slow_crm_does_not_hold_the_pop_and_the_view_follows_when_it_arrives() -> None:
    updates: list[CallContext] = []

    async def on_update(ctx: CallContext) -> None:
        updates.append(ctx)

    calls, _ = live(directory=Directory(delay_s=0.5), resolve_timeout_s=0.05, on_update=on_update)
    started = asyncio.get_running_loop().time()
    ctx = await play(calls, OFFERED, QUEUED, RING_2001)
    assert asyncio.get_running_loop().time() - started < 0.3
    assert ctx is not None and ctx.view is None and ctx.state == "ringing"
    await asyncio.sleep(0.6)
    assert updates == [ctx] and ctx.view is not None and ctx.view["name"] == "Zoë Ward"
    await calls.close()


async def test_a_crm_that_is_down_leaves_the_view_empty_and_the_call_flowing() -> None:
    calls, recorded = live(directory=Directory(fail=True))
    ctx = await play(calls, OFFERED, QUEUED, RING_2001, ANSWER_2001, ev("ended", 110.0))
    assert ctx is not None and ctx.view is None and ctx.state == "ended"
    assert [r.outcome for r in recorded.records] == ["answered"]
    await calls.close()


async def test_ended_call_is_recorded_with_queues_tiers_agents_times_and_routing_reason() -> None:
    calls, recorded = live()
    await play(calls, OFFERED, QUEUED, RING_2001, ANSWER_2001)
    await calls.add_note(CALL, "Agent 2001", "wants a refund")
    ended = ev("ended", 105.7, hangup_by="caller", talk_s=3.0, summary={"agents": ["Agent 2001"]})
    await calls.apply(ended)
    (record,) = recorded.records
    assert record.call_id == CALL and record.customer_id == 456
    assert record.caller == "+447700900456"
    assert (record.queues, record.tiers, record.agents) == (("tier2",), ("tier2",), ("Agent 2001",))
    assert record.outcome == "answered" and record.routing_reason == "VIP"
    assert record.wait_s == pytest.approx(2.7) and record.talk_s == 3.0
    assert record.notes == "Agent 2001: wants a refund"
    assert record.started_at is not None and record.started_at.timestamp() == 100.0
    assert record.extra["hangup_by"] == "caller"
    await calls.close()


async def test_notes_and_disposition_after_the_end_update_the_record_until_released() -> None:
    calls, recorded = live(grace_s=0.1)
    await play(calls, OFFERED, QUEUED, RING_2001, ANSWER_2001, ev("ended", 105.7))
    await calls.add_note(CALL, "Agent 2001", "call back tomorrow")
    await calls.set_disposition(CALL, "resolved", "Agent 2001")
    assert [r.call_id for r in recorded.records] == [CALL, CALL, CALL]
    assert recorded.records[-1].disposition == "resolved"
    assert recorded.records[-1].notes == "Agent 2001: call back tomorrow"
    assert calls.get(CALL) is not None and calls.active() == []
    await asyncio.sleep(0.2)
    assert calls.get(CALL) is None
    with pytest.raises(UnknownCall):
        await calls.set_disposition(CALL, "resolved", "Agent 2001")
    await calls.close()


async def test_a_caller_who_gives_up_in_the_queue_is_recorded_as_abandoned() -> None:
    calls, recorded = live()
    await play(
        calls,
        OFFERED,
        ev("queued", 100.6, queue="tier1"),
        ev("abandoned", 105.1, queue="tier1", wait_s=4.5),
        ev("ended", 105.1, hangup_by="caller", summary={"abandoned": True, "agents": []}),
    )
    (record,) = recorded.records
    assert record.outcome == "abandoned" and record.agents == () and record.answered_at is None


async def test_an_escalation_and_a_blind_transfer_carry_reason_notes_and_previous_agent() -> None:
    calls, recorded = live()
    await play(calls, OFFERED, ev("queued", 100.6, queue="tier1"))
    await play(calls, ev("ringing", 101.0, queue="tier1", member="Agent 1001"))
    await play(calls, ev("answered", 102.0, agent="Agent 1001", queue="tier1"))
    ctx = calls.mark_escalation(CALL, "Agent 1001", "tier2", "billing dispute", "charged twice")
    transferred = ev("transferred", 110.0, kind="blind", from_agent="Agent 1001", to="8002")
    await play(calls, transferred, ev("queued", 110.2, queue="tier2"))
    ctx2 = await play(calls, ev("ringing", 111.0, queue="tier2", member="Agent 2001"))
    assert ctx2 is ctx and ctx.state == "ringing" and ctx.agent is None
    assert ctx.previous_agents == ["Agent 1001"]
    assert ctx.escalations[-1]["reason"] == "billing dispute"
    assert ctx.notes[-1]["text"] == "charged twice"
    assert ctx.transfers[0]["kind"] == "blind" and ctx.transfers[0]["from"] == "Agent 1001"
    assert (ctx.queues, ctx.tiers) == (["tier1", "tier2"], ["tier1", "tier2"])
    await play(calls, ev("answered", 112.0, agent="Agent 2001", queue="tier2"), ev("ended", 120))
    (record,) = recorded.records
    assert record.agents == ("Agent 1001", "Agent 2001") and record.wait_s == pytest.approx(2.0)
    assert record.extra["escalations"][0]["note"] == "charged twice"


async def test_a_call_first_seen_mid_way_is_adopted_and_recorded_when_it_ends() -> None:
    calls, recorded = live()
    answered = ev("answered", 102.0, agent="Agent 1001", queue="tier1", caller="+447700900456")
    ctx = await play(calls, answered)
    assert ctx is not None and ctx.state == "answered" and ctx.view is not None
    await calls.apply(ev("ended", 120.0, hangup_by="agent"))
    assert [(r.call_id, r.outcome, r.customer_id) for r in recorded.records] == [
        (CALL, "answered", 456)
    ]


async def test_agent_state_events_are_not_calls() -> None:
    calls, _ = live()
    assert await calls.apply(CallEvent("", "agent_state", 1.0, {"member": "Agent 1001"})) is None
    assert calls.active() == []


def test_the_saved_state_of_a_call_is_a_copy_without_the_view_or_the_candidates() -> None:
    ctx = CallContext(
        call_id="1.1",
        caller="+442079460000",
        view={"customer": {"name": "Grace"}, "cases": [{"id": 1}]},
        candidates=[{"customer_id": 1}],
        routing={"queue": "tier1", "reason": "vip"},
        notes=[{"author": "ann", "text": "called about order 7", "at": 1.0}],
        queue_legs=[{"queue": "tier1", "tier": "tier1", "wait_s": 4.2, "result": "answered"}],
    )
    saved = saved_context(ctx)
    expected = dataclasses.asdict(ctx)
    del expected["view"], expected["candidates"]
    assert saved == expected
    ctx.notes.append({"author": "ann", "text": "later", "at": 2.0})
    ctx.routing["reason"] = "changed"  # type: ignore[index]
    assert len(saved["notes"]) == 1 and saved["routing"]["reason"] == "vip"
    restored = context_from_saved("1.1", saved)
    assert restored.notes == [{"author": "ann", "text": "called about order 7", "at": 1.0}]
    assert restored.view is None and restored.restored
