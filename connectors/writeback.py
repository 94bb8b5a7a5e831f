"""Writing the finished call back to the customer's record in the source it came from.

``WriteBackRecorder`` stands where the interaction recorder writes: each record goes to the
built-in store as before and, for a customer the chain knows from a source that writes back,
into the outbox as one item per (source, call). A later update of the same call (a note, a
disposition) replaces the item while it is still waiting; once delivered it is not sent again.
"""

from __future__ import annotations

from typing import Any, Protocol

import structlog

from connectors.chain import ChainDirectory
from connectors.outbox import DeliveryError, Outbox, OutboxItem
from connectors.source import SourceError, WriteBackSource
from crm_core.types import InteractionRecord

log = structlog.get_logger(__name__)

TARGET_PREFIX = "writeback:"


class InteractionStore(Protocol):
    async def record_interaction(self, record: InteractionRecord) -> Any: ...


def _record_from(payload: dict[str, Any]) -> InteractionRecord:
    from datetime import datetime

    values = dict(payload)
    for name in ("started_at", "answered_at", "ended_at"):
        if values.get(name):
            values[name] = datetime.fromisoformat(values[name])
    for name in ("queues", "tiers", "agents", "transfers"):
        values[name] = tuple(values.get(name) or ())
    return InteractionRecord(**values)


class WriteBackTarget:
    """An outbox target delivering to one source's ``write_back``."""

    def __init__(self, source: WriteBackSource) -> None:
        self._source = source

    @property
    def name(self) -> str:
        return TARGET_PREFIX + self._source.name

    def accepts(self, event: str) -> bool:
        return event == "writeback"

    async def deliver(self, item: OutboxItem) -> None:
        try:
            await self._source.write_back(item.payload["key"], _record_from(item.payload["record"]))
        except SourceError as exc:
            raise DeliveryError(str(exc)) from exc

    async def close(self) -> None:
        return None


class WriteBackRecorder:
    def __init__(self, store: InteractionStore, chain: ChainDirectory, outbox: Outbox) -> None:
        self._store = store
        self._chain = chain
        self._outbox = outbox

    async def record_interaction(self, record: InteractionRecord) -> Any:
        result = await self._store.record_interaction(record)
        if record.customer_id is not None and record.ended_at is not None:
            for source_name, key in self._chain.links(record.customer_id):
                target = TARGET_PREFIX + source_name
                if self._outbox.has_target(target):
                    self._outbox.submit(
                        "writeback",
                        record.call_id,
                        {"key": key, "record": record.to_dict()},
                        idempotency_key=f"{record.call_id}:{source_name}",
                        targets=[target],
                        replace_pending=True,
                    )
        return result
