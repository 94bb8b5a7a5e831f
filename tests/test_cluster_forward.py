"""Several instances (real Redis): a desktop's call-scoped request that lands on a standby
instance is answered by the instance ingesting the call's PBX, exactly as if it had been sent
there: the note, disposition, customer and escalation land on the ingester's live call and in
its record; a bad request gets the ingester's own 400 and nothing reaches Asterisk. The list
of live calls on a standby is the ingester's. A request replayed by the relay is never
forwarded again, and the relay's marker from outside is refused. No answer in time: 504 that
says the request may have been applied.

Two daemons in this process (``test_cluster_actions``): A ingests the PBX, B stands by."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp.test_utils
import pytest
import redis.asyncio as aioredis
from fakes.ami_server import FakeAmiServer
from test_cluster_actions import (
    Api,
    agent,
    eventually,
    ingesting,
    instance,
    sent,
    started,
    two_instances,
)
from test_e2e_calls import call_id_of, trace
from test_e2e_restart import split_answered

from cti.cluster.forward import RELAY_HEADER, HttpForward
from cti.config import AgentConfig, Config
from cti.daemon import Daemon
from cti.http.state import DEPS


def forward_of(daemon: Daemon) -> HttpForward:
    forward = daemon.parts.app[DEPS].forward
    assert isinstance(forward, HttpForward)
    return forward


@pytest.fixture
def prefix(redis_prefix: tuple[aioredis.Redis, str]) -> str:
    """The Redis key prefix of this test's instances (its keys deleted after it)."""
    return redis_prefix[1]


AGENT = "Agent 1001"  # the agent who answers the recorded call


def config(name: str, db_url: str, prefix: str, pbx: FakeAmiServer, ingests: list[str]) -> Config:
    base = instance(name, db_url, prefix, pbxs={"pbx1": pbx.port}, ingests=ingests)
    people = [agent(AGENT), agent("Other Agent"), agent("Boss", role="supervisor")]
    return base.model_copy(update={"agents": [AgentConfig.model_validate(p) for p in people]})


async def ingester_and_standby(
    stack: AsyncExitStack, db_url: str, prefix: str, pbx: FakeAmiServer
) -> tuple[Daemon, Daemon]:
    """A ingests pbx1; B may not (another PBX's instance), so it stands by whatever happens."""

    async def holds_it(d: Daemon) -> None:
        await eventually(ingesting(d, "pbx1"))

    async def nothing(_d: Daemon) -> None:
        return None

    a = await started(stack, config("A", db_url, prefix, pbx, []), db_url, holds_it)
    b = await started(stack, config("B", db_url, prefix, pbx, ["elsewhere"]), db_url, nothing)
    await eventually(lambda: bool(getattr(a.parts.ami, "connected", False)))
    return a, b


async def answered_call(a: Daemon, pbx: FakeAmiServer, traces_dir: Path) -> tuple[str, list[Any]]:
    """A recorded call played up to its answer on pbx1: live on A only. (Its rest, to end it.)"""
    events = trace(traces_dir, "answered_tier1")
    call_id, cut = call_id_of(events), split_answered(events)
    await pbx.play(events[:cut])
    calls = a.parts.calls
    await eventually(lambda: (c := calls.get(call_id)) is not None and c.state == "answered")
    await calls.lookup_settled(call_id)
    return call_id, events[cut:]


Scenario = Callable[[Api, Daemon, Daemon, FakeAmiServer, str], Awaitable[None]]


async def scenario(db_url: str, prefix: str, traces_dir: Path, body: Scenario) -> list[Any]:
    async with (
        AsyncExitStack() as stack,
        FakeAmiServer(queues={"tier1": ["PJSIP/1001"]}) as pbx,
        aiohttp.ClientSession() as session,
    ):
        a, b = await ingester_and_standby(stack, db_url, prefix, pbx)
        call_id, rest = await answered_call(a, pbx, traces_dir)
        assert b.parts.calls.get(call_id) is None  # not in the standby's memory
        await body(Api(session), a, b, pbx, call_id)
        return rest


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_call_action_posted_on_the_standby_lands_on_the_ingesters_call_and_record(
    db_url: str, prefix: str, traces_dir: Path
) -> None:
    async with (
        AsyncExitStack() as stack,
        FakeAmiServer(queues={"tier1": ["PJSIP/1001"]}) as pbx,
        aiohttp.ClientSession() as session,
    ):
        api = Api(session)
        a, b = await ingester_and_standby(stack, db_url, prefix, pbx)
        call_id, rest = await answered_call(a, pbx, traces_dir)
        assert b.parts.calls.get(call_id) is None  # not in the standby's memory

        status, body = await api(b, "GET", "/api/calls", AGENT)
        assert status == 200 and [c["call_id"] for c in body["calls"]] == [call_id], body
        assert "missing" not in body
        status, body = await api(b, "GET", f"/api/calls/{call_id}", AGENT)
        assert status == 200 and body["state"] == "answered", body

        path = f"/api/calls/{call_id}"
        status, body = await api(b, "POST", f"{path}/notes", AGENT, json={"text": "refund"})
        assert status == 201 and [n["text"] for n in body["notes"]] == ["refund"], body
        status, body = await api(b, "POST", f"{path}/disposition", AGENT, json={"code": "sale"})
        assert status == 200 and body["disposition"] == "sale", body
        status, body = await api(
            b, "POST", f"{path}/customer/new", AGENT, json={"name": "Ada Lovelace"}
        )
        assert status == 201, body
        customer_id = body["call"]["customer_id"]
        assert customer_id is not None
        status, body = await api(b, "POST", f"{path}/cases", AGENT, json={"reason": "fault"})
        assert status == 201 and body["case"]["tier"] == "tier2", body
        case_id = body["case"]["case_id"]
        status, body = await api(
            b, "POST", f"/api/cases/{case_id}/calls", AGENT, json={"call_id": call_id}
        )
        assert status == 200, body  # the call is in the body: forwarded as well
        status, body = await api(
            b, "POST", f"{path}/escalate", AGENT, json={"tier": "tier2", "reason": "billing"}
        )
        assert status == 200 and body["tier"] == "tier2", body
        assert body["action"] == "BlindTransfer"
        await pbx.wait_for_action("BlindTransfer")
        assert pbx.logins == 1  # only A is logged in: B's requests were answered by A

        ctx = a.parts.calls.get(call_id)
        assert ctx is not None and [n["text"] for n in ctx.notes] == ["refund"]
        assert ctx.disposition == "sale"
        assert ctx.customer_id == customer_id
        assert [e["reason"] for e in ctx.escalations] == ["billing"]
        assert forward_of(a).replayed == 8 and forward_of(b).replayed == 0

        await pbx.play(rest)
        await eventually(lambda: (c := a.parts.calls.get(call_id)) is None or c.state == "ended")
        assert await a.parts.recorder.flush(10.0)
        row = await a.parts.store.interaction(call_id)
        assert row is not None and "refund" in row["notes"], row
        assert row["disposition"] == "sale" and row["customer_id"] == customer_id
        assert row["extra"]["escalations"][0]["reason"] == "billing"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_bad_request_on_the_standby_gets_the_ingesters_400_and_nothing_reaches_the_pbx(
    db_url: str, prefix: str, traces_dir: Path
) -> None:
    async def body(api: Api, a: Daemon, b: Daemon, pbx: FakeAmiServer, call_id: str) -> None:
        before = sent(pbx)
        escalate = f"/api/calls/{call_id}/escalate"
        wrong = {"tier": "tier9", "reason": "billing"}
        answers = [await api(via, "POST", escalate, AGENT, json=wrong) for via in (a, b)]
        assert answers[0][0] == 400 and "unknown tier 'tier9'" in answers[0][1]["error"]
        assert answers[1] == answers[0]  # the same status and message on the standby
        status, got = await api(b, "POST", f"/api/calls/{call_id}/notes", AGENT, json={})
        assert status == 400 and "text" in got["error"], got
        # Not the agent's call: the ingester's 403, whoever asks where.
        status, got = await api(b, "POST", escalate, "Other Agent", json=wrong | {"tier": "tier2"})
        assert status == 403, got
        status, got = await api(b, "POST", escalate, None, json=wrong)  # no token: refused on B
        assert status == 401, got
        await asyncio.sleep(0.3)
        assert sent(pbx) == before  # nothing reached Asterisk
        ctx = a.parts.calls.get(call_id)
        assert ctx is not None and ctx.escalations == [] and ctx.notes == []
        assert forward_of(a).replayed == 3  # the unauthenticated one never left B

    await scenario(db_url, prefix, traces_dir, body)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_replayed_request_is_never_forwarded_again_and_its_marker_is_refused_from_outside(
    db_url: str, prefix: str, traces_dir: Path
) -> None:
    async def body(api: Api, a: Daemon, b: Daemon, pbx: FakeAmiServer, call_id: str) -> None:
        notes = f"/api/calls/{call_id}/notes"
        for via in (a, b):  # a desktop (or anyone) setting the relay's marker is refused
            headers = {RELAY_HEADER: forward_of(a).replay_headers()[RELAY_HEADER] + "x"}
            status, got = await api(via, "POST", notes, AGENT, json={"text": "x"}, headers=headers)
            assert status == 403 and RELAY_HEADER in got["error"], got
        # B's own relay replaying on B (its lease view stale): answered there, not sent on.
        status, got = await api(
            b, "POST", notes, AGENT, json={"text": "x"}, headers=forward_of(b).replay_headers()
        )
        assert status == 503 and "pbx1" in got["error"], got
        ctx = a.parts.calls.get(call_id)
        assert ctx is not None and ctx.notes == []
        assert forward_of(a).replayed == 0

    await scenario(db_url, prefix, traces_dir, body)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_no_answer_from_the_ingester_in_time_is_a_504_that_says_it_may_have_been_applied(
    db_url: str, prefix: str, traces_dir: Path
) -> None:
    async def body(api: Api, a: Daemon, b: Daemon, pbx: FakeAmiServer, call_id: str) -> None:
        assert a.parts.cluster is not None and b.parts.cluster is not None
        assert a.parts.cluster.relay is not None and b.parts.cluster.relay is not None
        done = asyncio.Event()

        async def stuck(_payload: Any) -> Any:
            await done.wait()  # A is too busy to answer (the request may still run there)

        a.parts.cluster.relay.handle("http", stuck)
        b.parts.cluster.relay.timeout_s = 0.5
        status, got = await api(b, "POST", f"/api/calls/{call_id}/notes", AGENT, json={"text": "x"})
        done.set()
        assert status == 504, got
        assert "instance A" in got["error"] and "may have been applied" in got["error"]

    await scenario(db_url, prefix, traces_dir, body)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_with_pbxs_on_two_instances_each_lists_every_call_and_acts_on_the_others(
    db_url: str, prefix: str, traces_dir: Path
) -> None:
    events = trace(traces_dir, "answered_tier1")
    uniqueid, cut = call_id_of(events), split_answered(events)
    async with (
        AsyncExitStack() as stack,
        FakeAmiServer() as paris,
        FakeAmiServer() as lyon,
        aiohttp.ClientSession() as session,
    ):
        api = Api(session)
        a, b = await two_instances(stack, db_url, prefix, paris, lyon)  # A paris, B lyon
        await paris.play(events[:cut])  # the same recorded call on each PBX, each live apart
        await lyon.play(events[:cut])
        on_paris, on_lyon = f"paris:{uniqueid}", f"lyon:{uniqueid}"
        await eventually(lambda: a.parts.calls.get(on_paris) is not None)
        await eventually(lambda: b.others[0].parts.calls.get(on_lyon) is not None)

        for via in (a, b):
            status, body = await api(via, "GET", "/api/calls", "Boss")
            assert status == 200 and "missing" not in body, body
            assert sorted(c["call_id"] for c in body["calls"]) == [on_lyon, on_paris]

        # A note on each call, each posted on the instance that does not ingest it.
        for via, call_id in ((a, on_lyon), (b, on_paris)):
            status, body = await api(
                via, "POST", f"/api/calls/{call_id}/notes", "Boss", json={"text": call_id}
            )
            assert status == 201, body
        paris_call = a.parts.calls.get(on_paris)
        lyon_call = b.others[0].parts.calls.get(on_lyon)
        assert paris_call is not None and [n["text"] for n in paris_call.notes] == [on_paris]
        assert lyon_call is not None and [n["text"] for n in lyon_call.notes] == [on_lyon]
        assert forward_of(a).replayed == 2 and forward_of(b).replayed == 2  # 1 list, 1 note


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_an_ingester_that_cannot_reach_its_own_api_says_so_and_applies_nothing(
    db_url: str, prefix: str, traces_dir: Path
) -> None:
    async def body(api: Api, a: Daemon, b: Daemon, pbx: FakeAmiServer, call_id: str) -> None:
        closed = aiohttp.test_utils.unused_port()
        forward_of(a).address = lambda: ("127.0.0.1", closed)  # its API gone, its relay not
        status, got = await api(b, "POST", f"/api/calls/{call_id}/notes", AGENT, json={"text": "x"})
        assert status == 503 and "cannot reach its own API" in got["error"], got
        ctx = a.parts.calls.get(call_id)
        assert ctx is not None and ctx.notes == []

    await scenario(db_url, prefix, traces_dir, body)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_call_list_names_a_pbx_whose_instance_is_slow_or_gone_and_lists_the_rest(
    db_url: str, prefix: str, traces_dir: Path
) -> None:
    events = trace(traces_dir, "answered_tier1")
    uniqueid, cut = call_id_of(events), split_answered(events)
    async with (
        AsyncExitStack() as stack,
        FakeAmiServer() as paris,
        FakeAmiServer() as lyon,
        aiohttp.ClientSession() as session,
    ):
        api = Api(session)
        a, b = await two_instances(stack, db_url, prefix, paris, lyon)  # A paris, B lyon
        await paris.play(events[:cut])
        await eventually(lambda: a.parts.calls.get(f"paris:{uniqueid}") is not None)
        assert b.parts.cluster is not None and b.parts.cluster.relay is not None
        assert b.parts.cluster.relay.timeout_s == 10.0  # an action may take that long; a list not
        done = asyncio.Event()

        async def stuck(_payload: Any) -> Any:
            await done.wait()  # B is alive and holds lyon, but does not answer

        b.parts.cluster.relay.handle("http", stuck)
        forward_of(a).list_timeout_s = 0.5
        for gone in (False, True):
            if gone:
                done.set()
                await b.stop()  # B gone: its lease with it
            started_at = asyncio.get_running_loop().time()
            status, body = await api(a, "GET", "/api/calls", "Boss")
            took = asyncio.get_running_loop().time() - started_at
            assert status == 200, body
            assert [c["call_id"] for c in body["calls"]] == [f"paris:{uniqueid}"]
            assert body["missing"] == ["lyon"]
            assert took < 2.5, took  # not the relay's 10 s
