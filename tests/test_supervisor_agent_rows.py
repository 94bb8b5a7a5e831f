"""An agent's row on the console is built from the calls ringing or talking to that agent,
kept as events arrive: with 300 calls in progress, an event costs no pass over all of them,
and the row pushed says what the board says."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from http_world import TOKENS
from supervisor_world import running_console

MEMBER = {"member": "Agent 1001", "interface": "Local/1001@agents"}


async def test_agent_rows_follow_their_calls_without_a_pass_over_every_call(
    tmp_path: Path,
) -> None:
    async with running_console(tmp_path) as world:
        ws = await world.client.ws_connect("/ws/supervisor")
        await ws.send_json({"type": "auth", "token": TOKENS["Supervisor"]})
        while json.loads((await ws.receive(timeout=20)).data)["type"] != "snapshot":
            pass
        await world.agent_state("1001", 0)
        for n in range(300):
            await world.event("offered", f"bg{n}", 1 + n * 0.01, caller="+441632960001")
            await world.event("queued", f"bg{n}", 1 + n * 0.01, queue="tier1")
        passes: list[int] = []
        active = world.calls.active

        def counted() -> Any:
            passes.append(1)
            return active()

        world.calls.active = counted  # type: ignore[method-assign]
        await world.event("ringing", "bg7", 10, queue="tier1", **MEMBER)
        await world.event("ringing", "bg9", 11, queue="tier1", **MEMBER)
        await world.event("answered", "bg9", 12, queue="tier1", agent="Agent 1001", **MEMBER)
        await world.event("ended", "bg9", 40, hangup_by="caller")
        assert passes == []
        world.calls.active = active  # type: ignore[method-assign]

        rows: list[dict[str, Any]] = []
        while True:  # everything sent, until the socket is quiet for 2 s
            try:
                msg = json.loads((await ws.receive(timeout=2)).data)
            except TimeoutError:
                break
            if msg["type"] == "agent_row" and msg["row"]["member"] == "Agent 1001":
                rows.append(msg["row"])
        await ws.close()
        # Coalesced per agent (a row waiting is replaced by a newer one): the last is the state.
        states = [(r["state"], r["call_id"]) for r in rows]
        assert states[-1] == ("ringing", "bg7")  # bg9 ended; bg7 still rings them
        board = {a["member"]: a for a in world.supervision.board()["agents"]}
        assert (board["Agent 1001"]["state"], board["Agent 1001"]["call_id"]) == states[-1]
