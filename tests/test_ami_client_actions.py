"""AmiClient actions against the fake Asterisk 22 AMI: answers, Asterisk's errors verbatim,
timeouts, no connection, and actions in flight when the link drops (never re-sent)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from fakes.ami_server import AmiUser, FakeAmiServer
from test_ami_client import ami_config, is_, next_item

from cti.ami.client import AmiClient
from cti.ami.errors import (
    AmiActionError,
    AmiConnectionLost,
    AmiNotConnected,
    AmiOriginateFailed,
    AmiTimeout,
)
from cti.ami.stream import Resynced

CALLER = "Local/08005550100@from-pstn-00000004;2"
AGENT = "Local/1002@agents-00000005;1"


@pytest.fixture
async def server() -> AsyncIterator[FakeAmiServer]:
    users = {
        "cti": AmiUser("cti-secret"),
        "cti-readonly": AmiUser("readonly-secret", read="call,agent", write="none"),
    }
    async with FakeAmiServer(users=users, unreachable=["Local/99999@nowhere"]) as ami:
        for n in ("1001", "1002"):
            ami.state.add_member("tier1", f"Local/{n}@agents/n", f"Agent {n}")
        ami.state.add_channel(CALLER, CallerIDNum="+442071234567")
        ami.state.add_channel(AGENT)
        ami.state.add_bridge(channels=[CALLER, AGENT])
        ami.state.add_channel("Local/08005550100@from-pstn-0000000a;2")
        yield ami


@pytest.fixture
async def client(server: FakeAmiServer) -> AsyncIterator[AmiClient]:
    ami = AmiClient(ami_config(server, action_timeout_s=0.5))
    await ami.start()
    yield ami
    await ami.stop()


async def test_async_originate_returns_its_originate_response(server, client):
    result = await client.originate(
        "Local/08005550100@from-pstn",
        context="caller-sim",
        exten="talk",
        caller_id='"" <+442071234567>',
        variables={"LAB_CALLER_HOLD": "0", "CTI_NOTE": "vip"},
    )
    assert result.success and result.reason == 4 and result.reason_text == "answered"
    assert result.channel.startswith("Local/08005550100@from-pstn-") and result.uniqueid
    sent = server.actions_named("Originate")[0].headers
    assert sent["async"] == "true" and sent["variable"] == "LAB_CALLER_HOLD=0\nCTI_NOTE=vip"
    assert result.fields["ActionID"] == sent["actionid"]


async def test_originate_that_cannot_be_placed_raises_with_the_reason(client):
    with pytest.raises(AmiOriginateFailed, match=r"call not placed: failed .*\(Reason: 0\)"):
        await client.originate("Local/99999@nowhere", context="caller-sim", exten="talk")
    with pytest.raises(AmiOriginateFailed):
        await client.originate("Bogus/123", context="caller-sim", exten="talk")


async def test_originate_pending_when_the_link_drops_fails_and_is_never_resent(server, client):
    await next_item(client, is_(Resynced))
    server.unanswered.add("originate")
    call = asyncio.create_task(client.originate("PJSIP/alice", context="agents", exten="1002"))
    await server.wait_for_action("Originate")
    await server.drop_connections()
    with pytest.raises(AmiConnectionLost, match="not re-sent") as lost:
        await call
    assert lost.value.may_have_run and lost.value.action == "Originate"
    await next_item(client, is_(Resynced))  # reconnected and resynced
    await asyncio.sleep(0.1)
    assert len(server.actions_named("Originate")) == 1
    assert len(server.actions_named("Login")) == 2


async def test_redirect_and_transfers_answer_with_asterisk_texts(client):
    waiting = "Local/08005550100@from-pstn-0000000a;2"
    ok = await client.redirect(waiting, context="transfer", exten="1002")
    assert ok.message == "Redirect successful"
    assert (await client.blind_transfer(AGENT, exten="8002", context="transfer")).message == (
        "Transfer succeeded"
    )
    assert (await client.atxfer(AGENT, exten="8003", context="transfer")).message == (
        "Atxfer successfully queued"
    )
    with pytest.raises(AmiActionError, match="Channel does not exist: Local/nothing") as err:
        await client.redirect("Local/nothing@nowhere-00000000;2", context="transfer", exten="1")
    assert err.value.action == "Redirect"
    with pytest.raises(AmiActionError, match=r"^BlindTransfer: Transfer invalid$"):
        await client.blind_transfer(
            "Local/08005550100@from-pstn-0000000a;2", exten="8002", context="transfer"
        )
    with pytest.raises(AmiActionError, match="Channel specified does not exist"):
        await client.atxfer("Local/nothing@nowhere-00000000;1", exten="8003", context="transfer")


async def test_hangup_setvar_getvar(client):
    set_ = await client.setvar("CTI_NOTE", "vip follow-up", channel=CALLER)
    assert set_.message == "Variable Set"
    assert await client.getvar("CTI_NOTE", channel=CALLER) == "vip follow-up"
    assert await client.getvar("NO_SUCH_VARIABLE") == ""
    with pytest.raises(AmiActionError, match=r"^Getvar: No such channel$"):
        await client.getvar("X", channel="Local/nothing@nowhere-00000000;2")
    assert (await client.hangup(CALLER, cause=16)).message == "Channel Hungup"
    with pytest.raises(AmiActionError, match=r"^Hangup: No such channel$"):
        await client.hangup(CALLER)


async def test_queue_member_actions_and_their_errors(client):
    member = "Local/1004@agents/n"
    added = await client.queue_add("tier1", member, member_name="Agent 1004", paused=False)
    assert added.message == "Added interface to queue"
    with pytest.raises(AmiActionError, match="Unable to add interface: Already there"):
        await client.queue_add("tier1", member)
    with pytest.raises(AmiActionError, match="Unable to add interface to queue: No such queue"):
        await client.queue_add("no-such-queue", member)
    paused = await client.queue_pause(member, True, queue="tier1", reason="lunch")
    assert paused.message == "Interface paused successfully"
    assert (await client.queue_pause(member, False)).message == "Interface unpaused successfully"
    with pytest.raises(AmiActionError, match="Interface not found"):
        await client.queue_pause("Local/9999@agents/n", True)
    assert (await client.queue_remove("tier1", member)).message == "Removed interface from queue"
    with pytest.raises(AmiActionError, match="Unable to remove interface: Not there"):
        await client.queue_remove("tier1", member)
    with pytest.raises(AmiActionError, match="Member not dynamic"):
        await client.queue_remove("tier1", "Local/1001@agents/n")


async def test_queue_member_events_follow_the_action(client):
    await next_item(client, is_(Resynced))
    await client.queue_add("tier1", "Local/1004@agents/n", member_name="Agent 1004")
    event = await next_item(client, lambda e: isinstance(e, dict))
    assert event["Event"] == "QueueMemberAdded" and event["MemberName"] == "Agent 1004"  # type: ignore[index]


async def test_queue_status_lists_items_and_an_unknown_queue_is_empty(client):
    items = await client.queue_status("tier1")
    assert [i["Event"] for i in items] == ["QueueParams", "QueueMember", "QueueMember"]
    assert await client.queue_status("no-such-queue") == []
    response, channels = await client.send_list_action({"Action": "CoreShowChannels"})
    assert response.message == "Channels will follow" and len(channels) == 3
    assert response.complete is not None and response.complete["ListItems"] == "3"


async def test_command_returns_output_lines_and_explains_unknown_commands(client):
    lines = await client.command("core show uptime")
    assert lines[0].startswith("System uptime: ") and lines[1].startswith("Last reload: ")
    with pytest.raises(AmiActionError, match="No such command 'no such cli command'"):
        await client.command("no such cli command")


async def test_unknown_action_error_is_asterisks_message(client):
    with pytest.raises(AmiActionError) as err:
        await client.send_action({"Action": "FooBar"})
    assert err.value.message == (
        "Invalid/unknown command: FooBar. Use Action: ListCommands to show available commands."
    )


async def test_unanswered_action_times_out_and_the_link_stays_up(server, client):
    server.unanswered.add("getvar")
    with pytest.raises(AmiTimeout, match=r"Getvar: no answer from Asterisk within 0.2s"):
        await client.send_action({"Action": "Getvar", "Variable": "X"}, timeout=0.2)
    assert client.connected and await client.ping() >= 0


async def test_actions_without_a_connection_fail_at_once(server):
    client = AmiClient(ami_config(server))
    with pytest.raises(AmiNotConnected):
        await client.ping()
    await client.start()
    await client.stop()
    with pytest.raises(AmiNotConnected, match=r"not connected to Asterisk AMI at 127.0.0.1"):
        await client.hangup(CALLER)


async def test_read_only_user_gets_permission_denied_and_still_resyncs_queues(server):
    client = AmiClient(ami_config(server, username="cti-readonly", secret="readonly-secret"))
    await client.start()
    resynced = await next_item(client, is_(Resynced))
    kinds = {i["Event"] for i in resynced.items}  # type: ignore[union-attr]
    assert "QueueMember" in kinds and "CoreShowChannel" not in kinds  # CoreShowChannels denied
    with pytest.raises(AmiActionError, match=r"^Originate: Permission denied$"):
        await client.originate("PJSIP/alice", context="agents", exten="1002")
    with pytest.raises(AmiActionError, match="Permission denied"):
        await client.queue_pause("Local/1002@agents/n", True)
    assert client.connected
    await client.stop()
