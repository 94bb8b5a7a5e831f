"""The message bus: every event published to a RabbitMQ topic exchange, through the outbox.

Routing key ``<event>.<queue>`` (``none`` when the event has no queue), so a consumer binds
``ended.#`` or ``*.tier2``. Messages are persistent JSON with the idempotency key as
``message_id``; each publish waits for the broker's confirm, so the outbox marks an event
delivered only once RabbitMQ has it.
"""

from __future__ import annotations

import json
import re

import aio_pika
from aio_pika.abc import AbstractExchange, AbstractRobustConnection

from connectors.outbox import DeliveryError, OutboxItem

_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]")


def routing_key(event: str, queue: str | None) -> str:
    """``answered.tier1``; dots and wildcards in a queue name are not allowed to split it."""
    return f"{event}.{_UNSAFE.sub('_', queue) if queue else 'none'}"


class BusTarget:
    def __init__(
        self,
        url: str,
        exchange: str,
        *,
        name: str = "bus",
        events: frozenset[str] | None = None,
    ) -> None:
        self._url = url
        self._exchange_name = exchange
        self._name = name
        self._events = events
        self._connection: AbstractRobustConnection | None = None
        self._exchange: AbstractExchange | None = None

    @property
    def name(self) -> str:
        return self._name

    def accepts(self, event: str) -> bool:
        return self._events is None or event in self._events

    async def _exchange_now(self) -> AbstractExchange:
        if self._exchange is None:
            try:
                self._connection = await aio_pika.connect_robust(self._url, timeout=5)
                channel = await self._connection.channel(publisher_confirms=True)
                self._exchange = await channel.declare_exchange(
                    self._exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
                )
            except Exception as exc:
                await self.close()
                raise DeliveryError(f"RabbitMQ unreachable: {exc!r}") from exc
        return self._exchange

    async def deliver(self, item: OutboxItem) -> None:
        exchange = await self._exchange_now()
        queue = item.payload.get("queue")
        message = aio_pika.Message(
            body=json.dumps(item.payload, separators=(",", ":"), default=str).encode(),
            content_type="application/json",
            message_id=item.idempotency_key,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            type=item.event,
            headers={"call_id": item.ordering_key},
        )
        try:
            await exchange.publish(message, routing_key=routing_key(item.event, queue))
        except Exception as exc:
            raise DeliveryError(f"publish failed: {exc!r}") from exc

    async def close(self) -> None:
        connection, self._connection, self._exchange = self._connection, None, None
        if connection is not None:
            await connection.close()
