"""panoramisk 1.4's measured defects, shown on its stock ``Manager`` over real TCP, and shown
guarded on ``CtiManager`` (our subclass of that ``Manager``) and on ``AmiClient`` built on it;
plus: the client's connections are opened by panoramisk's ``Manager.connect``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from fakes.ami_server import FakeAmiServer
from panoramisk import Manager
from panoramisk.actions import Action
from test_ami_client import ami_config, is_, next_item

from cti.ami.client import AmiClient
from cti.ami.errors import AmiConnectionLost, AmiTimeout
from cti.ami.manager import CtiManager
from cti.ami.protocol import AmiProtocol
from cti.ami.stream import Connected, Disconnected, Resynced

BOOM_THEN_NEWCHANNEL = (
    b"Event: Boom\r\nPrivilege: call,all\r\n\r\n"
    b"Event: Newchannel\r\nPrivilege: call,all\r\nChannel: PJSIP/a-1\r\n\r\n"
)
ZOE = b"Event: Newchannel\r\nPrivilege: call,all\r\nCallerIDName: Zo\xc3\xabl\r\n\r\n"
SPLIT = ZOE.index(b"\xab")  # between the two bytes of "ë"
ORIGINATE = {"Action": "Originate", "Channel": "PJSIP/alice", "Exten": "1002", "Context": "agents"}


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


async def logged_in_manager(
    server: FakeAmiServer, sink: Callable[[dict[str, str]], None], **config: Any
) -> CtiManager:
    """A bare ``CtiManager`` (no ``AmiClient`` supervising it) logged in to the fake."""
    manager = CtiManager(ami_config(server, **config), sink)
    await manager.open()
    await manager.login()
    return manager


# 0. The AMI client's connections are panoramisk's: opened by Manager.connect().


async def test_the_client_connects_through_panoramisks_manager(server, monkeypatch):
    connects: list[Manager] = []
    stock_connect = Manager.connect

    def spy(self: Manager, *args: Any, **kwargs: Any) -> Any:
        connects.append(self)
        return stock_connect(self, *args, **kwargs)

    monkeypatch.setattr(Manager, "connect", spy)
    client = AmiClient(ami_config(server))
    await client.start()
    assert isinstance(await next_item(client), Connected)
    manager = client.manager
    assert isinstance(manager, Manager) and isinstance(manager.protocol, AmiProtocol)
    assert connects == [manager]  # one real TCP link to the fake, opened by panoramisk
    assert server.connections_accepted == 1 and server.open_connections == 1
    assert await client.ping() >= 0  # actions go through the Manager to our protocol

    await server.drop_connections()
    await next_item(client, is_(Resynced))
    assert connects == [manager, manager]  # the reconnect, too
    await client.stop()


async def test_ctimanager_leaves_a_failed_connect_to_its_owner_and_sets_no_ping_timer(server):
    manager = CtiManager(ami_config(server), lambda e: None)
    manager.reconnect_timeout = 0  # stock connection_made would retry at once, forever
    await server.refuse_connections(0.2)
    with pytest.raises(OSError):
        await manager.open()
    await asyncio.sleep(0.4)  # listening again
    assert server.connections_accepted == 0
    await manager.open()
    assert server.connections_accepted == 1
    assert manager.pinger is None and not manager.authenticated  # no timer, no login sent
    manager.close("test over")


def test_ctimanager_keeps_panoramisks_connect_and_overrides_the_defective_parts():
    assert CtiManager.connect is Manager.connect
    for name in ("connection_made", "connection_lost", "ping", "send_awaiting_actions"):
        assert getattr(CtiManager, name) is not getattr(Manager, name), name


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
    await server.send_raw(BOOM_THEN_NEWCHANNEL)  # one write: both events in one read
    await server.wait_for_logins(2)  # the connection died and panoramisk logged in again
    assert seen == ["Boom"]  # Newchannel, read in the same chunk, is lost


async def test_ctimanager_a_failing_event_sink_loses_nothing_and_keeps_the_link(server):
    seen: list[str] = []

    def sink(event: dict[str, str]) -> None:
        seen.append(event["Event"])
        if event["Event"] == "Boom":
            raise RuntimeError("a bug in the sink")

    manager = await logged_in_manager(server, sink)
    await server.send_raw(BOOM_THEN_NEWCHANNEL)  # one write: both events in one read
    assert (await manager.call({"Action": "Ping"})).get("Ping") == "Pong"
    assert seen[-2:] == ["Boom", "Newchannel"] and manager.connected
    assert server.connections_accepted == 1
    manager.close("test over")


async def test_ctimanager_refuses_callbacks_that_would_run_inside_data_received(server):
    manager = CtiManager(ami_config(server), lambda event: None)
    with pytest.raises(TypeError, match=r"read events from AmiClient\.events"):
        manager.register_event("*", lambda m, e: None)


async def test_ours_a_consumer_that_fails_does_not_touch_the_connection(server, client):
    async def consumer() -> None:
        async for _ in client.events():
            raise RuntimeError("a bug in a consumer")

    await server.send_raw(BOOM_THEN_NEWCHANNEL)
    with pytest.raises(RuntimeError, match="a bug in a consumer"):
        await asyncio.wait_for(consumer(), 2)
    assert (await next_item(client))["Event"] == "Newchannel"  # type: ignore[index]
    assert client.connected and server.connections_accepted == 1


# 2. Its Ping never checks for an answer: a silent dead link is never noticed.


async def test_panoramisk_pings_into_a_dead_link_forever(server, panoramisk):
    server.go_silent()
    for _ in range(3):
        panoramisk.ping()
        await asyncio.sleep(0.1)
    assert len(server.actions_named("Ping")) == 0  # silent: nothing answered or processed
    assert panoramisk._connected and not panoramisk.protocol.closed  # still believes it is up


async def test_ctimanager_ping_checks_the_answer_and_its_watchdog_drops_a_dead_link(server):
    manager = await logged_in_manager(server, lambda e: None, ping_interval_s=0.05)
    assert await manager.ping(0.5) >= 0
    server.go_silent()
    with pytest.raises(AmiTimeout, match=r"Ping: no answer from Asterisk within 0\.1s"):
        await manager.ping(0.1)
    assert manager.protocol is not None
    await asyncio.wait_for(manager.watchdog(), 3)  # pings, gets no Pong, aborts the link
    reason = await asyncio.wait_for(manager.protocol.closed, 1)
    assert "no answer to Ping" in reason and not manager.connected


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


async def test_ctimanager_keeps_a_utf8_character_split_across_reads(server):
    names: list[str] = []
    manager = await logged_in_manager(server, lambda e: names.append(e.get("CallerIDName", "")))
    await split_send(server)
    await manager.ping()  # answered after the event: the event has been handled
    assert names[-1] == "Zoël"
    manager.close("test over")


async def test_ours_keeps_a_utf8_character_split_across_reads(server, client):
    await split_send(server)
    event = await next_item(client)
    assert event["CallerIDName"] == "Zoël"  # type: ignore[index]


# 4. A pending Originate is re-sent after a reconnect: the call can be placed twice.


async def test_panoramisk_resends_a_pending_originate_after_reconnect(server, panoramisk):
    server.unanswered.add("originate")
    panoramisk.send_action(dict(ORIGINATE))
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


async def test_ctimanager_fails_an_action_in_flight_at_a_drop_and_never_resends_it(server):
    manager = await logged_in_manager(server, lambda e: None)
    manager.reconnect_timeout = 0  # stock connection_lost would reconnect at once
    server.unanswered.add("originate")
    pending = manager.send_action(dict(ORIGINATE))
    await server.wait_for_action("Originate")
    await server.drop_connections()
    with pytest.raises(AmiConnectionLost, match="not re-sent"):
        await asyncio.wait_for(pending.future, 2)
    await asyncio.sleep(0.1)
    assert server.connections_accepted == 1  # connection_lost schedules no reconnect
    assert not manager.awaiting_actions  # our protocol queues nothing to re-send
    await manager.open()  # the owner reconnects, when its backoff says so
    await manager.login()
    manager.awaiting_actions.append(Action(ORIGINATE))  # even if something were queued,
    await manager.send_awaiting_actions()  # what panoramisk runs on FullyBooted drops it
    await manager.ping()
    assert len(server.actions_named("Originate")) == 1 and not manager.awaiting_actions
    manager.close("test over")
