"""Events out through the durable outbox: webhooks to a receiver that is down for a while, the
RabbitMQ bus, and the write-back of finished calls to the CRM they came from."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from connectors.bus import BusTarget
from connectors.outbox import Outbox
from connectors.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookTarget, verify
from crm_core.store import CrmStore

SECRET = "whsec-test"
RABBIT_URL = os.environ.get("CTI_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Receiver:
    """A webhook receiver that checks signatures, and can lose its answer once per event."""

    port: int
    received: list[dict[str, Any]] = field(default_factory=list)
    bad_signatures: int = 0
    fail_after_processing: set[str] = field(default_factory=set)
    runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not verify(SECRET, request.headers[TIMESTAMP_HEADER], body,
                      request.headers[SIGNATURE_HEADER]):  # fmt: skip
            self.bad_signatures += 1
            return web.Response(status=401)
        payload = json.loads(body)
        assert request.headers["Idempotency-Key"] == payload["id"]
        self.received.append(payload)
        if payload["event"] in self.fail_after_processing:
            self.fail_after_processing.discard(payload["event"])
            return web.Response(status=503)  # processed, but the sender never learns it
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[CrmStore]:
    store = await CrmStore.open(f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}")
    yield store
    await store.close()


def outbox(store: CrmStore, port: int, **options: Any) -> Outbox:
    hook = WebhookTarget("hook", f"http://127.0.0.1:{port}/hook", SECRET, timeout_s=2.0)
    options = {"retry_initial_s": 0.05, "retry_max_s": 0.2, **options}
    return Outbox(store.engine, [hook], **options)


def submit_calls(box: Outbox) -> list[dict[str, Any]]:
    sent = []
    for call, events in (("A", ["offered", "answered", "transferred", "ended"]),
                         ("B", ["offered", "abandoned", "ended"])):  # fmt: skip
        for event in events:
            payload = {"id": uuid.uuid4().hex, "event": event, "call_id": call}
            box.submit(event, call, payload, idempotency_key=payload["id"])
            sent.append(payload)
    return sent


async def wait_for(predicate: Any, within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_a_receiver_down_for_a_while_loses_nothing_across_a_restart_in_order_per_call(
    store: CrmStore,
) -> None:
    receiver = Receiver(free_port(), fail_after_processing={"answered"})
    first = outbox(store, receiver.port)
    await first.start()
    sent = submit_calls(first)
    await wait_for(lambda: first.failures >= 4)  # refused, retried with backoff
    pending = await first.items()
    assert len(pending) == len(sent) and all(i.status == "pending" for i in pending)
    await first.stop(drain_timeout_s=0.2)  # the daemon stops while the receiver is down

    await receiver.start()
    second = outbox(store, receiver.port)  # the daemon starts again, same database
    await second.start()
    try:
        await wait_for(lambda: {p["id"] for p in receiver.received} == {p["id"] for p in sent})
        await wait_for(lambda: second.delivered == len(sent))
        assert await second.items() == []
    finally:
        await second.stop()
        await receiver.stop()

    assert receiver.bad_signatures == 0
    ids = [p["id"] for p in receiver.received]
    duplicates = {i for i in ids if ids.count(i) > 1}
    answered = next(p["id"] for p in sent if p["event"] == "answered")
    assert duplicates == {answered}  # at least once: its 503 came after it was processed
    for call in ("A", "B"):
        seen: list[str] = []
        for payload in receiver.received:
            if payload["call_id"] == call and payload["id"] not in seen:
                seen.append(payload["id"])
        assert seen == [p["id"] for p in sent if p["call_id"] == call]


async def test_an_item_given_up_is_listed_as_failed_and_delivered_once_retried(
    store: CrmStore,
) -> None:
    receiver = Receiver(free_port())
    box = outbox(store, receiver.port, give_up_after_s=0.3)
    await box.start()
    try:
        box.submit("ended", "C", {"id": "k1", "event": "ended"}, idempotency_key="k1")
        await wait_for(lambda: box.failures >= 2)
        await asyncio.sleep(0.5)
        await wait_for(lambda: box.failures >= 3)
        (item,) = await box.items()
        assert item.status == "failed" and "ClientConnectorError" in (item.last_error or "")
        await receiver.start()
        assert await box.retry() == 1
        await wait_for(lambda: box.delivered == 1)
        assert [p["id"] for p in receiver.received] == ["k1"]
        assert await box.items() == []
    finally:
        await box.stop()
        await receiver.stop()


async def test_events_are_published_to_the_rabbitmq_topic_exchange_by_event_and_queue(
    store: CrmStore,
) -> None:
    import aio_pika

    exchange = f"cti-test-{uuid.uuid4().hex[:8]}"
    try:
        connection = await aio_pika.connect_robust(RABBIT_URL, timeout=5)
    except Exception as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"RabbitMQ not reachable: {exc}")
    async with connection:
        channel = await connection.channel()
        topic = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(topic, "answered.*")
        await queue.bind(topic, "*.tier2")
        box = Outbox(store.engine, [BusTarget(RABBIT_URL, exchange)], retry_initial_s=0.05)
        await box.start()
        try:
            for event, queue_name in (("answered", "tier1"), ("ended", "tier1"),
                                      ("transferred", "tier2"), ("offered", None)):  # fmt: skip
                key = f"{event}-{queue_name}"
                box.submit(event, "D", {"id": key, "event": event, "queue": queue_name},
                           idempotency_key=key)  # fmt: skip
            await wait_for(lambda: box.delivered == 4)
        finally:
            await box.stop()
        got = []
        for _ in range(2):
            message = await queue.get(timeout=5)
            await message.ack()
            got.append((message.routing_key, message.message_id, json.loads(message.body)["event"]))
        assert await queue.get(fail=False) is None
        await topic.delete()
    assert got == [
        ("answered.tier1", "answered-tier1", "answered"),
        ("transferred.tier2", "transferred-tier2", "transferred"),
    ]


async def test_cti_webhooks_lists_what_is_waiting_and_retry_puts_failed_items_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cti.cli import main

    config = tmp_path / "cti.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "crm.db"}"\n')
    store = await CrmStore.open(f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}")
    try:
        box = outbox(store, free_port(), give_up_after_s=0.0)
        box.submit("ended", "E-1", {"id": "k9", "event": "ended"}, idempotency_key="k9")
        box.submit("answered", "E-2", {"id": "k8", "event": "answered"}, idempotency_key="k8")
        await box.flush()
        await box.deliver_due()  # the receiver is down: given up at once (give_up_after_s=0)
    finally:
        await store.close()

    assert await asyncio.to_thread(main, ["webhooks", "-c", str(config)]) == 0
    listing = capsys.readouterr().out
    assert "failed   hook" in listing and "E-1" in listing and "0 pending, 2 failed" in listing

    assert await asyncio.to_thread(main, ["webhooks", "-c", str(config), "--retry"]) == 0
    assert "2 item(s)" in capsys.readouterr().out
    assert await asyncio.to_thread(main, ["webhooks", "-c", str(config), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {(r["call_id"], r["status"]) for r in rows} == {("E-1", "pending"), ("E-2", "pending")}
