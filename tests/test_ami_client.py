"""AmiClient over real TCP against the fake Asterisk 22 AMI: login, resync, reconnect, keepalive."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from fakes.ami_server import AmiUser, FakeAmiServer, read_ami_events
from structlog.testing import capture_logs

from cti.ami.client import AmiClient
from cti.ami.errors import AmiAuthError
from cti.ami.stream import Connected, Disconnected, Resynced, StreamItem
from cti.config import AmiConfig


def ami_config(server: FakeAmiServer, **overrides: Any) -> AmiConfig:
    values: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "username": "cti",
        "secret": "cti-secret",
        "connect_timeout_s": 5.0,  # a loaded CI machine can take over a second to answer
        "action_timeout_s": 1.0,
        "ping_interval_s": 30.0,
        "ping_timeout_s": 1.0,
        "reconnect_initial_s": 0.02,
        "reconnect_max_s": 0.1,
    }
    values.update(overrides)
    return AmiConfig(**values)


async def next_item(
    client: AmiClient, accept: Callable[[StreamItem], bool] = lambda _: True
) -> StreamItem:
    """The next stream item ``accept`` says yes to (others are skipped), within 3 s."""
    async with asyncio.timeout(3.0):
        async for item in client.events():
            if accept(item):
                return item
    raise AssertionError("event stream ended")


def is_(kind: type) -> Callable[[StreamItem], bool]:
    return lambda item: isinstance(item, kind)


@pytest.fixture
async def server() -> AsyncIterator[FakeAmiServer]:
    queues = {"tier1": ["Local/1001@agents/n"]}
    async with FakeAmiServer(auth_fail_delay_s=0.05, queues=queues) as ami:
        yield ami


@pytest.fixture
async def client(server: FakeAmiServer) -> AsyncIterator[AmiClient]:
    ami = AmiClient(ami_config(server), rng=lambda: 1.0)
    await ami.start()
    yield ami
    await ami.stop()


async def test_logs_in_with_the_configured_events_and_filters_out_varset_and_newexten(
    server, client
):
    assert isinstance(await next_item(client), Connected)
    assert isinstance(await next_item(client), Resynced)
    login = server.actions_named("Login")[0].headers
    assert login["username"] == "cti" and login["events"] == "call,agent"
    assert [a.headers["filter"] for a in server.actions_named("Filter")] == [
        "!Event: VarSet",
        "!Event: Newexten",
    ]
    await server.play(
        [
            {"Event": "VarSet", "Privilege": "dialplan,all", "Variable": "X", "Value": "1"},
            {"Event": "Newexten", "Privilege": "dialplan,all", "Channel": "PJSIP/a-1"},
            {"Event": "VarSet", "Privilege": "call,all", "Variable": "Y", "Value": "2"},
            # Not filtered by Asterisk but read by nothing: dropped unparsed on arrival.
            {"Event": "DeviceStateChange", "Privilege": "call,all", "Device": "PJSIP/a"},
            {"Event": "Newchannel", "Privilege": "call,all", "Channel": "PJSIP/a-1"},
        ]
    )
    assert (await next_item(client))["Event"] == "Newchannel"


async def test_wrong_secret_fails_start_at_once_without_retrying(server):
    client = AmiClient(ami_config(server, secret="wrong-secret"))
    with pytest.raises(AmiAuthError, match="refused user 'cti': Authentication failed"):
        await client.start()
    await asyncio.sleep(0.2)
    assert server.connections_accepted == 1
    await client.stop()


async def test_md5_challenge_login_never_sends_the_secret(server):
    client = AmiClient(ami_config(server, auth="md5"))
    await client.start()
    assert client.connected
    login = server.actions_named("Login")[0].headers
    assert "secret" not in login and len(login["key"]) == 32
    assert server.actions_named("Challenge")[0].headers["authtype"] == "MD5"
    await client.stop()


async def test_asterisk_down_at_start_is_retried_in_the_background(server):
    await server.refuse_connections(0.3)
    client = AmiClient(ami_config(server))
    await client.start()  # does not raise: Asterisk may come up after the daemon
    assert not client.connected
    await client.wait_connected(timeout=3)
    assert isinstance(await next_item(client), Connected)
    await client.stop()


async def test_reconnects_after_a_drop_with_capped_exponential_backoff(server, client):
    await next_item(client, is_(Resynced))
    with capture_logs() as logs:
        await server.refuse_connections(0.5)
        await server.drop_connections()  # Asterisk killed: EOF, then refused
        gone = await next_item(client)
        assert isinstance(gone, Disconnected) and "EOF" in gone.reason
        assert isinstance(await next_item(client), Connected)
    delays = [
        e["retry_in_s"] for e in logs if e["event"] in ("ami.disconnected", "ami.reconnect_failed")
    ]
    # rng = 1.0: the full delay, doubling from reconnect_initial_s up to reconnect_max_s
    assert delays[:4] == [0.02, 0.04, 0.08, 0.1]
    assert set(delays[4:]) <= {0.1}


def test_backoff_jitter_stays_within_half_and_full_delay(server):
    config = ami_config(server, reconnect_initial_s=1.0, reconnect_max_s=8.0)
    low, high = AmiClient(config, rng=lambda: 0.0), AmiClient(config, rng=lambda: 1.0)
    assert [low._backoff(n) for n in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert [high._backoff(n) for n in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]


async def test_resync_after_reconnect_mid_call_reports_what_asterisk_has_now(
    server, client, protocol_dir
):
    await next_item(client, is_(Resynced))
    events = read_ami_events(protocol_dir.parent / "answered_tier1.ami")
    up_to_bridge = next(i for i, e in enumerate(events) if e["Event"] == "BridgeEnter") + 2
    await server.play(events[:up_to_bridge])
    await next_item(client, lambda e: isinstance(e, dict) and e.get("Event") == "BridgeEnter")

    await server.drop_connections()
    await next_item(client, is_(Disconnected))
    # While we were away: one more caller waits in tier1.
    server.state.add_caller("tier1", "PJSIP/carol-00000009")
    resynced = await next_item(client, is_(Resynced))
    assert isinstance(resynced, Resynced)

    channels = {i["Channel"] for i in resynced.items if i["Event"] == "CoreShowChannel"}
    assert channels == set(server.state.channels) and "PJSIP/carol-00000009" in channels
    bridged = [i for i in resynced.items if i["Event"] == "BridgeInfoChannel"]
    bridge_id, bridge = next(iter(server.state.bridges.items()))
    assert [i["Channel"] for i in bridged] == bridge.channels and len(bridged) == 2
    assert {i["BridgeUniqueid"] for i in bridged} == {bridge_id}
    entries = [i for i in resynced.items if i["Event"] == "QueueEntry"]
    assert [(e["Queue"], e["Channel"]) for e in entries][-1] == ("tier1", "PJSIP/carol-00000009")
    kinds = [i["Event"] for i in resynced.items]
    assert (
        kinds.index("CoreShowChannel") < kinds.index("QueueParams") < kinds.index("BridgeListItem")
    )


async def test_events_arriving_during_resync_follow_resynced_in_order(server):
    server.delays["coreshowchannels"] = 0.3
    client = AmiClient(ami_config(server))
    start = asyncio.create_task(client.start())
    await server.wait_for_logins(1)
    played = [{"Event": "Newchannel", "Privilege": "call,all", "Seq": str(n)} for n in range(5)]
    await server.play(played)
    await start
    items = [await next_item(client) for _ in range(7)]
    assert isinstance(items[0], Connected) and isinstance(items[1], Resynced)
    assert [e["Seq"] for e in items[2:]] == ["0", "1", "2", "3", "4"]  # type: ignore[index]
    await client.stop()


async def test_ping_watchdog_drops_a_silent_link_and_reconnects(server):
    client = AmiClient(ami_config(server, ping_interval_s=0.1, ping_timeout_s=0.2))
    await client.start()
    await next_item(client, is_(Resynced))
    server.go_silent()  # the TCP link stays up but nothing comes back
    gone = await next_item(client, is_(Disconnected))
    assert isinstance(gone, Disconnected) and "no answer to Ping within 0.2s" in gone.reason
    await next_item(client, is_(Resynced))  # new connections answer again
    assert client.connected
    await client.stop()


async def test_asterisk_restart_disconnects_then_resyncs_with_the_calls_gone(server):
    client = AmiClient(ami_config(server, events="call,agent,system"))
    await client.start()
    server.state.add_channel("PJSIP/alice-00000001")
    await next_item(client, is_(Resynced))
    await server.restart(down_s=0.2)
    shutdown = await next_item(client, lambda e: isinstance(e, dict) and e["Event"] == "Shutdown")
    assert shutdown["Restart"] == "True"  # type: ignore[index]
    gone = await next_item(client, is_(Disconnected))
    assert "Asterisk shut down (Cleanly, restart: True)" in gone.reason  # type: ignore[union-attr]
    resynced = await next_item(client, is_(Resynced))
    assert not [i for i in resynced.items if i["Event"] == "CoreShowChannel"]  # type: ignore[union-attr]
    await client.stop()


async def test_malformed_frames_do_not_kill_the_connection(server, client):
    await next_item(client, is_(Resynced))
    await server.send_raw(
        b"this line has no colon\r\n\r\n"
        b"Event: Weird\r\nno colon either\r\n\r\n"
        b"\xff\xfe: \xc3\r\n\r\n"
        b"Response: Success\r\nActionID: nobody-asked\r\n\r\n"
    )
    await server.play([{"Event": "Newchannel", "Privilege": "call,all", "Channel": "PJSIP/a-1"}])
    weird = await next_item(client)
    assert isinstance(weird, dict) and weird["Event"] == "Weird"
    assert (await next_item(client))["Event"] == "Newchannel"  # type: ignore[index]
    assert client.connected and await client.ping() >= 0
    assert server.connections_accepted == 1


async def test_credentials_refused_on_reconnect_retry_slowly_and_log_an_error(server, client):
    await next_item(client, is_(Resynced))
    server.users["cti"] = AmiUser("rotated-secret")  # the PBX admin changed the secret
    with capture_logs() as logs:
        await server.drop_connections()
        await next_item(client, is_(Disconnected))
        await asyncio.sleep(0.5)
        failures = [e for e in logs if e["event"] == "ami.auth_failed"]
        assert failures and all(e["log_level"] == "error" for e in failures)
        assert {e["retry_in_s"] for e in failures} == {0.1}  # reconnect_max_s, not the backoff
        assert "refused user 'cti'" in failures[0]["error"]
        # each attempt: 0.05 s until Asterisk answers "Authentication failed", then 0.1 s
        assert len(failures) <= 4
    server.users["cti"] = AmiUser("cti-secret")
    assert isinstance(await next_item(client), Connected)


async def test_stop_ends_the_event_stream_for_every_reader(server, client):
    await next_item(client, is_(Resynced))
    await client.stop()
    assert [item async for item in client.events()] == []
    assert [item async for item in client.events()] == []
    assert not client.connected


async def test_a_link_lost_during_login_is_retried_not_taken_for_wrong_credentials(server):
    server.unanswered.add("login")
    client = AmiClient(ami_config(server))
    starting = asyncio.create_task(client.start())
    await server.wait_for_action("Login")
    await server.drop_connections()
    await starting  # no AmiAuthError: the link was lost, the secret was never refused
    server.unanswered.discard("login")
    await client.wait_connected(timeout=3)
    await client.stop()


async def test_a_server_that_never_sends_the_banner_is_left_and_retried(server):
    server.go_silent(new_connections=True)
    client = AmiClient(ami_config(server, connect_timeout_s=0.2))
    await client.start()  # timed out waiting for the banner: retried in the background
    assert not client.connected
    server.speak_again()
    await client.wait_connected(timeout=3)
    await asyncio.sleep(0.05)
    assert server.connections_accepted > 1
    assert server.open_connections == 1  # the silent attempts were closed, not leaked
    await client.stop()
