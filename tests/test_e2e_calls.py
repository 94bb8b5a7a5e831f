"""End to end over real sockets: recorded Asterisk 22 traffic in, desktop WebSocket messages out.

The real daemon (``build_daemon``) runs against the fake AMI server, which plays the shared
``asterisk22`` traces over TCP; agents' desktops are aiohttp WebSocket clients; the CRM is a
real SQLite file seeded with the traces' callers; interactions are read back from it.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from daemon_world import DaemonWorld, Desktop, token_of, wait_until
from fakes.agi_client import AgiCall, FakeAsterisk
from fakes.ami_server import FakeAmiServer, read_ami_events

from crm_core.store import CrmStore
from cti.config import Config
from cti.daemon import build_daemon

KNOWN_CALLER = "+442071234567"
VIP_CALLER = "+447700900456"
MEMBERS = {
    "Agent 1001": "Local/1001@agents",
    "Agent 1002": "Local/1002@agents",
    "Agent 1003": "Local/1003@agents",
    "Agent 2001": "Local/2001@agents",
    "Agent 2002": "Local/2002@agents",
    "Agent 3001": "Local/3001@agents",
}
SUPERVISOR = "Supervisor"


def daemon_config(db_url: str, ami_port: int) -> Config:
    agents: list[dict[str, Any]] = [
        {
            "name": name,
            "member": name,
            "interface": interface,
            "role": "agent",
            "tiers": ["tier" + interface[6]],
            "token_sha256": hashlib.sha256(token_of(name).encode()).hexdigest(),
        }
        for name, interface in MEMBERS.items()
    ]
    agents.append(
        {
            "name": SUPERVISOR,
            "role": "supervisor",
            "token_sha256": hashlib.sha256(token_of(SUPERVISOR).encode()).hexdigest(),
        }
    )
    return Config.model_validate(
        {
            "ami": {
                "host": "127.0.0.1",
                "port": ami_port,
                "username": "cti",
                "secret": "cti-secret",
                "reconnect_initial_s": 0.05,
                "reconnect_max_s": 0.2,
            },
            "agi": {"host": "127.0.0.1", "port": 0},
            "http": {"host": "127.0.0.1", "port": 0},
            "database": {"url": db_url},
            "routing": {
                "rules": [
                    {
                        "name": "vip",
                        "when": {"flag": "vip"},
                        "then": {"tier": "tier2", "priority": 10, "reason": "VIP customer"},
                    }
                ],
                "default": {"tier": "tier1", "reason": "default route"},
            },
            "agents": agents,
        }
    )


@dataclass(kw_only=True)
class Harness(DaemonWorld):
    """The daemon against the fake AMI server playing recorded calls."""

    ami: FakeAmiServer

    async def interaction_rows(self, call_id: str) -> int:
        from sqlalchemy import text

        async with self.store.engine.connect() as conn:
            result = await conn.execute(
                text("SELECT count(*) FROM interactions WHERE call_id = :c"), {"c": call_id}
            )
            return int(result.scalar_one())


@pytest.fixture
async def harness(tmp_path: Path, traces_dir: Path) -> AsyncIterator[Harness]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}"
    store = await CrmStore.open(url)
    await store.upsert_customer(
        name="Grace Hopper",
        external_id="CUST-000123",
        phones=[KNOWN_CALLER],
        flags=["payment_arrears"],
    )
    await store.upsert_customer(
        name="Zoë Ward", external_id="CUST-000456", phones=[VIP_CALLER], flags=["vip"]
    )
    ami = FakeAmiServer()
    await ami.start()
    session = aiohttp.ClientSession()
    h = Harness(ami=ami, store=store, config=daemon_config(url, ami.port), session=session)
    try:
        yield h
    finally:
        await h.stop_daemon()
        await session.close()
        await ami.stop()
        await store.close()


def trace(traces_dir: Path, name: str) -> list[dict[str, str]]:
    return read_ami_events(traces_dir / "asterisk22" / f"{name}.ami")


def split_before(events: list[dict[str, str]], test: Callable[[dict[str, str]], bool]) -> int:
    return next(i for i, e in enumerate(events) if test(e))


def call_id_of(events: list[dict[str, str]]) -> str:
    return next(e["Linkedid"] for e in events if e.get("Event") == "Newchannel")


async def play_like_asterisk(h: Harness, events: list[dict[str, str]]) -> None:
    """Play a trace; like on a real PBX, the CRM answers before the first agent is rung (the
    dialplan's Answer and AGI take ~0.5 s there, here the wire is as fast as it goes)."""
    cut = next((i for i, e in enumerate(events) if e.get("Event") == "AgentCalled"), 0)
    await h.ami.play(events[:cut])
    if cut:
        await crm_answered(h, call_id_of(events))
    await h.ami.play(events[cut:])


async def crm_answered(h: Harness, call_id: str) -> None:
    """Until the daemon has the call and the CRM has said who is calling: what a real PBX's
    seconds in the dialplan and the queue give before an agent is rung (played at wire speed,
    a trace rings agents sooner than a loaded machine's CRM lookup may answer)."""
    assert h.daemon is not None
    calls = h.daemon.parts.calls
    await wait_until(lambda: calls.get(call_id) is not None)
    await calls.lookup_settled(call_id)


async def play_and_end(h: Harness, events: list[dict[str, str]], supervisor: Desktop) -> str:
    call_id = call_id_of(events)
    await play_like_asterisk(h, events)
    await supervisor.wait_for("ended", call_id)
    return call_id


# ---- the scenarios ---------------------------------------------------------------------------


async def test_answered_call_pops_the_customer_on_the_answering_agents_desktop_only(
    harness: Harness, traces_dir: Path
) -> None:
    await harness.start_daemon()
    sup, a1001, _a1002, a2001 = await harness.desktops_for(
        SUPERVISOR, "Agent 1001", "Agent 1002", "Agent 2001"
    )
    events = trace(traces_dir, "answered_tier1")
    call_id = await play_and_end(harness, events, sup)

    pop = await a1001.wait_for("pop", call_id)
    assert pop["call"]["view"]["name"] == "Grace Hopper"
    assert "payment_arrears" in pop["call"]["view"]["flags"]
    assert pop["queue"] == "tier1" and pop["call"]["caller"] == KNOWN_CALLER
    await a1001.wait_for("ended", call_id)
    assert a1001.about(call_id) == ["pop", "answered", "ended"]
    assert a2001.about(call_id) == []  # another agent never sees this caller
    ids = [m["id"] for m in a1001.messages if "id" in m]
    assert len(ids) == len(set(ids))

    row = await harness.interaction(call_id)
    assert row is not None and row["outcome"] == "answered"
    assert row["agents"] == ["Agent 1001"] and row["queues"] == ["tier1"]
    assert row["tiers"] == ["tier1"] and row["customer_id"] is not None
    assert row["wait_s"] == pytest.approx(2.0, abs=1.0) and row["talk_s"] > 0
    assert await harness.interaction_rows(call_id) == 1
    assert harness.daemon is not None and harness.daemon.parts.calls.active() == []


async def test_caller_abandoning_in_the_queue_is_recorded_abandoned_without_any_pop(
    harness: Harness, traces_dir: Path
) -> None:
    await harness.start_daemon()
    sup, a1001 = await harness.desktops_for(SUPERVISOR, "Agent 1001")
    call_id = await play_and_end(harness, trace(traces_dir, "abandoned_in_queue"), sup)
    assert a1001.of("pop", call_id) == []
    row = await harness.interaction(call_id)
    assert row is not None and row["outcome"] == "abandoned" and row["agents"] == []
    assert row["answered_at"] is None


async def test_ring_no_answer_withdraws_the_pop_and_the_next_agent_gets_the_call(
    harness: Harness, traces_dir: Path
) -> None:
    await harness.start_daemon()
    desks = await harness.desktops_for(SUPERVISOR, "Agent 1001", "Agent 1002", "Agent 1003")
    sup, a1001 = desks[0], desks[1]
    events = trace(traces_dir, "ring_no_answer_then_next")
    call_id = await play_and_end(harness, events, sup)
    first = next(e["MemberName"] for e in events if e.get("Event") == "AgentRingNoAnswer")
    assert first != "Agent 1001"
    skipped = harness.desktops[first]
    await a1001.wait_for("ended", call_id)
    await skipped.wait_for("withdrawn", call_id)
    assert skipped.about(call_id)[:2] == ["pop", "withdrawn"]
    assert a1001.about(call_id)[-3:] == ["pop", "answered", "ended"]
    row = await harness.interaction(call_id)
    assert row is not None and row["agents"] == ["Agent 1001"]


async def test_ringall_pops_every_ringing_agent_and_withdraws_it_when_one_answers(
    harness: Harness, traces_dir: Path
) -> None:
    await harness.start_daemon()
    sup, a2001, a2002 = await harness.desktops_for(SUPERVISOR, "Agent 2001", "Agent 2002")
    events = trace(traces_dir, "agi_routed_vip_tier2")
    call_id = call_id_of(events)
    agi_channel = next(e for e in events if e.get("Event") == "AGIExecStart")
    # Asterisk asks our FastAGI server for the route before the caller joins a queue.
    assert harness.daemon is not None and harness.daemon.agi_port is not None
    asterisk = FakeAsterisk("127.0.0.1", harness.daemon.agi_port)
    cut = split_before(events, lambda e: e.get("Event") == "AGIExecStart")
    await harness.ami.play(events[:cut])
    routed = await asterisk.call(
        AgiCall(
            callerid=VIP_CALLER, uniqueid=agi_channel["Uniqueid"], channel=agi_channel["Channel"]
        )
    )
    assert routed.variables["CTI_QUEUE"] == "tier2"
    await play_like_asterisk(harness, events[cut:])
    await sup.wait_for("ended", call_id)

    await a2001.wait_for("ended", call_id)
    await a2002.wait_for("withdrawn", call_id)
    pop = await a2002.wait_for("pop", call_id)
    assert pop["reason"] == "VIP customer" and pop["call"]["view"]["name"] == "Zoë Ward"
    assert "vip" in pop["call"]["view"]["highlights"]
    assert a2002.about(call_id) == ["pop", "withdrawn"]
    assert a2001.about(call_id) == ["pop", "answered", "ended"]
    row = await harness.interaction(call_id)
    assert row is not None and row["routing_reason"] == "VIP customer"


@pytest.mark.parametrize(
    ("name", "first", "second", "kind"),
    [
        ("blind_transfer_tier1_to_tier2", "Agent 1002", "Agent 2001", "blind"),
        ("attended_transfer_tier1_to_tier2", "Agent 1003", "Agent 2001", "attended"),
    ],
)
async def test_a_transfer_from_the_phone_carries_the_context_to_the_next_agent(
    harness: Harness, traces_dir: Path, name: str, first: str, second: str, kind: str
) -> None:
    await harness.start_daemon()
    sup, a1, a2 = await harness.desktops_for(SUPERVISOR, first, second)
    events = trace(traces_dir, name)
    call_id = call_id_of(events)
    # The first agent writes a note while talking to the caller, then transfers (or consults).
    cut = split_before(
        events,
        lambda e: (
            e.get("Event") == "BlindTransfer"
            or e.get("Channel", "").startswith("Local/8002@transfer")
        ),
    )
    # The CRM answers before the first agent is rung, as on a real PBX: played at wire speed the
    # whole call, transfer included, lasts less than a CRM lookup may (a pop the CRM beats is
    # updated later: see the next test).
    await play_like_asterisk(harness, events[:cut])
    await a1.wait_for("answered", call_id)
    status, _ = await harness.api(
        "POST", f"/api/calls/{call_id}/notes", first, json={"text": "charged twice in May"}
    )
    assert status in (200, 201)
    await harness.ami.play(events[cut:])
    await sup.wait_for("ended", call_id)

    assert (await a1.wait_for("transferred", call_id))["kind"] == kind
    await a2.wait_for("ended", call_id)
    handed = a2.of("pop", call_id) + a2.of("answered", call_id)
    assert handed, a2.about(call_id)
    last = handed[-1]
    assert last["previous_agent"] == first
    assert [n["text"] for n in last["notes"]] == ["charged twice in May"]
    # The customer came with the pop; later messages carry only what changed.
    pops = a2.of("pop", call_id)
    assert pops and pops[-1]["call"]["view"]["name"] == "Grace Hopper"

    row = await harness.interaction(call_id)
    assert row is not None and row["agents"] == [first, second]
    assert [t["kind"] for t in row["transfers"]] == [kind]
    assert row["queues"] == ["tier1", "tier2"] and row["tiers"] == ["tier1", "tier2"]
    assert "charged twice in May" in row["notes"]
    assert await harness.interaction_rows(call_id) == 1


class HeldResolveStore:
    """The real store, but the CRM says who is calling only once ``answer`` is set."""

    def __init__(self, store: CrmStore) -> None:
        self._store = store
        self.answer = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def resolve(self, caller_id: str | None) -> Any:
        await self.answer.wait()
        return await self._store.resolve(caller_id)


async def test_a_crm_answering_while_the_next_agent_is_rung_after_a_transfer_updates_that_desk(
    harness: Harness, traces_dir: Path
) -> None:
    crm = HeldResolveStore(harness.store)
    harness.daemon = await build_daemon(harness.config, store=crm)
    await harness.daemon.start()
    await wait_until(lambda: harness.daemon is not None and harness.daemon.resyncs >= 1)
    a1, a2 = await harness.desktops_for("Agent 1002", "Agent 2001")
    events = trace(traces_dir, "blind_transfer_tier1_to_tier2")
    call_id = call_id_of(events)
    transfer = split_before(events, lambda e: e.get("Event") == "BlindTransfer")
    rung = next(
        i
        for i, e in enumerate(events)
        if i > transfer and e.get("Event") == "AgentCalled" and e.get("MemberName") == "Agent 2001"
    )
    await harness.ami.play(events[:transfer])
    await a1.wait_for("answered", call_id)
    status, _ = await harness.api(
        "POST", f"/api/calls/{call_id}/notes", "Agent 1002", json={"text": "charged twice in May"}
    )
    assert status in (200, 201)
    await harness.ami.play(events[transfer : rung + 1])
    pop = await a2.wait_for("pop", call_id)
    assert pop["call"]["view"] is None  # the CRM has not answered yet
    assert pop["previous_agent"] == "Agent 1002"

    crm.answer.set()
    update = await a2.wait_for("update", call_id, within_s=10.0)
    assert update["call"]["view"]["name"] == "Grace Hopper"
    assert update["previous_agent"] == "Agent 1002"
    assert [n["text"] for n in update["notes"]] == ["charged twice in May"]
    assert a1.of("update", call_id) == []  # the first agent's part of the call is over
    await harness.ami.play(events[rung + 1 :])
    await a2.wait_for("ended", call_id)


async def test_escalation_through_the_api_redirects_the_caller_and_the_next_pop_shows_why(
    harness: Harness, traces_dir: Path
) -> None:
    await harness.start_daemon()
    sup, a3001 = await harness.desktops_for(SUPERVISOR, "Agent 3001")
    events = trace(traces_dir, "redirect_escalation")
    call_id = call_id_of(events)
    cut = split_before(
        events,
        lambda e: (
            e.get("Event") == "QueueCallerAbandon"
            or (e.get("Event") == "VarSet" and e.get("Variable") == "CTI_ESCALATION_REASON")
        ),
    )
    await harness.ami.play(events[:cut])
    await crm_answered(harness, call_id)

    status, body = await harness.api(
        "POST",
        f"/api/calls/{call_id}/escalate",
        SUPERVISOR,
        json={"tier": "tier3", "reason": "line down", "note": "outage since Monday"},
    )
    assert status == 200, body
    setvars = {a.headers["variable"]: a.headers for a in harness.ami.actions_named("Setvar")}
    assert setvars["CTI_ESCALATION_REASON"]["value"] == "line down"
    (redirect,) = harness.ami.actions_named("Redirect")
    assert redirect.headers["channel"].endswith(";2") and redirect.headers["exten"] == "8003"

    await harness.ami.play(events[cut:])
    await sup.wait_for("ended", call_id)
    pop = await a3001.wait_for("pop", call_id)
    assert pop["reason"] == "line down"
    assert pop["escalation"]["note"] == "outage since Monday"
    assert pop["call"]["view"]["name"] == "Grace Hopper"
    row = await harness.interaction(call_id)
    assert row is not None and row["queues"] == ["tier1", "tier3"]
    assert row["agents"] == ["Agent 3001"] and row["outcome"] == "answered"
    assert row["extra"]["escalations"][0]["reason"] == "line down"


async def test_disposition_after_the_call_ended_reaches_the_interaction(
    harness: Harness, traces_dir: Path
) -> None:
    await harness.start_daemon()
    sup, _a1001 = await harness.desktops_for(SUPERVISOR, "Agent 1001")
    call_id = await play_and_end(harness, trace(traces_dir, "answered_tier1"), sup)
    status, body = await harness.api(
        "POST", f"/api/calls/{call_id}/disposition", "Agent 1001", json={"code": "resolved"}
    )
    assert status == 200, body
    row = await harness.interaction(call_id)
    assert row is not None and row["disposition"] == "resolved"
    assert await harness.interaction_rows(call_id) == 1


class SlowResolveStore:
    """The real store, but the CRM takes ``delay_s`` to say who is calling (a slow CRM)."""

    def __init__(self, store: CrmStore, delay_s: float) -> None:
        self._store = store
        self._delay_s = delay_s

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def resolve(self, caller_id: str | None) -> Any:
        await asyncio.sleep(self._delay_s)
        return await self._store.resolve(caller_id)


async def test_a_crm_answering_after_the_pop_updates_the_agents_desktop(
    harness: Harness, traces_dir: Path
) -> None:
    harness.daemon = await build_daemon(
        harness.config, store=SlowResolveStore(harness.store, delay_s=1.0)
    )
    await harness.daemon.start()
    await wait_until(lambda: harness.daemon is not None and harness.daemon.resyncs >= 1)
    a1001 = await harness.desktop("Agent 1001")
    events = trace(traces_dir, "answered_tier1")
    call_id = call_id_of(events)
    talking = split_before(events, lambda e: e.get("Event") == "AgentConnect") + 1
    await harness.ami.play(events[:talking])  # at wire speed: rung before the CRM answers

    pop = await a1001.wait_for("pop", call_id)
    assert pop["call"]["view"] is None  # popped without waiting past the resolve timeout
    update = await a1001.wait_for("update", call_id, within_s=10.0)
    assert update["call"]["view"]["name"] == "Grace Hopper"
    await harness.ami.play(events[talking:])
    await a1001.wait_for("ended", call_id)
