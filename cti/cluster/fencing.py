"""The database's half of fencing for the call state (``crm_core.fence`` has the claim).

Every call-state write of an ingesting instance claims its token on ``live_pbx.fence`` in
the same transaction (``fence_guard``); interaction records go the same way
(``FencedInteractions``): each carries the token its call was ingested under, and one
refused as stale is not written (the current ingester took the call back from the
database and writes it).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from crm_core.fence import Fence, StaleFence, claim
from crm_core.types import InteractionRecord

__all__ = ["Fence", "FenceStamps", "FencedInteractions", "StaleFence", "claim", "fence_guard"]


def fence_guard(
    token: Callable[[], int | None], on_stale: Callable[[StaleFence], None]
) -> Callable[[AsyncConnection, str], Awaitable[None]]:
    """``SqlCallState(guard=...)``: claim the current token (None: not ingesting, refuse)."""

    async def guard(conn: AsyncConnection, pbx_id: str) -> None:
        current = token()
        if current is None:
            error = StaleFence(pbx_id, 0)
            on_stale(error)
            raise error
        try:
            await claim(conn, pbx_id, current)
        except StaleFence as error:
            on_stale(error)
            raise

    return guard


class InteractionSink(Protocol):
    def submit(self, record: InteractionRecord) -> None: ...


class FencedStore(Protocol):
    """``CrmStore``: writes a record under a fence, in the same transaction."""

    async def record_interaction(
        self, record: InteractionRecord, *, fence: Fence | None = None
    ) -> Any: ...


class FenceStamps:
    """The token each call's record was made under: stamped when the live calls hand the
    record over (``stamping``), read when the recorder writes it (``FencedInteractions``).
    A record with no stamp (read back from the dead-letter file at start) is written
    unfenced: it was refused or unwritten before, not made by a stale ingester now."""

    def __init__(self, keep: int = 50_000) -> None:
        self._stamps: OrderedDict[str, Fence] = OrderedDict()
        self._keep = keep

    def stamp(self, call_id: str, fence: Fence) -> None:
        self._stamps.pop(call_id, None)
        self._stamps[call_id] = fence
        while len(self._stamps) > self._keep:
            self._stamps.popitem(last=False)

    def get(self, call_id: str) -> Fence | None:
        return self._stamps.get(call_id)

    def stamping(self, sink: InteractionSink, current: Callable[[str], Fence]) -> InteractionSink:
        """``LiveCalls(recorder=...)``: each record is stamped with the token of now of its
        call's PBX (``current(call_id)``)."""
        return _Stamping(self, sink, current)


class _Stamping:
    def __init__(
        self, stamps: FenceStamps, sink: InteractionSink, current: Callable[[str], Fence]
    ) -> None:
        self._stamps, self._sink, self._current = stamps, sink, current

    def submit(self, record: InteractionRecord) -> None:
        self._stamps.stamp(record.call_id, self._current(record.call_id))
        self._sink.submit(record)


class FencedInteractions:
    """``InteractionRecorder``'s store: each record is written under the fencing token its
    call was ingested with. The database refuses it (``StaleFence``) when a newer ingester
    has written for the PBX since: the recorder drops it (the newer ingester took the call
    back from ``live_calls`` and writes its record), and ``on_stale`` stops this ingester."""

    def __init__(
        self, store: FencedStore, stamps: FenceStamps, on_stale: Callable[[StaleFence], None]
    ) -> None:
        self._store = store
        self._stamps = stamps
        self._on_stale = on_stale

    async def record_interaction(self, record: InteractionRecord) -> Any:
        fence = self._stamps.get(record.call_id)
        try:
            return await self._store.record_interaction(record, fence=fence)
        except StaleFence as error:
            self._on_stale(error)
            raise
