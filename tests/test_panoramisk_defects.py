"""panoramisk 1.4's measured defects, shown on its own ``Manager`` over real TCP, and shown
NOT inherited by our AMI connection (``cti.ami``), one test pair per defect."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fakes.ami_server import FakeAmiServer
from panoramisk import Manager
from test_ami_client import ami_config, is_, next_item

from cti.ami.client import AmiClient
from cti.ami.errors import AmiConnectionLost
from cti.ami.protocol import AmiProtocol
from cti.ami.stream import Disconnected, Resynced

BOOM_THEN_NEWSTATE = (
    b"Event: Boom\r\nPrivilege: call,all\r\n\r\n"
    b"Event: Newstate\r\nPrivilege: call,all\r\nChannel: PJSIP/a-1\r\n\r\n"
)
ZOE = b"Event: Newchannel\r\nPrivilege: call,all\r\nCallerIDName: Zo\xc3\xabl\r\n\r\n"
SPLIT = ZOE.index(b"\xab")  # between the two bytes of "ë"


@pytest.fixture
async def server() -> AsyncIterator[FakeAmiServer]:
    async with FakeAmiServer() as ami:
        yield ami


@pytest.fixture
async def panoramisk(server: FakeAmiServer) -> AsyncIterator[Manager]:
    """panoramisk's Manager logged in to the fake (events on, reconnect at once, no auto-ping)."""
    manager = Manager(
        loop=asyncio.get_running_loop(),
        host=server.host,
        port=server.port,
        username="cti",
        secret="cti-secret",
        ping_delay=3600,
        ping_interval=3600,
        reconnect_timeout=0,
    )
    manager.connect()
    await server.wait_for_logins(1)
    yield manager
    manager.close()


@pytest.fixture
async def client(server: FakeAmiServer) -> AsyncIterator[AmiClient]:
    ami = AmiClient(ami_config(server))
    await ami.start()
    await next_item(ami, is_(Resynced))
    yield ami
    await ami.stop()


# 1. An exception in an event callback closes the connection and loses the rest of the read.


async def test_panoramisk_a_failing_callback_kills_the_connection_and_the_rest_of_the_read(
    server, panoramisk
):
    seen: list[str] = []

    def record(manager: Manager, event: Any) -> None:
        seen.append(event["Event"])

    def explode(manager: Manager, event: Any) -> None:
        raise RuntimeError("a bug in a consumer")

    panoramisk.register_event("*", record)
    panoramisk.register_event("Boom", explode)
    await server.send_raw(BOOM_THEN_NEWSTATE)  # one write: both events in one read
    await server.wait_for_logins(2)  # the connection died and panoramisk logged in again
    assert seen == ["Boom"]  # Newstate, read in the same chunk, is lost


async def test_ours_a_failing_event_sink_loses_nothing_and_keeps_the_link(server):
    seen: list[str] = []

    def sink(event: dict[str, str]) -> None:
        seen.append(event["Event"])
        if event["Event"] == "Boom":
            raise RuntimeError("a bug in the sink")

    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(lambda: AmiProtocol(sink), server.host, server.port)
    await protocol.banner
    protocol.send({"Action": "Login", "Username": "cti", "Secret": "cti-secret"})
    await server.wait_for_logins(1)
    await server.send_raw(BOOM_THEN_NEWSTATE)
    pong = protocol.send({"Action": "Ping"})
    assert (await asyncio.wait_for(pong.future, 2)).get("Ping") == "Pong"
    assert seen[-2:] == ["Boom", "Newstate"] and protocol.is_open
    assert server.connections_accepted == 1
    protocol.close("test over")


async def test_ours_a_consumer_that_fails_does_not_touch_the_connection(server, client):
    async def consumer() -> None:
        async for _ in client.events():
            raise RuntimeError("a bug in a consumer")

    await server.send_raw(BOOM_THEN_NEWSTATE)
    with pytest.raises(RuntimeError, match="a bug in a consumer"):
        await asyncio.wait_for(consumer(), 2)
    assert (await next_item(client))["Event"] == "Newstate"  # type: ignore[index]
    assert client.connected and server.connections_accepted == 1


# 2. Its Ping never checks for an answer: a silent dead link is never noticed.


async def test_panoramisk_pings_into_a_dead_link_forever(server, panoramisk):
    server.go_silent()
    for _ in range(3):
        panoramisk.ping()
        await asyncio.sleep(0.1)
    assert len(server.actions_named("Ping")) == 0  # silent: nothing answered or processed
    assert panoramisk._connected and not panoramisk.protocol.closed  # still believes it is up


async def test_ours_a_ping_unanswered_in_time_drops_the_link_and_reconnects(server):
    client = AmiClient(ami_config(server, ping_interval_s=0.05, ping_timeout_s=0.1))
    await client.start()
    await next_item(client, is_(Resynced))
    server.go_silent()
    gone = await next_item(client, is_(Disconnected))
    assert "no answer to Ping" in gone.reason  # type: ignore[union-attr]
    await next_item(client, is_(Resynced))
    await client.stop()


# 3. A UTF-8 character split across two reads is dropped ("Zoël" -> "Zol").


async def split_send(server: FakeAmiServer) -> None:
    await server.send_raw(ZOE[:SPLIT])
    await asyncio.sleep(0.05)  # the client reads the first half on its own
    await server.send_raw(ZOE[SPLIT:])


async def test_panoramisk_drops_a_utf8_character_split_across_reads(server, panoramisk):
    names: list[str] = []
    panoramisk.register_event("Newchannel", lambda m, e: names.append(e["CallerIDName"]))
    await split_send(server)
    await asyncio.sleep(0.05)
    assert names == ["Zol"]


async def test_ours_keeps_a_utf8_character_split_across_reads(server, client):
    await split_send(server)
    event = await next_item(client)
    assert event["CallerIDName"] == "Zoël"  # type: ignore[index]


# 4. A pending Originate is re-sent after a reconnect: the call can be placed twice.


async def test_panoramisk_resends_a_pending_originate_after_reconnect(server, panoramisk):
    server.unanswered.add("originate")
    panoramisk.send_action(
        {"Action": "Originate", "Channel": "PJSIP/alice", "Exten": "1002", "Context": "agents"}
    )
    first = await server.wait_for_action("Originate")
    await server.drop_connections()
    second = await server.wait_for_action("Originate", 2)  # after the reconnect
    assert second.headers["actionid"] == first.headers["actionid"]
    assert second.conn != first.conn


async def test_ours_never_resends_an_action_in_flight_at_a_drop(server, client):
    server.unanswered.add("originate")
    call = asyncio.create_task(client.originate("PJSIP/alice", context="agents", exten="1002"))
    await server.wait_for_action("Originate")
    await server.drop_connections()
    with pytest.raises(AmiConnectionLost, match="may or may not have been executed"):
        await call
    await next_item(client, is_(Resynced))
    await asyncio.sleep(0.1)
    assert len(server.actions_named("Originate")) == 1
