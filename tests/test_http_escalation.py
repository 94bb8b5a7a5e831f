"""Escalation against the fake Asterisk: the next tier's pop carries the reason and the note even
when Asterisk rings that agent before it answers the escalation's action; a refused action
leaves nothing recorded."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from http_world import ami_world, call_actions, headers

from cti.hub import Subscription

SUP, A1 = "Supervisor", "Agent 1001"
CALLER_CHANNEL = "Local/08005550100@from-pstn-c1;2"
ESCALATION = {"tier": "tier2", "reason": "line fault", "note": "tested the line"}


async def next_message(sub: Subscription) -> dict[str, Any]:
    async with asyncio.timeout(5):
        message = await sub.next()
    assert message is not None
    data: dict[str, Any] = json.loads(message.text)
    return data


async def test_the_next_agents_pop_carries_reason_and_note_when_the_ring_beats_the_response() -> (
    None
):
    # Asterisk answers the Redirect only after 1 s; the tier 2 phone rings in between.
    async with ami_world(delays={"redirect": 1.0}) as (world, pbx):
        await world.queued_call("c1")
        await world.ring("c1", "1001")
        pbx.state.add_channel(CALLER_CHANNEL)
        tier2 = world.hub.subscribe(next(a for a in world.config.agents if a.name == "Agent 2001"))

        escalating = asyncio.create_task(
            world.client.post("/api/calls/c1/escalate", json=ESCALATION, headers=headers(SUP))
        )
        await pbx.wait_for_action("Redirect")
        assert not escalating.done()  # Asterisk has not answered yet
        await world.ring("c1", "2001", queue="tier2")
        pop = await next_message(tier2)

        assert pop["type"] == "pop"
        assert pop["reason"] == "line fault"
        assert pop["escalation"]["note"] == "tested the line"
        resp = await escalating
        assert resp.status == 200, await resp.text()
        ctx = world.calls.get("c1")
        assert ctx is not None and len(ctx.escalations) == 1


async def test_an_escalation_asterisk_refuses_leaves_nothing_recorded() -> None:
    async with ami_world() as (world, pbx):
        await world.queued_call("c1")
        await world.ring("c1", "1001")
        await world.answer("c1", "1001")
        # Both channels exist but are not bridged: the Setvars pass, the BlindTransfer fails.
        pbx.state.add_channel(CALLER_CHANNEL)
        pbx.state.add_channel("Local/1001@agents-c1;1")
        resp = await world.client.post(
            "/api/calls/c1/escalate", json=ESCALATION, headers=headers(A1)
        )
        assert resp.status == 502, await resp.text()
        assert "Transfer invalid" in (await resp.json())["error"]
        assert call_actions(pbx) == ["Setvar", "Setvar", "BlindTransfer"]
        ctx = world.calls.get("c1")
        assert ctx is not None
        assert ctx.escalations == [] and ctx.notes == []

        # Refused at the very first action (the caller's channel has gone) is the same.
        await world.queued_call("gone")
        resp = await world.client.post(
            "/api/calls/gone/escalate", json=ESCALATION, headers=headers(SUP)
        )
        assert resp.status == 502
        gone = world.calls.get("gone")
        assert gone is not None and gone.escalations == [] and gone.notes == []
