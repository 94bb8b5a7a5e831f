"""AmiClient meeting an Asterisk that restarts (restart_mid_call: logins accepted before the
modules are loaded, FullyBooted later) and a user that may not run a resync list
(permission_denied), over real TCP to the fake AMI server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fakes.ami_server import AmiUser, FakeAmiServer
from structlog.testing import capture_logs
from test_ami_client import ami_config, is_, next_item

from cti.ami.client import AmiClient
from cti.ami.stream import Disconnected, Resynced


@pytest.fixture
async def server() -> AsyncIterator[FakeAmiServer]:
    queues = {"tier1": ["Local/1001@agents/n"]}
    async with FakeAmiServer(auth_fail_delay_s=0.05, queues=queues) as ami:
        yield ami


async def test_with_system_events_the_resync_waits_for_fully_booted(server: FakeAmiServer) -> None:
    client = AmiClient(ami_config(server, events="call,agent,system"))
    await client.start()
    await next_item(client, is_(Resynced))
    await server.restart(down_s=0.1, loading_s=0.5)
    await next_item(client, is_(Disconnected))
    resynced = await next_item(client, is_(Resynced))
    assert resynced.refused == {}  # type: ignore[union-attr]
    assert client.resync_retries == 0  # no list was asked before Asterisk had booted
    assert [i["Queue"] for i in resynced.items if i["Event"] == "QueueParams"] == ["tier1"]  # type: ignore[union-attr]
    await client.stop()


async def test_without_system_events_a_list_asterisk_does_not_know_yet_is_asked_again(
    server: FakeAmiServer,
) -> None:
    client = AmiClient(ami_config(server, events="call,agent"))
    await client.start()
    await next_item(client, is_(Resynced))
    with capture_logs() as logs:
        await server.restart(down_s=0.1, loading_s=0.5)
        await next_item(client, is_(Disconnected))
        resynced = await next_item(client, is_(Resynced))
    assert resynced.refused == {}  # type: ignore[union-attr]
    assert client.resync_retries >= 1
    retry = next(e for e in logs if e["event"] == "ami.resync_retry")
    assert retry["actions"] == ["QueueStatus"] and retry["log_level"] == "warning"
    await client.stop()


async def test_a_refused_list_is_reported_with_the_class_the_user_lacks(
    server: FakeAmiServer,
) -> None:
    server.users["cti"] = AmiUser("cti-secret", read="call,agent", write="call,originate,agent")
    client = AmiClient(ami_config(server))
    with capture_logs() as logs:
        await client.start()
        resynced = await next_item(client, is_(Resynced))
    assert resynced.refused == {"CoreShowChannels": "Permission denied"}  # type: ignore[union-attr]
    assert not resynced.complete  # type: ignore[union-attr]
    error = next(e for e in logs if e["event"] == "ami.resync_refused")
    assert error["log_level"] == "error" and "system or reporting" in error["needs"]
    assert client.resync_retries == 0  # refused is not "not ready": never retried
    await client.stop()


async def test_resynced_carries_asterisks_clock(server: FakeAmiServer) -> None:
    server.state.clock.offset = -1000.0  # the PBX's clock differs from ours
    client = AmiClient(ami_config(server))
    await client.start()
    resynced = await next_item(client, is_(Resynced))
    assert resynced.pbx_time == pytest.approx(server.state.clock(), abs=1.0)  # type: ignore[union-attr]
    await client.stop()
