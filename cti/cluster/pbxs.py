"""Several PBXs in one process (``[[pbx]]``): each PBX's call ids are qualified by its id.

Two PBXs number their channels independently (``1700000000.12`` may exist on both), so with
``[[pbx]]`` every ``Uniqueid``/``Linkedid`` header (``DestUniqueid``, ``BridgeUniqueid``...)
read from a PBX's AMI becomes ``<pbx id>:<id>`` before the tracker sees it
(``QualifiedAmi``): the call id of every call event, live call, desktop message, live_calls
row and interaction is then unique over the PBXs, and the call-id comparisons the tracker
makes (a call's first channel has ``Uniqueid == Linkedid``) still hold. The FastAGI decision
log is keyed by the id the PBX gave its channel: ``UnqualifiedDecisions`` looks it up
without the prefix. Each PBX's own queue_log (``[[pbx]]`` ``queue_log``) is read the same way
(``QualifiedQueueLog``): its callids and the Linkedids the dialplan logs become ``<pbx id>:<id>``,
so the calls recovered from it are keyed as the tracker keys that PBX's calls. With ``[ami]``
alone nothing is qualified: one PBX works as always.

Each PBX has its own AMI link, tracker, live-call writer (``live_calls`` and ``live_pbx``
rows of its id) and, with several instances, its own lease and fencing token; the live
calls, desktops, supervision and interaction recorder are shared. ``CallStateByPbx`` sends
each call's state to the writer of its PBX.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

from cti.ami.stream import Resynced
from cti.queuelog.model import LINK_EVENT, QueueLogRow
from cti.queuelog.sources import QueueLogSource


def qualify(pbx_id: str, ident: str) -> str:
    return f"{pbx_id}:{ident}" if ident else ident


def pbx_of(call_id: str) -> str | None:
    """The PBX id of a qualified call id (None: not qualified)."""
    head, sep, _ = call_id.partition(":")
    return head if sep else None


def unqualified(ident: str) -> str:
    return ident.partition(":")[2] or ident


def _qualified_event(pbx_id: str, event: Mapping[str, str]) -> dict[str, str]:
    out = dict(event)
    for key, value in event.items():
        if value and (key.endswith("Uniqueid") or key.endswith("Linkedid")):
            out[key] = f"{pbx_id}:{value}"
    return out


class AmiLink(Protocol):
    """The AMI client as ``QualifiedAmi`` wraps it (``cti.ami.client.AmiClient``)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def events(self) -> AsyncIterator[Any]: ...


class QualifiedAmi:
    """One PBX's AMI client whose events (and list replies) carry qualified ids; actions go
    through unchanged (they name channels, which are the PBX's own)."""

    def __init__(self, ami: AmiLink, pbx_id: str) -> None:
        self._ami = ami
        self.pbx_id = pbx_id

    def _item(self, item: Any) -> Any:
        if isinstance(item, dict):
            return _qualified_event(self.pbx_id, item)
        if isinstance(item, Resynced):
            return dataclasses.replace(
                item, items=[_qualified_event(self.pbx_id, i) for i in item.items]
            )
        return item

    async def start(self) -> None:
        await self._ami.start()

    async def stop(self) -> None:
        await self._ami.stop()

    async def events(self) -> AsyncIterator[Any]:
        async for item in self._ami.events():
            yield self._item(item)

    async def event_batches(self, limit: int = 512) -> AsyncIterator[list[Any]]:
        async for batch in self._ami.event_batches(limit):  # type: ignore[attr-defined]
            yield [self._item(i) for i in batch]

    async def send_list_action(
        self,
        fields: Mapping[str, str],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - AmiClient's own signature
    ) -> tuple[Any, list[dict[str, str]]]:
        reply, items = await self._ami.send_list_action(fields, timeout=timeout)  # type: ignore[attr-defined]
        return reply, [_qualified_event(self.pbx_id, i) for i in items]

    def __getattr__(self, name: str) -> Any:  # connected, backlog, actions, counters
        return getattr(self._ami, name)


class QualifiedQueueLog:
    """One PBX's queue_log whose rows name calls and channels by qualified ids: the callid
    (the waiting channel's Uniqueid) and the Linkedid of the dialplan's ``CTI_LINKEDID`` row."""

    def __init__(self, source: QueueLogSource, pbx_id: str) -> None:
        self._source = source
        self.pbx_id = pbx_id

    @property
    def fine(self) -> bool:
        return self._source.fine

    def _row(self, row: QueueLogRow) -> QueueLogRow:
        data = row.data
        if row.event == LINK_EVENT and data:
            data = (qualify(self.pbx_id, data[0]), *data[1:])
        return dataclasses.replace(row, callid=qualify(self.pbx_id, row.callid), data=data)

    async def read(self, since: float) -> list[QueueLogRow]:
        return [self._row(r) for r in await self._source.read(since)]

    async def close(self) -> None:
        await self._source.close()


class DecisionLookup(Protocol):
    def get(self, uniqueid: str) -> Any | None: ...

    def by_channel(self, channel: str) -> Any | None: ...


class UnqualifiedDecisions:
    """The FastAGI decision log as the live calls look it up by qualified Uniqueid."""

    def __init__(self, decisions: DecisionLookup) -> None:
        self._decisions = decisions

    def get(self, uniqueid: str) -> Any | None:
        return self._decisions.get(unqualified(uniqueid))

    def by_channel(self, channel: str) -> Any | None:
        return self._decisions.by_channel(channel)


class CallStateSink(Protocol):
    def changed(self, ctx: Any) -> None: ...

    def gone(self, call_id: str) -> None: ...


class CallStateByPbx:
    """``LiveCalls(state=...)`` with several PBXs: each call to its PBX's writer."""

    def __init__(self) -> None:
        self.writers: dict[str, CallStateSink] = {}

    def changed(self, ctx: Any) -> None:
        writer = self.writers.get(pbx_of(ctx.call_id) or "")
        if writer is not None:
            writer.changed(ctx)

    def gone(self, call_id: str) -> None:
        writer = self.writers.get(pbx_of(call_id) or "")
        if writer is not None:
            writer.gone(call_id)
