"""The FastAGI server over real TCP, driven by a fake Asterisk speaking as the recordings do."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from fakes.agi_client import AgiCall, FakeAsterisk, header_block
from fakes.crm_directory import DeadDirectory, MemoryDirectory, SlowDirectory, customer
from fakes.routing import CLOSED, OPEN, routing_rules

from crm_core.types import CustomerDirectory
from cti.agi.server import FastAgiServer
from cti.routing.decisions import DecisionLog
from cti.routing.router import Router

CRM = MemoryDirectory(
    {
        "+442071234567": customer(42, case_tiers=("tier2",)),
        "+441110000001": customer(1, flags=("vip",)),
        "+441110000002": customer(2, flags=("payment_arrears",)),
        "+441110000003": customer(3, flags=("hearing_impaired",)),
        "+441110000005": customer(5, products=("fibre",)),
        "+441110000006": customer(6, language="fr"),
        "+441110000007": customer(7, orders=(("shipped", "in_transit"),)),
        "+441110000008": customer(8),
    }
)


@asynccontextmanager
async def agi_server(
    directory: CustomerDirectory = CRM, *, deadline_s: float = 0.25, at: object = OPEN
) -> AsyncIterator[tuple[FakeAsterisk, DecisionLog]]:
    router = Router(directory, routing_rules(), deadline_s=deadline_s, clock=lambda: at)  # type: ignore[arg-type, return-value]
    decisions = DecisionLog()
    server = FastAgiServer(router, decisions, "127.0.0.1", 0, header_timeout_s=1.0)
    await server.start()
    try:
        yield FakeAsterisk("127.0.0.1", server.port), decisions
    finally:
        await server.stop()
        await router.aclose()


def test_the_fake_client_sends_the_header_block_byte_exact_as_asterisk_22(
    protocol_dir: Path,
) -> None:
    recording = json.loads((protocol_dir / "agi_route_ok.json").read_text())
    received = [e["data"] for e in recording if e["dir"] == "recv"]
    head, tail = header_block(AgiCall(), "127.0.0.1", 4573)
    assert [head.decode(), tail.decode()] == received[:2]
    anonymous = json.loads((protocol_dir / "agi_anonymous.json").read_text())
    call = AgiCall(
        uniqueid="1795396383.57",
        channel="Local/08005550100@from-pstn-0000001c;2",
        threadid=139935218116288,
    ).withheld()
    head, tail = header_block(call, "127.0.0.1", 4573)
    recorded = [e["data"] for e in anonymous if e["dir"] == "recv"][:2]
    assert [head.decode(), tail.decode()] == recorded


async def test_a_caller_with_an_open_tier2_case_gets_the_five_variables_and_a_clean_close() -> None:
    async with agi_server() as (asterisk, decisions):
        result = await asterisk.call()
    assert result.variables == {
        "CTI_QUEUE": "tier2",
        "CTI_PRIORITY": "5",
        "CTI_TIER": "tier2",
        "CTI_CUSTOMER_ID": "42",
        "CTI_REASON": "open case returns to its tier",
    }
    assert result.replies == ["200"] * 5 and result.closed and result.ahead == 0
    logged = decisions.get("1795396343.35")
    assert logged is not None and logged.rule == "open-case"
    assert decisions.by_channel("Local/08005550100@from-pstn-00000011;2") == logged


@pytest.mark.parametrize(
    ("call", "queue", "reason"),
    [
        (AgiCall(callerid="+441110000001"), "vip", "VIP customer"),
        (AgiCall(callerid="+441110000002"), "billing", "payment arrears"),
        (AgiCall(callerid="+441110000003"), "relay", "relay-trained agents"),
        (AgiCall(callerid="+441110000005"), "tier2", "fibre customer"),
        (AgiCall(callerid="+441110000006"), "french", "French speaker"),
        (AgiCall(callerid="+441110000008", dnid="08005550199"), "sales", "sales line"),
        (AgiCall(callerid="+441110000008", extension="08005550199"), "sales", "sales line"),
        (AgiCall().withheld(), "tier1", "withheld number"),
        (AgiCall(callerid="+449990000000"), "tier1", "not in the CRM"),
        (AgiCall(callerid="+441110000008"), "tier1", "default route"),
    ],
)
async def test_each_rule_kind_sets_its_queue_over_fastagi(
    call: AgiCall, queue: str, reason: str
) -> None:
    async with agi_server() as (asterisk, _):
        result = await asterisk.call(call)
    assert (result.variables["CTI_QUEUE"], result.variables["CTI_REASON"]) == (queue, reason)
    assert result.closed


async def test_an_order_in_transit_also_sets_the_order_status_for_the_ivr() -> None:
    async with agi_server() as (asterisk, _):
        result = await asterisk.call(AgiCall(callerid="+441110000007"))
    assert result.variables["CTI_ORDER_STATUS"] == "in_transit"
    assert result.variables["CTI_REASON"] == "order in transit"
    assert result.commands[4] == 'SET VARIABLE CTI_REASON "order in transit"'


async def test_out_of_hours_goes_to_the_out_of_hours_queue() -> None:
    async with agi_server(at=CLOSED) as (asterisk, _):
        result = await asterisk.call()
    assert result.variables["CTI_QUEUE"] == "afterhours"
    assert result.variables["CTI_CUSTOMER_ID"] == "42"


async def test_a_slow_store_gets_the_fallback_route_before_the_deadline() -> None:
    slow = SlowDirectory({"+442071234567": customer(42, case_tiers=("tier2",))}, delay_s=5.0)
    async with agi_server(slow, deadline_s=0.2) as (asterisk, _):
        result = await asterisk.call()
    assert result.elapsed_s < 0.4
    assert result.variables == {
        "CTI_QUEUE": "tier1",
        "CTI_PRIORITY": "0",
        "CTI_TIER": "tier1",
        "CTI_CUSTOMER_ID": "",
        "CTI_REASON": "fallback",
    }
    assert result.commands[3] == 'SET VARIABLE CTI_CUSTOMER_ID ""'


async def test_a_dead_database_gets_the_fallback_route_at_once() -> None:
    async with agi_server(DeadDirectory(), deadline_s=1.0) as (asterisk, decisions):
        result = await asterisk.call()
    assert result.elapsed_s < 0.2
    assert (result.variables["CTI_QUEUE"], result.variables["CTI_REASON"]) == ("tier1", "fallback")
    logged = decisions.get("1795396343.35")
    assert logged is not None and logged.fallback


async def test_a_multi_line_520_reply_keeps_the_server_in_step() -> None:
    async with agi_server() as (asterisk, _):
        result = await asterisk.call(usage_first=True, reply_delay_s=0.02)
        after = await asterisk.call()
    assert result.replies == ["520", "200", "200", "200", "200"]
    assert result.ahead == 0 and result.closed
    assert set(result.variables) == {"CTI_PRIORITY", "CTI_TIER", "CTI_CUSTOMER_ID", "CTI_REASON"}
    assert after.variables["CTI_QUEUE"] == "tier2"


@pytest.mark.parametrize("hangup_after", [0, 1, 3])
async def test_a_hangup_mid_request_is_skipped_and_the_server_stays_in_step(
    hangup_after: int,
) -> None:
    async with agi_server() as (asterisk, decisions):
        result = await asterisk.call(hangup_after=hangup_after, reply_delay_s=0.01)
        after = await asterisk.call(AgiCall(uniqueid="1795396343.99"))
    assert result.hangup_sent and result.closed and result.ahead == 0
    assert result.replies == ["200"] * 5  # SET VARIABLE still works on a dead channel
    assert decisions.get("1795396343.35") is not None
    assert after.closed and after.variables["CTI_QUEUE"] == "tier2"


@pytest.mark.parametrize("disconnect_after", [0, 2])
async def test_asterisk_disconnecting_midway_does_not_take_the_server_down(
    disconnect_after: int,
) -> None:
    async with agi_server() as (asterisk, _):
        gone = await asterisk.call(disconnect_after=disconnect_after)
        await asyncio.sleep(0.05)
        after = await asterisk.call()
    assert not gone.closed
    assert after.closed and len(after.variables) == 5


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)) + b"\n\n",
        b"hello: world\nthis is not agi\n\n",
        b"agi_network: yes\nagi_network_script: route\nagi_request: agi://",  # cut short
        b"\n",
        b"agi_" + b"x" * 70_000 + b"\n\n",
    ],
)
async def test_a_garbage_header_block_is_closed_without_a_command(garbage: bytes) -> None:
    async with agi_server() as (asterisk, _):
        reader, writer = await asyncio.open_connection(asterisk.host, asterisk.port)
        writer.write(garbage)
        writer.write_eof()
        sent = await asyncio.wait_for(reader.read(), 2.0)
        writer.close()
        after = await asterisk.call()
    assert sent == b""
    assert after.closed and len(after.variables) == 5


async def test_a_silent_peer_is_dropped_after_the_header_timeout() -> None:
    async with agi_server() as (asterisk, _):
        reader, writer = await asyncio.open_connection(asterisk.host, asterisk.port)
        writer.write(b"agi_network: yes\n")
        started = time.perf_counter()
        assert await asyncio.wait_for(reader.read(), 3.0) == b""
        assert 0.9 < time.perf_counter() - started < 2.0
        writer.close()


@pytest.mark.timeout(20)
async def test_bare_connects_neither_spin_the_loop_nor_block_the_next_session() -> None:
    async with agi_server() as (asterisk, _):
        for _ in range(50):
            _, writer = await asyncio.open_connection(asterisk.host, asterisk.port)
            writer.close()
        cpu = time.process_time()
        await asyncio.sleep(0.5)
        cpu_share = (time.process_time() - cpu) / 0.5
        result = await asyncio.wait_for(asterisk.call(), 1.0)
    assert cpu_share < 0.2
    assert result.closed and result.elapsed_s < 0.2


async def test_stop_ends_sessions_in_progress_and_frees_the_port() -> None:
    router = Router(SlowDirectory(delay_s=10), routing_rules(), deadline_s=5.0)
    server = FastAgiServer(router, DecisionLog(), "127.0.0.1", 0)
    await server.start()
    port = server.port
    asterisk = FakeAsterisk("127.0.0.1", port)
    session = asyncio.create_task(asterisk.call(timeout_s=3.0))
    await asyncio.sleep(0.1)
    started = time.perf_counter()
    await server.stop()
    await router.aclose()
    assert time.perf_counter() - started < 1.0
    result = await session
    assert result.variables == {}
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_only_the_route_script_is_answered() -> None:
    async with agi_server() as (asterisk, decisions):
        other = await asterisk.call(AgiCall(script="ivr"))
        with_query = await asterisk.call(AgiCall(script="route?lang=en", uniqueid="1795396343.41"))
    assert other.closed and other.commands == [] and decisions.get("1795396343.35") is None
    assert with_query.variables["CTI_QUEUE"] == "tier2"
