"""``AmiClient.event_batches()``: the same stream as ``events()``, in lists of what arrived."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from fakes.ami_server import FakeAmiServer
from test_ami_client import ami_config

from cti.ami.client import AmiClient
from cti.ami.stream import Connected, Resynced, StreamItem


@pytest.fixture
async def server() -> AsyncIterator[FakeAmiServer]:
    async with FakeAmiServer() as ami:
        yield ami


async def collect(client: AmiClient, until: int, limit: int = 512) -> list[list[StreamItem]]:
    """Batches until ``until`` raw events arrived, within 3 s."""
    batches: list[list[StreamItem]] = []
    async with asyncio.timeout(3.0):
        async for batch in client.event_batches(limit):
            batches.append(batch)
            if sum(isinstance(i, dict) for b in batches for i in b) >= until:
                break
    return batches


async def test_batches_carry_markers_and_events_in_order_one_read_at_a_time(server):
    client = AmiClient(ami_config(server))
    await client.start()
    try:
        blocks = "".join(f"Event: UserEvent\r\nN: {n}\r\n\r\n" for n in range(50))
        await asyncio.sleep(0.2)  # logged in and resynced
        await server.send_raw(blocks.encode())
        batches = await collect(client, until=50)
    finally:
        await client.stop()
    items = [item for batch in batches for item in batch]
    assert isinstance(items[0], Connected) and isinstance(items[1], Resynced)
    assert [e["N"] for e in items if isinstance(e, dict)] == [str(n) for n in range(50)]
    assert len(batches) < 50  # events of one read come together, not one wake-up each
    assert all(batch for batch in batches)


async def test_batches_respect_the_limit_and_end_after_stop(server):
    client = AmiClient(ami_config(server))
    await client.start()
    await asyncio.sleep(0.2)
    await server.send_raw("".join(f"Event: UserEvent\r\nN: {n}\r\n\r\n" for n in range(9)).encode())
    batches = await collect(client, until=9, limit=4)
    assert all(len(batch) <= 4 for batch in batches)
    await client.stop()
    assert [batch async for batch in client.event_batches()] == []
    assert [batch async for batch in client.event_batches()] == []
