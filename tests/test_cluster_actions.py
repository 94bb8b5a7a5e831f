"""Several instances (real Redis): an action from the API reaches its PBX whichever instance
the desktop's request landed on. Only the ingester is logged in to a PBX's AMI; another
instance sends the action through it, and refuses with 503 naming the PBX when nobody
ingests it. Each instance's ``/healthz`` reports every PBX, with the lease held or standby,
and ``/api/stats/live`` is the same on every instance: the figures of every PBX's ingester.

Two daemons run in this process, each with its own HTTP port, on one database and one Redis
key prefix, against fake Asterisks that record every action they receive."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from fakes.ami_server import FakeAmiServer, read_ami_events

from crm_core.store import CrmStore
from cti.ami.errors import AmiError
from cti.cluster.livestats import live_everywhere, merge_live
from cti.cluster.relay import ActionRelay
from cti.config import Config
from cti.daemon import Daemon, build_daemon

REDIS_URL = "redis://127.0.0.1:6379/0"
SENT_BY_API = {"setvar", "redirect", "blindtransfer", "originate", "queueadd", "queueremove"}
SENT_BY_API |= {"queuepause"}


@pytest.fixture
def prefix(redis_prefix: tuple[aioredis.Redis, str]) -> str:
    """The Redis key prefix of this test's instances (its keys deleted after it)."""
    return redis_prefix[1]


def token(name: str) -> str:
    return "tok-" + name.replace(" ", "-").lower()


def agent(name: str, pbx: str = "", role: str = "agent") -> dict[str, Any]:
    return {
        "name": name,
        "member": name,
        "interface": "PJSIP/1001",
        "pbx": pbx,
        "role": role,
        "tiers": ["tier1"],
        "token_sha256": hashlib.sha256(token(name).encode()).hexdigest(),
    }


def instance(
    name: str, db_url: str, prefix: str, *, pbxs: dict[str, int], ingests: list[str]
) -> Config:
    """An instance's config; ``ingests``: the PBXs it may take the lease of."""
    several = len(pbxs) > 1
    ami: dict[str, Any] = {"secret": "cti-secret", "reconnect_initial_s": 0.05}
    if not several:
        ((pbx_id, port),) = pbxs.items()
        ami |= {"pbx_id": pbx_id, "port": port}
    return Config.model_validate(
        {
            "ami": ami,
            "pbx": [{"id": p, "port": port} for p, port in pbxs.items()] if several else [],
            "agi": {"host": "127.0.0.1", "port": 0},
            "http": {"host": "127.0.0.1", "port": 0, "originate_context": "dial-out"},
            "database": {"url": db_url},
            "cluster": {
                "redis_url": REDIS_URL,
                "instance_id": name,
                "key_prefix": prefix,
                "lease_ttl_s": 2.0,  # renewed every 0.67 s: kept on a loaded machine
                "settle_s": 0,
                "pbxs": ingests,
            },
            "agents": [
                *(
                    [agent("Paris Agent", "paris"), agent("Lyon Agent", "lyon")]
                    if several
                    else [agent("Agent")]
                ),
                agent("Boss", role="supervisor"),
            ],
        }
    )


async def eventually(cond: Callable[[], bool], within_s: float = 15.0) -> None:
    async with asyncio.timeout(within_s):
        while not cond():  # noqa: ASYNC110 - the daemons' own tasks change it
            await asyncio.sleep(0.05)


class Api:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def __call__(
        self, daemon: Daemon, method: str, path: str, who: str | None = None, **kw: Any
    ) -> tuple[int, Any]:
        url = f"http://127.0.0.1:{daemon.http_port}{path}"
        headers = {"Authorization": f"Bearer {token(who)}"} if who else {}
        headers |= kw.pop("headers", {})
        async with self.session.request(method, url, headers=headers, **kw) as r:
            return r.status, await r.json()


def sent(pbx: FakeAmiServer) -> list[str]:
    return [a.name.lower() for a in pbx.actions if a.name.lower() in SENT_BY_API]


def ingesting(daemon: Daemon, pbx: str) -> Callable[[], bool]:
    def holds() -> bool:
        cluster = daemon.parts.cluster
        return cluster is not None and cluster.ingests(pbx)

    return holds


async def started(
    stack: AsyncExitStack, config: Config, db_url: str, after: Callable[[Daemon], Awaitable[None]]
) -> Daemon:
    store = await CrmStore.open(db_url)
    stack.push_async_callback(store.close)  # the daemon leaves a store it was given open
    daemon = await build_daemon(config, store=store, http_port=0, agi_port=0)
    stack.push_async_callback(daemon.stop)
    await daemon.start()
    await after(daemon)
    return daemon


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_an_agents_action_on_a_standby_instance_goes_through_the_ingester_of_the_pbx(
    db_url: str, prefix: str
) -> None:
    async with (
        AsyncExitStack() as stack,
        FakeAmiServer(queues={"tier1": ["PJSIP/1001"]}) as pbx,
        aiohttp.ClientSession() as session,
    ):
        api = Api(session)
        pbxs = {"pbx1": pbx.port}

        async def holds_it(d: Daemon) -> None:
            await eventually(ingesting(d, "pbx1"))

        async def nothing(_d: Daemon) -> None:
            return None

        a = await started(
            stack, instance("A", db_url, prefix, pbxs=pbxs, ingests=[]), db_url, holds_it
        )
        # B may not ingest pbx1 (another PBX's instance): it stays standby whatever happens.
        b = await started(
            stack, instance("B", db_url, prefix, pbxs=pbxs, ingests=["elsewhere"]), db_url, nothing
        )
        await eventually(lambda: bool(getattr(a.parts.ami, "connected", False)))

        status, body = await api(b, "POST", "/api/agent/pause", "Agent", json={"paused": True})
        assert status == 200, body
        pause = await pbx.wait_for_action("QueuePause")
        assert pause.headers["interface"] == "PJSIP/1001" and pause.headers["paused"] == "true"
        assert pbx.logins == 1  # only A is logged in: B sent it through A

        status, body = await api(b, "GET", "/healthz")
        assert status == 200, body  # a standby serves its desktops
        assert [(p["pbx"], p["lease"], p["ami"]) for p in body["pbxs"]] == [
            ("pbx1", "standby", False)
        ]
        status, body = await api(a, "GET", "/healthz")
        assert status == 200 and body["pbxs"][0]["lease"] == "held" and body["pbxs"][0]["ami"]

        # A call of a PBX B stands by for is A's to answer (cti.cluster.forward): no such call.
        status, body = await api(
            b,
            "POST",
            "/api/calls/1700000000.1/escalate",
            "Agent",
            json={"tier": "tier2", "reason": "line down"},
        )
        assert status == 404 and "no live call 1700000000.1" in body["error"], body

        await a.stop()  # gives the lease up: nobody ingests pbx1 now
        status, body = await api(b, "POST", "/api/agent/pause", "Agent", json={"paused": False})
        assert status == 503 and "pbx1" in body["error"], body
        await asyncio.sleep(0.2)
        assert sent(pbx) == ["queuepause"]


async def two_instances(
    stack: AsyncExitStack, db_url: str, prefix: str, paris: FakeAmiServer, lyon: FakeAmiServer
) -> tuple[Daemon, Daemon]:
    """A ingests paris, B lyon; both links logged in."""
    pbxs = {"paris": paris.port, "lyon": lyon.port}

    def holding(pbx_id: str) -> Callable[[Daemon], Awaitable[None]]:
        async def wait(d: Daemon) -> None:
            await eventually(ingesting(d, pbx_id))

        return wait

    a = await started(
        stack, instance("A", db_url, prefix, pbxs=pbxs, ingests=["paris"]), db_url, holding("paris")
    )
    b = await started(
        stack, instance("B", db_url, prefix, pbxs=pbxs, ingests=["lyon"]), db_url, holding("lyon")
    )
    await eventually(lambda: bool(getattr(a.parts.ami, "connected", False)))
    await eventually(lambda: bool(getattr(b.others[0].parts.ami, "connected", False)))
    # Resynced before a test plays its recording: a call caught by the resync is dated by this
    # host's clock, and the recording's old timestamps would then fall on another day.
    await eventually(lambda: a.resyncs >= 1 and b.others[0].resyncs >= 1)
    return a, b


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_live_statistics_are_the_same_on_every_instance_and_count_every_pbx(
    db_url: str, prefix: str, traces_dir: Path
) -> None:
    events = read_ami_events(traces_dir / "asterisk22" / "answered_tier1.ami")
    async with (
        AsyncExitStack() as stack,
        FakeAmiServer() as paris,
        FakeAmiServer() as lyon,
        aiohttp.ClientSession() as session,
    ):
        api = Api(session)
        a, b = await two_instances(stack, db_url, prefix, paris, lyon)
        await paris.play(events)  # the same recorded call on each PBX, each ingested apart
        await lyon.play(events)

        def offered(d: Daemon) -> int:
            assert d.parts.supervision is not None
            return sum(f["offered"] for f in d.parts.supervision.live_stats()["queue"].values())

        await eventually(lambda: offered(a) == 1 and offered(b) == 1)
        seen = []
        for via in (a, b):
            status, body = await api(via, "GET", "/api/stats/live", "Boss")
            assert status == 200, body
            assert body["pbxs"] == {"paris": "A", "lyon": "B"} and "missing" not in body
            seen.append({by: body[by] for by in ("queue", "tier", "agent", "hour")})
        assert seen[0] == seen[1]  # the same figures whichever instance is asked
        (queue,) = seen[0]["queue"].values()
        assert queue["offered"] == 2 and queue["answered"] == 2
        assert queue["service_level"] is not None


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_with_two_pbxs_on_two_instances_each_action_reaches_its_pbx_from_either_instance(
    db_url: str, prefix: str
) -> None:
    async with (
        AsyncExitStack() as stack,
        FakeAmiServer(queues={"tier1": ["PJSIP/1001"]}) as paris,
        FakeAmiServer(queues={"tier1": ["PJSIP/1001"]}) as lyon,
        aiohttp.ClientSession() as session,
    ):
        api = Api(session)
        a, b = await two_instances(stack, db_url, prefix, paris, lyon)
        for who, via in (("Lyon Agent", a), ("Paris Agent", b), ("Lyon Agent", b)):
            status, body = await api(via, "POST", "/api/agent/pause", who, json={"paused": True})
            assert status == 200, (who, body)
        status, body = await api(
            a, "POST", "/api/calls/originate", "Lyon Agent", json={"number": "+442071234567"}
        )
        assert status == 202, body
        await lyon.wait_for_action("Originate")
        await asyncio.sleep(0.2)
        assert sent(lyon) == ["queuepause", "queuepause", "originate"]
        assert sent(paris) == ["queuepause"]
        assert paris.logins == 1 and lyon.logins == 1

        status, body = await api(a, "GET", "/healthz")
        assert status == 200, body
        leases = {p["pbx"]: (p["lease"], p["ami"]) for p in body["pbxs"]}
        assert leases == {"paris": ("held", True), "lyon": ("standby", False)}
        metrics = await (await session.get(f"http://127.0.0.1:{a.http_port}/metrics")).text()
        assert 'cti_pbx_ingested{pbx="paris"} 1.0' in metrics
        assert 'cti_pbx_ingested{pbx="lyon"} 0.0' in metrics


def test_figures_of_pbxs_on_two_instances_merge_into_the_figures_of_all_their_calls() -> None:
    paris = {"offered": 4, "answered": 3, "short_abandoned": 0, "answered_in_sl": 3}
    paris |= {"asa_s": 10.0, "aht_s": 100.0, "p90_answer_s": 12.0, "longest_wait_s": 30.0}
    lyon = {"offered": 2, "answered": 1, "short_abandoned": 1, "answered_in_sl": 0}
    lyon |= {"asa_s": 40.0, "aht_s": 200.0, "p90_answer_s": 40.0, "longest_wait_s": 50.0}
    part = {"now": 5.0, "day_start": 0.0, "tier": {}, "agent": {}, "hour": {}}
    merged = merge_live([part | {"queue": {"tier1": paris}}, part | {"queue": {"tier1": lyon}}])
    tier1 = merged["queue"]["tier1"]
    assert tier1["offered"] == 6 and tier1["answered"] == 4 and tier1["answered_in_sl"] == 3
    assert tier1["service_level"] == 0.6  # 3 answered in time of 6 offered less 1 short abandon
    assert tier1["asa_s"] == 17.5  # (3 × 10 + 1 × 40) / 4
    assert tier1["aht_s"] == 125.0
    assert tier1["longest_wait_s"] == 50.0 and tier1["p90_answer_s"] == 40.0
    # One instance's figures are given as they are; yesterday's part is left out.
    assert merge_live([part | {"queue": {"tier1": paris}}])["queue"]["tier1"] == paris
    yesterday = part | {"day_start": -86400.0, "queue": {"tier1": lyon}}
    assert merge_live([part | {"queue": {"tier1": paris}}, yesterday])["queue"]["tier1"] == paris


def test_agent_time_and_outbound_calls_of_two_instances_merge() -> None:
    """An agent on both PBXs: times summed, occupancy recomputed: 900 s handled of
    (3,600 + 1,800) logged in less (300 + 300) paused = 900 / 4,800 = 0.1875. Outbound calls
    summed, the mean talk weighted by the answered calls: (2 × 60 + 1 × 150) / 3 = 90."""
    part = {"now": 5.0, "day_start": 0.0, "queue": {}, "tier": {}, "agent": {}, "hour": {}}
    ada = {
        "calls": 3,
        "handle_s": 600.0,
        "login_s": 3600.0,
        "pause_s": 300.0,
        "pause_by_reason": {"lunch": 300.0},
        "occupancy": 0.1818,
    }
    ada_lyon = {
        "calls": 1,
        "handle_s": 300.0,
        "login_s": 1800.0,
        "pause_s": 300.0,
        "pause_by_reason": {"lunch": 200.0, "training": 100.0},
        "occupancy": 0.2,
    }
    bob = {"calls": 0, "handle_s": 0.0, "login_s": 60.0, "pause_s": 0.0,
           "pause_by_reason": {}, "occupancy": 0.0}  # fmt: skip
    paris = part | {
        "agents": {"Ada": ada},
        "outbound": {"calls": 3, "answered": 2, "talk_s": 120.0, "avg_talk_s": 60.0},
    }
    lyon = part | {
        "agents": {"Ada": ada_lyon, "Bob": bob},
        "outbound": {"calls": 1, "answered": 1, "talk_s": 150.0, "avg_talk_s": 150.0},
    }
    merged = merge_live([paris, lyon])
    assert merged["agents"] == {
        "Ada": {
            "calls": 4,
            "handle_s": 900.0,
            "login_s": 5400.0,
            "pause_s": 600.0,
            "pause_by_reason": {"lunch": 500.0, "training": 100.0},
            "occupancy": 0.1875,
        },
        "Bob": bob,
    }
    assert merged["outbound"] == {"calls": 4, "answered": 3, "talk_s": 270.0, "avg_talk_s": 90.0}
    assert merge_live([paris])["agents"] == {"Ada": ada}  # one instance: as it is
    assert merge_live([paris])["outbound"] == paris["outbound"]


class _Instances:
    """Who holds each PBX, and how each instance answers ``live_stats`` (B never does)."""

    def __init__(self, holders: dict[str, str | None], figures: dict[str, Any]) -> None:
        self._holders, self._figures = holders, figures
        self.asked: list[str] = []

    async def holders(self, pbx_ids: list[str]) -> dict[str, str | None]:
        return {p: self._holders[p] for p in pbx_ids}

    async def ask(self, holder: str, name: str) -> Any:
        self.asked.append(holder)
        if holder not in self._figures:
            await asyncio.Event().wait()  # alive, holds its lease, does not answer
        return self._figures[holder]


async def test_live_statistics_name_a_silent_instances_pbx_and_give_the_others_at_once() -> None:
    part = {"now": 5.0, "day_start": 0.0, "tier": {}, "agent": {}, "hour": {}}
    paris = {"offered": 4, "answered": 3, "short_abandoned": 0, "answered_in_sl": 3}
    nice = {"offered": 2, "answered": 2, "short_abandoned": 0, "answered_in_sl": 2}
    instances = _Instances(
        {"paris": "A", "lyon": "B", "nice": "C", "lille": None},
        {"C": part | {"queue": {"tier1": nice}}},
    )
    loop = asyncio.get_running_loop()
    started_at = loop.time()
    async with asyncio.timeout(5.0):
        got = await live_everywhere(
            instances,
            ["paris", "lyon", "nice", "lille"],
            lambda: part | {"queue": {"tier1": paris}},
            "A",
        )
    assert loop.time() - started_at < 3.0  # B's silence cost its own wait, not the relay's
    assert got["queue"]["tier1"]["offered"] == 6  # A's and C's calls
    assert got["missing"] == ["lille", "lyon"]  # nobody holds lille; B did not answer
    assert sorted(instances.asked) == ["B", "C"]  # A answered from its own memory


async def test_an_instance_that_never_answers_is_a_timeout_of_the_relay_not_of_the_redis_socket(
    prefix: str,
) -> None:
    # redis-py reads with a socket timeout (5 s by default) shorter than the relay's 10 s:
    # one BLPOP of the whole wait would fail as a Redis error, a 500 instead of the 504.
    client = aioredis.from_url(REDIS_URL, socket_timeout=0.5)
    silent = client.pubsub()
    await silent.subscribe(f"{prefix}:actions:B")  # B listens, and never replies
    relay = ActionRelay(client, prefix, "A", timeout_s=1.2)
    await client.set(f"{prefix}:lease:lyon", "B 7")
    loop = asyncio.get_running_loop()
    started_at = loop.time()
    try:
        with pytest.raises(AmiError, match=r"no answer from instance B within 1\.2 s"):
            await relay.call("lyon", "queue_pause", ["PJSIP/1001", True], {})
        assert loop.time() - started_at >= 1.2
    finally:
        await silent.aclose()
        await client.aclose()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_after_a_takeover_live_statistics_still_count_the_calls_ended_before_it(
    db_url: str, prefix: str, traces_dir: Path
) -> None:
    events = on_today(read_ami_events(traces_dir / "asterisk22" / "answered_tier1.ami"))
    async with (
        AsyncExitStack() as stack,
        FakeAmiServer() as pbx,
        aiohttp.ClientSession() as session,
    ):
        api = Api(session)

        async def holds(d: Daemon) -> None:
            await eventually(ingesting(d, "pbx1"))

        async def stands_by(_d: Daemon) -> None:
            return None

        one = {"pbx1": pbx.port}
        a = await started(stack, instance("A", db_url, prefix, pbxs=one, ingests=[]), db_url, holds)
        b = await started(
            stack, instance("B", db_url, prefix, pbxs=one, ingests=[]), db_url, stands_by
        )
        await eventually(lambda: bool(getattr(a.parts.ami, "connected", False)))
        await pbx.play(events)  # a whole call, ingested by A: its legs written as it ended
        assert a.parts.supervision is not None and b.parts.supervision is not None
        await eventually(lambda: offered(a) == 1)
        assert await a.parts.supervision.recorder.flush(10.0)  # type: ignore[union-attr]

        await a.stop()  # B takes the PBX over
        await eventually(ingesting(b, "pbx1"))
        await eventually(lambda: offered(b) == 1)  # once B has taken the calls back
        status, body = await api(b, "GET", "/api/stats/live", "Boss")
        assert status == 200 and body["pbxs"] == {"pbx1": "B"}, body
        (queue,) = body["queue"].values()
        assert queue["offered"] == 1 and queue["answered"] == 1  # today's, not since the takeover


def on_today(events: list[dict[str, str]]) -> list[dict[str, str]]:
    """A recorded call as if it happened today (at the same time of day, UTC)."""
    day = 86400.0
    days = time.time() // day - float(events[0]["Timestamp"]) // day
    return [
        e | {"Timestamp": f"{float(e['Timestamp']) + days * day:.6f}"} if "Timestamp" in e else e
        for e in events
    ]


def offered(d: Daemon) -> int:
    assert d.parts.supervision is not None
    return sum(f["offered"] for f in d.parts.supervision.live_stats()["queue"].values())
