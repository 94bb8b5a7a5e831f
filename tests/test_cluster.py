"""Several instances, part by part, on the real Redis and PostgreSQL of the machine: the lease
gives one PBX to one instance at a time with ever larger fencing tokens, the database refuses
a stale token's writes, and desktop messages reach a desktop on any instance exactly once,
replayed with the same ids after a reconnect."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from sqlalchemy import select

from crm_core.models import Interaction, LivePbx
from crm_core.testing import empty_store
from crm_core.types import InteractionRecord
from cti.callstate import SavedCall, SqlCallState
from cti.cluster.board import BoardMirror
from cti.cluster.fanout import RedisFanout
from cti.cluster.fencing import (
    Fence,
    FencedInteractions,
    FenceStamps,
    StaleFence,
    claim,
    fence_guard,
)
from cti.cluster.instance import ClusterParts, IngestRole
from cti.cluster.lease import PbxLease
from cti.cluster.spread import Spread
from cti.config import AgentConfig
from cti.hub import PopHub
from cti.interactions import InteractionRecorder
from cti.tracker.events import CallEvent

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def redis() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as exc:
        await client.aclose()
        pytest.skip(f"Redis at {REDIS_URL} is not reachable: {exc}")
    yield client
    await client.aclose()


@pytest.fixture
async def prefix(redis: aioredis.Redis) -> AsyncIterator[str]:
    """A key prefix of this test alone, its keys deleted after it."""
    name = f"cti-test-{uuid.uuid4().hex[:10]}"
    yield name
    keys = [k async for k in redis.scan_iter(match=f"{name}:*")]
    if keys:
        await redis.delete(*keys)


async def test_one_instance_holds_a_pbx_lease_and_the_next_gets_a_larger_token(
    redis: aioredis.Redis, prefix: str
) -> None:
    a = PbxLease(redis, prefix, "pbx1", "a", ttl_s=0.5)
    b = PbxLease(redis, prefix, "pbx1", "b", ttl_s=0.5)
    first = await a.try_acquire()
    assert first is not None
    assert await b.try_acquire() is None  # a holds it
    assert await a.renew()
    assert await b.try_acquire() is None
    await asyncio.sleep(0.7)  # a stops renewing (killed): the lease expires
    assert not a.valid()
    second = await b.try_acquire()
    assert second is not None and second.token > first.token
    assert not await a.renew()  # the old holder cannot take it back by renewing
    assert await b.holder_now() == f"b {second.token}"
    other_pbx = PbxLease(redis, prefix, "pbx2", "a", ttl_s=0.5)
    assert await other_pbx.try_acquire() is not None  # leases are per PBX
    await b.release()
    third = await a.try_acquire()  # released: no need to wait for the TTL
    assert third is not None and third.token > second.token


async def test_an_instance_takes_a_free_pbx_at_once_only_below_its_fair_share(
    redis: aioredis.Redis, prefix: str
) -> None:
    spreads = [
        Spread(redis, prefix, name, pbxs=3, ttl_s=0.6, settle_s=0.6) for name in ("a", "b", "c")
    ]
    held = {"n": 0}
    spreads[0].count_held(lambda: held["n"])
    await asyncio.gather(*(s.joined() for s in spreads))  # present, and waited to settle
    a = spreads[0]
    assert a.live == 3 and a.share() == 1
    assert a.may_try(free_for_s=0.0)  # holds none of its one PBX
    held["n"] = 1
    assert not a.may_try(free_for_s=0.0)  # at its share: the others first
    assert not a.may_try(free_for_s=0.7)
    assert a.may_try(free_for_s=0.6 + 0.15 + 0.01)  # nobody took it: settle + 1 × ttl/4
    await spreads[2].leave()  # an instance stops: the survivors' share grows
    async with asyncio.timeout(5.0):
        while a.live != 2:  # noqa: ASYNC110 - its next beat counts the live instances
            await asyncio.sleep(0.05)
    assert a.share() == 2 and a.may_try(free_for_s=0.0)
    for s in spreads[:2]:
        await s.leave()


async def test_the_database_refuses_call_state_written_with_a_stale_fencing_token(
    db_url: str,
) -> None:
    store = await empty_store(db_url)
    try:
        tokens = {"old": 1, "new": 2}
        stale: list[StaleFence] = []
        old = SqlCallState(store.engine, guard=fence_guard(lambda: tokens["old"], stale.append))
        new = SqlCallState(store.engine, guard=fence_guard(lambda: tokens["new"], stale.append))
        call = SavedCall("1700000000.1", "queued", 1.0, None, None, {"caller": "x"})
        await old.write("pbx1", [call], [], seen_at=10.0)
        await new.write("pbx1", [call], [], seen_at=11.0)  # the new ingester takes over
        with pytest.raises(StaleFence):
            await old.write("pbx1", [], ["1700000000.1"], seen_at=12.0)
        assert [e.token for e in stale] == [1]
        snapshot = await new.load("pbx1")
        assert [c.call_id for c in snapshot.calls] == ["1700000000.1"]  # not deleted
        assert snapshot.seen_at == 11.0  # nor the heartbeat moved
        async with store.engine.connect() as conn:
            fence = (await conn.execute(select(LivePbx.fence))).scalar_one()
        assert fence == 2
        await new.write("pbx1", [], ["1700000000.1"], seen_at=13.0)  # same token: fine
        other = SqlCallState(store.engine, guard=fence_guard(lambda: 1, stale.append))
        await other.write("pbx2", [], [], seen_at=1.0)  # another PBX has its own fence
    finally:
        await store.close()


async def test_an_interaction_written_by_a_stale_ingester_is_refused_and_left_to_the_current_one(
    db_url: str,
) -> None:
    """A paused ingester (token 1) wakes after another took the PBX over (token 2): its record of
    a call is refused, not set aside nor retried; the current ingester's record is the one row."""
    store = await empty_store(db_url)
    try:
        stale: list[StaleFence] = []
        old_token: dict[str, int] = {"now": 1}
        old_stamps = FenceStamps()
        old = InteractionRecorder(FencedInteractions(store, old_stamps, stale.append))
        old_calls = old_stamps.stamping(old, lambda _call: Fence("pbx1", old_token["now"]))
        await old.start()
        old_calls.submit(InteractionRecord("1700000000.1", None, "201", outcome="answered"))
        assert await old.flush(10.0)
        assert old.written == 1 and not stale  # its own token: written

        new_stamps = FenceStamps()
        new = InteractionRecorder(FencedInteractions(store, new_stamps, stale.append))
        new_calls = new_stamps.stamping(new, lambda _call: Fence("pbx1", 2))
        await new.start()
        new_calls.submit(InteractionRecord("1700000000.2", None, "202", outcome="answered"))
        assert await new.flush(10.0)

        # The old ingester, woken from its pause, still ends the call it had (and a record of a
        # call it made with no lease at all, token 0).
        old_calls.submit(InteractionRecord("1700000000.2", None, "202", outcome="abandoned"))
        old_token["now"] = 0
        old_calls.submit(InteractionRecord("1700000000.3", None, "203", outcome="abandoned"))
        assert await old.flush(10.0)
        assert old.fenced == 2 and old.written == 1
        assert old.pending == 0 and old.dead_letters == 0  # dropped: nothing to retry
        assert [(e.pbx_id, e.token) for e in stale] == [("pbx1", 1), ("pbx1", 0)]

        async with store.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(Interaction.call_id, Interaction.outcome).order_by(Interaction.call_id)
                )
            ).all()
            fence = (await conn.execute(select(LivePbx.fence))).scalar_one()
        assert [tuple(r) for r in rows] == [
            ("1700000000.1", "answered"),
            ("1700000000.2", "answered"),  # the current ingester's figures, once
        ]
        assert fence == 2
        await old.stop()
        await new.stop()
    finally:
        await store.close()


async def test_a_record_refused_for_one_pbx_loses_that_pbxs_lease_not_another_ones(
    db_url: str,
) -> None:
    """Several PBXs in one instance: a stale record of lyon's (a queue_log backfill, a live
    call) says lyon was taken over; paris, still this instance's, is not given up for it."""
    store = await empty_store(db_url)
    try:
        roles = {
            pbx: IngestRole(PbxLease(None, "cti", pbx, "a", ttl_s=2.0)) for pbx in ("paris", "lyon")
        }
        parts = ClusterParts(
            redis=None, fanout=None, role=roles["paris"], engine=store.engine, roles=roles
        )  # type: ignore[arg-type]
        async with store.engine.begin() as conn:
            await claim(conn, "lyon", 7)  # another instance ingests lyon now
        recorder = InteractionRecorder(parts.fenced(store))
        parts.stamps.stamp("lyon:1700000000.1", Fence("lyon", 6))
        await recorder.start()
        recorder.submit(InteractionRecord("lyon:1700000000.1", None, "201", outcome="answered"))
        assert await recorder.flush(10.0)
        await recorder.stop()
        assert recorder.fenced == 1
        assert roles["lyon"].lost.is_set()
        assert not roles["paris"].lost.is_set()
    finally:
        await store.close()


AGENTS = [
    AgentConfig(name="alice", member="alice", interface="PJSIP/alice"),
    AgentConfig(name="bob", member="bob", interface="PJSIP/bob"),
]


def ev(name: str, call: str, ts: float, **data: object) -> CallEvent:
    return CallEvent(event=name, call=call, ts=ts, data=dict(data))


async def next_message(sub: object, within_s: float = 5.0) -> dict[str, object]:
    async with asyncio.timeout(within_s):
        message = await sub.next()  # type: ignore[attr-defined]
    assert message is not None
    result: dict[str, object] = json.loads(message.text)
    return result


async def test_a_desktop_on_another_instance_gets_each_pop_once_and_its_replay_after_a_reconnect(
    redis: aioredis.Redis, prefix: str
) -> None:
    fan_a, fan_b = RedisFanout(redis, prefix), RedisFanout(redis, prefix)
    ingester, other = PopHub(AGENTS, fanout=fan_a), PopHub(AGENTS, fanout=fan_b)
    await fan_a.start(ingester.deliver_local)
    await fan_b.start(other.deliver_local)
    try:
        on_b = other.subscribe(AGENTS[0])
        on_a = ingester.subscribe(AGENTS[0])
        ingester.publish(ev("ringing", "c1", 100.0, member="alice"), None)
        pop_b, pop_a = await next_message(on_b), await next_message(on_a)
        assert pop_b["type"] == "pop" and pop_b["call_id"] == "c1"
        assert pop_a["id"] == pop_b["id"]
        ingester.publish(ev("answered", "c1", 101.0, member="alice"), None)
        assert (await next_message(on_b))["type"] == "answered"
        await asyncio.sleep(0.3)
        assert on_b.take_nowait() is None  # once, not twice
        # The desktop reconnects to the other instance: the active call, same ids.
        other.unsubscribe(on_b)
        again = other.subscribe(AGENTS[0])
        replayed = [await next_message(again), await next_message(again)]
        assert [m["id"] for m in replayed] == [pop_b["id"], replayed[1]["id"]]
        assert [m["type"] for m in replayed] == ["pop", "answered"]
        # A third instance that starts now rebuilds the replay from the stream.
        fan_c = RedisFanout(redis, prefix)
        late = PopHub(AGENTS, fanout=fan_c)
        await fan_c.start(late.deliver_local)
        try:
            assert [m.id for m in late.active_messages("alice")] == [m["id"] for m in replayed]
            # It takes over ingesting: the call is not popped again when Asterisk's state
            # is read back, and its end reaches the desktop.
            assert late.adopt_replay() == 1
            late.publish(ev("ringing", "c1", 102.0, member="alice"), None)
            late.publish(ev("answered", "c1", 102.0, member="alice"), None)
            late.publish(ev("ended", "c1", 103.0, hangup_by="caller", talk_s=2.0), None)
            ended = await next_message(again)
            assert ended["type"] == "ended"
            assert late.active_messages("alice") == []
        finally:
            await fan_c.stop()
    finally:
        await fan_a.stop()
        await fan_b.stop()


async def test_the_ingesters_own_desktops_get_each_pop_once_redis_has_it_never_before(
    redis: aioredis.Redis, prefix: str
) -> None:
    """Not before: an ingester killed in between would have shown a pop no other instance
    nor any replay knows of. Then at once, without reading it back, and only once."""
    fan = RedisFanout(redis, prefix)
    hub = PopHub(AGENTS, fanout=fan)
    await fan.start(hub.deliver_local)
    try:
        desk = hub.subscribe(AGENTS[0])
        gate = asyncio.Event()
        flush = fan._flush

        async def stalled() -> None:
            await gate.wait()
            await flush()

        fan._flush = stalled  # type: ignore[method-assign]
        hub.publish(ev("ringing", "c1", 100.0, member="alice"), None)
        await asyncio.sleep(0.3)
        assert desk.take_nowait() is None  # Redis does not have it yet
        fan._flush = flush  # type: ignore[method-assign]
        gate.set()
        pop = await next_message(desk, within_s=2.0)
        assert pop["type"] == "pop" and [m.id for m in hub.active_messages("alice")] == [pop["id"]]
        assert await redis.xlen(fan.stream) == 1
        await asyncio.sleep(0.5)  # read back from the stream meanwhile
        assert desk.take_nowait() is None
        assert [m.id for m in hub.active_messages("alice")] == [pop["id"]]
    finally:
        await fan.stop()


def test_the_board_mirror_is_the_last_snapshot_with_the_rows_since_applied() -> None:
    hub = PopHub(AGENTS)
    mirror = BoardMirror()
    board = {
        "at": 1.0,
        "calls": [{"call_id": "c1", "state": "queued"}, {"call_id": "c2", "state": "ringing"}],
        "agents": [{"name": "alice", "member": "alice", "state": "available"}],
        "queues": [{"queue": "tier1", "waiting": 1}],
        "hours": [{"hour": 9}],
    }
    alert = {"kind": "wait", "subject": "tier1", "raised": True}
    mirror.apply(hub.make_message("snapshot", {"board": board, "alerts": [alert]}))
    mirror.apply(hub.make_message("call_row", {"row": {"call_id": "c1", "state": "answered"}}))
    mirror.apply(hub.make_message("call_gone", {"call_id": "c2"}))
    mirror.apply(hub.make_message("call_row", {"row": {"call_id": "c3", "state": "queued"}}))
    row = {"name": "alice", "member": "alice", "state": "on_call"}
    mirror.apply(hub.make_message("agent_row", {"row": row}))
    mirror.apply(hub.make_message("queue_row", {"row": {"queue": "tier1", "waiting": 0}}))
    mirror.apply(hub.make_message("alert", {**alert, "raised": False}))
    mirror.apply(hub.make_message("pop", {"call_id": "c3"}))  # a desktop's: not the board's
    assert mirror.board()["calls"] == [
        {"call_id": "c1", "state": "answered"},
        {"call_id": "c3", "state": "queued"},
    ]
    assert mirror.board()["agents"] == [row]
    assert mirror.board()["queues"] == [{"queue": "tier1", "waiting": 0}]
    assert mirror.board()["hours"] == [{"hour": 9}]
    assert mirror.alerts() == []
