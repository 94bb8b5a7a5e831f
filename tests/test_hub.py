"""The pop hub: which desktop hears about which call event, and what it carries."""

from __future__ import annotations

import json
from typing import Any

from cti.calls import LiveCalls
from cti.config import AgentConfig
from cti.hub import HubMessage, PopHub, Subscription
from cti.tracker.events import CallEvent

A1 = AgentConfig(name="Agent 1001", member="Agent 1001", interface="Local/1001@agents")
A2 = AgentConfig(name="Agent 1002", member="Agent 1002", interface="Local/1002@agents")
T2 = AgentConfig(name="Agent 2001", member="Agent 2001", interface="Local/2001@agents")
SUP = AgentConfig(name="Supervisor", role="supervisor")
AGENTS = [A1, A2, T2, SUP]
CALL = "1795396309.100"


def drain(sub: Subscription) -> list[dict[str, Any]]:
    out = []
    while sub.pending():
        message = sub._items.popleft()
        out.append(json.loads(message.text))
    return out


class Feed:
    """Call events through the real live call context into the hub, as the daemon does."""

    def __init__(self, hub: PopHub) -> None:
        self.hub = hub
        self.calls = LiveCalls(tiers_by_queue={"tier1": "tier1", "tier2": "tier2"})
        self.t = 1000.0

    async def __call__(self, event: str, call: str = CALL, **data: Any) -> None:
        self.t += 1.0
        ev = CallEvent(call, event, self.t, data)  # type: ignore[arg-type]
        ctx = await self.calls.apply(ev)
        self.hub.publish(ev, ctx)


def ring(member: str, queue: str = "tier1") -> dict[str, Any]:
    ext = member.split()[-1]
    return {"queue": queue, "member": member, "interface": f"Local/{ext}@agents"}


async def test_pop_reaches_only_the_rung_agent_and_supervisors() -> None:
    hub = PopHub(AGENTS)
    a1, a2, sup = hub.subscribe(A1), hub.subscribe(A2), hub.subscribe(SUP)
    feed = Feed(hub)
    await feed("offered", caller="+442071234567", channel="Local/x;2", uniqueid=CALL)
    await feed("queued", queue="tier1", position=1)
    await feed("ringing", **ring("Agent 1001"))

    pops = drain(a1)
    assert [m["type"] for m in pops] == ["pop"]
    assert pops[0]["call"]["caller"] == "+442071234567"
    assert pops[0]["queue"] == "tier1"
    assert pops[0]["wait_s"] == 2.0
    assert drain(a2) == []
    assert "pop" in [m["type"] for m in drain(sup)]


async def test_agent_is_matched_by_interface_when_member_name_differs() -> None:
    hub = PopHub(AGENTS)
    a1 = hub.subscribe(A1)
    feed = Feed(hub)
    await feed("offered", caller="+442071234567")
    await feed("ringing", queue="tier1", member="SomeOtherName", interface="Local/1001@agents")
    assert [m["type"] for m in drain(a1)] == ["pop"]


async def test_ringall_pop_is_withdrawn_from_the_others_when_one_answers() -> None:
    hub = PopHub(AGENTS)
    a1, a2 = hub.subscribe(A1), hub.subscribe(A2)
    feed = Feed(hub)
    await feed("offered", caller="+442071234567")
    await feed("ringing", **ring("Agent 1001"))
    await feed("ringing", **ring("Agent 1002"))
    await feed("answered", agent="Agent 1002", interface="Local/1002@agents", queue="tier1")

    first = drain(a1)
    assert [m["type"] for m in first] == ["pop", "withdrawn"]
    assert first[1]["reason"] == "answered_elsewhere"
    assert first[1]["answered_by"] == "Agent 1002"
    assert [m["type"] for m in drain(a2)] == ["pop", "answered"]


async def test_pops_are_withdrawn_when_the_caller_abandons() -> None:
    hub = PopHub(AGENTS)
    a1, a2 = hub.subscribe(A1), hub.subscribe(A2)
    feed = Feed(hub)
    await feed("offered", caller="+442071234567")
    await feed("ringing", **ring("Agent 1001"))
    await feed("ringing", **ring("Agent 1002"))
    await feed("abandoned", queue="tier1", wait_s=4.5)
    for sub in (a1, a2):
        messages = drain(sub)
        assert [m["type"] for m in messages] == ["pop", "withdrawn"]
        assert messages[1]["reason"] == "abandoned"
    assert hub.active_messages("Agent 1001") == []


async def test_ring_no_answer_withdraws_and_the_next_agent_gets_the_pop() -> None:
    hub = PopHub(AGENTS)
    a1, a2 = hub.subscribe(A1), hub.subscribe(A2)
    feed = Feed(hub)
    await feed("offered", caller="+442071234567")
    await feed("ringing", **ring("Agent 1001"))
    await feed("ring_stopped", member="Agent 1001", interface="Local/1001@agents", reason="rna")
    await feed("ringing", **ring("Agent 1002"))
    assert [m["type"] for m in drain(a1)] == ["pop", "withdrawn"]
    assert [m["type"] for m in drain(a2)] == ["pop"]


async def test_a_reconnecting_desktop_gets_its_active_call_again_with_the_same_ids() -> None:
    hub = PopHub(AGENTS)
    first = hub.subscribe(A1)
    feed = Feed(hub)
    await feed("offered", caller="+442071234567")
    await feed("ringing", **ring("Agent 1001"))
    await feed("answered", agent="Agent 1001", interface="Local/1001@agents", queue="tier1")
    seen = drain(first)
    hub.unsubscribe(first)

    again = drain(hub.subscribe(A1))
    assert [m["id"] for m in again] == [m["id"] for m in seen]
    assert [m["type"] for m in again] == ["pop", "answered"]

    await feed("ended", hangup_by="caller", talk_s=30)
    assert drain(hub.subscribe(A1)) == []


async def test_every_message_has_a_unique_id() -> None:
    hub = PopHub(AGENTS)
    sup = hub.subscribe(SUP)
    feed = Feed(hub)
    for n in range(5):
        call = f"c{n}"
        await feed("offered", call=call, caller="+442071234567")
        await feed("ringing", call=call, **ring("Agent 1001"))
        await feed("answered", call=call, agent="Agent 1001", interface="Local/1001@agents")
        await feed("ended", call=call, hangup_by="caller")
    ids = [m["id"] for m in drain(sup)]
    assert len(ids) == len(set(ids)) >= 20


async def test_transfer_tells_the_old_agent_and_the_next_pop_carries_the_context() -> None:
    hub = PopHub(AGENTS)
    a1, t2 = hub.subscribe(A1), hub.subscribe(T2)
    feed = Feed(hub)
    await feed("offered", caller="+442071234567")
    await feed("ringing", **ring("Agent 1001"))
    await feed("answered", agent="Agent 1001", interface="Local/1001@agents", queue="tier1")
    await feed.calls.add_note(CALL, "Agent 1001", "router reboots every hour")
    await feed("transferred", kind="blind", from_agent="Agent 1001", to="8002", to_queue="tier2")
    await feed("ringing", **ring("Agent 2001", "tier2"))

    old = drain(a1)
    assert [m["type"] for m in old] == ["pop", "answered", "transferred"]
    assert old[-1]["to_queue"] == "tier2"
    pop = drain(t2)[0]
    assert pop["type"] == "pop"
    assert pop["previous_agent"] == "Agent 1001"
    assert pop["notes"][0]["text"] == "router reboots every hour"
    assert pop["tier"] == "tier2"


async def test_escalation_reason_and_note_show_on_the_next_agents_pop() -> None:
    hub = PopHub(AGENTS)
    t2 = hub.subscribe(T2)
    feed = Feed(hub)
    await feed("offered", caller="+442071234567")
    await feed("ringing", **ring("Agent 1001"))
    await feed("answered", agent="Agent 1001", interface="Local/1001@agents", queue="tier1")
    feed.calls.mark_escalation(CALL, "Agent 1001", "tier2", "line fault", "tested the line")
    await feed("transferred", kind="blind", from_agent="Agent 1001", to_queue="tier2")
    await feed("ringing", **ring("Agent 2001", "tier2"))
    pop = drain(t2)[0]
    assert pop["reason"] == "line fault"
    assert pop["escalation"]["note"] == "tested the line"
    assert pop["previous_agent"] == "Agent 1001"


async def test_a_desktop_that_cannot_keep_up_is_dropped_without_blocking_others() -> None:
    hub = PopHub(AGENTS, queue_limit=3)
    slow, fast = hub.subscribe(SUP), hub.subscribe(A1)
    feed = Feed(hub)
    for n in range(4):
        await feed("offered", call=f"c{n}", caller="+442071234567")
        await feed("ringing", call=f"c{n}", **ring("Agent 1001"))
        drain(fast)
    assert slow.overflowed
    assert await slow.next() is None
    assert hub.stats.dropped_clients == 1
    assert hub.connected() == 1
    await feed("offered", call="c9", caller="+442071234567")
    await feed("ringing", call="c9", **ring("Agent 1001"))
    message = await fast.next()
    assert isinstance(message, HubMessage) and message.type == "pop"


async def test_agent_state_reaches_that_agent_only() -> None:
    hub = PopHub(AGENTS)
    a1, a2 = hub.subscribe(A1), hub.subscribe(A2)
    hub.publish(
        CallEvent(
            "",
            "agent_state",
            1.0,
            {"member": "Agent 1001", "interface": "Local/1001@agents", "paused": True},
        ),
        None,
    )
    assert [m["type"] for m in drain(a1)] == ["agent_state"]
    assert drain(a2) == []


async def test_answered_carries_the_context_only_when_the_agent_had_no_pop() -> None:
    hub = PopHub(AGENTS)
    a1, a2 = hub.subscribe(A1), hub.subscribe(A2)
    feed = Feed(hub)
    await feed("offered", call="rung", caller="+442071234567")
    await feed("ringing", call="rung", **ring("Agent 1001"))
    await feed("answered", call="rung", agent="Agent 1001", interface="Local/1001@agents")
    pop, answered = drain(a1)
    assert "call" in pop and "call" not in answered
    await feed("offered", call="direct", caller="+442071234567")
    await feed("answered", call="direct", agent="Agent 1002", interface="Local/1002@agents")
    [direct] = drain(a2)
    assert direct["type"] == "answered" and direct["call"]["caller"] == "+442071234567"


async def test_a_queue_member_interface_with_the_local_n_option_matches_the_agent() -> None:
    hub = PopHub(AGENTS)
    a1 = hub.subscribe(A1)
    feed = Feed(hub)
    await feed("offered", caller="+442071234567")
    await feed("ringing", queue="tier1", member="", interface="LOCAL/1001@agents/n")
    assert [m["type"] for m in drain(a1)] == ["pop"]


async def test_a_late_crm_answer_updates_the_pop_of_the_rung_agent() -> None:
    hub = PopHub(AGENTS)
    a1, a2 = hub.subscribe(A1), hub.subscribe(A2)
    feed = Feed(hub)
    await feed("offered", caller="+442071234567")
    await feed("ringing", **ring("Agent 1001"))
    ctx = feed.calls.get(CALL)
    assert ctx is not None
    ctx.view = {"name": "Ada Lovelace"}  # what LiveCalls sets when the CRM answers late
    await hub.update(ctx)
    pop, update = drain(a1)
    assert pop["call"]["view"] is None
    assert update["type"] == "update" and update["call"]["view"]["name"] == "Ada Lovelace"
    assert drain(a2) == []
    assert [m.type for m in hub.active_messages("Agent 1001")] == ["pop", "update"]


def sent(sub: Subscription) -> list[dict[str, Any]]:
    """What the desktop's sender would send now (superseded keyed messages skipped)."""
    out = []
    while (message := sub.take_nowait()) is not None:
        out.append(json.loads(message.text))
    return out


def test_a_callback_task_reaches_its_queues_desktops_in_its_latest_state() -> None:
    hub = PopHub(AGENTS, clock=lambda: 1060.0)
    a1, a2, t2, sup = (hub.subscribe(a) for a in (A1, A2, T2, SUP))
    task = {"task_id": 7, "queue": "tier1", "status": "open", "last_abandoned_at": 1000.0}
    hub.publish_callback(task, ["Agent 1001", "Agent 1002"])
    hub.publish_callback({**task, "status": "closed"}, ["Agent 1001", "Agent 1002"])

    for desk in (a1, a2):
        [latest] = sent(desk)  # the open state, superseded before it was sent
        assert latest["type"] == "callback" and latest["call_id"] is None
        assert latest["task"] == {**task, "status": "closed", "since_s": 60.0}
    assert sent(t2) == []  # a tier2 agent does not call back tier1's callers
    assert [m["task"]["status"] for m in sent(sup)] == ["closed"]


def test_a_callback_task_of_a_queue_without_desktop_users_still_reaches_supervisors() -> None:
    hub = PopHub(AGENTS)
    a1, sup = hub.subscribe(A1), hub.subscribe(SUP)
    assert hub.publish_callback({"task_id": 8, "queue": "sales", "status": "open"}, []) == 1
    assert sent(a1) == []
    [message] = sent(sup)
    assert message["agent"] is None and message["task"]["task_id"] == 8
