"""The ``store`` source: the built-in ``crm_core.CrmStore`` as one source of a chain."""

from __future__ import annotations

from typing import Any, Protocol

from connectors.source import VIEW_FIELDS, SourceError, SourceRecord
from crm_core.errors import CrmError
from crm_core.types import Candidate, CustomerView, Resolution, RoutingFacts


class StoreLike(Protocol):
    async def resolve(self, caller_id: str | None) -> Resolution: ...

    async def view(self, customer_id: int) -> CustomerView | None: ...

    async def search(self, query: str, limit: int = 20) -> list[Candidate]: ...


def view_fields(view: CustomerView) -> dict[str, Any]:
    """A view as the per-field dict sources hand the chain (empty values left out)."""
    fields: dict[str, Any] = {}
    for name in VIEW_FIELDS:
        value = getattr(view, name)
        if value not in (None, "", ()):
            fields[name] = value
    return fields


def _record(candidate: Candidate) -> SourceRecord:
    fields: dict[str, Any] = {"name": candidate.name}
    if candidate.external_id:
        fields["external_id"] = candidate.external_id
    return SourceRecord(
        key=str(candidate.customer_id),
        name=candidate.name,
        fields=fields,
        rank_reason=candidate.rank_reason,
        customer_id=candidate.customer_id,
    )


class StoreSource:
    """Keeps the store's ids as customer ids, its ranking of shared numbers and its cache."""

    writes_back = False  # the interaction recorder already writes every call to the store

    def __init__(self, store: StoreLike, *, name: str = "store", timeout_s: float = 0.25) -> None:
        self._store = store
        self._name = name
        self._timeout_s = timeout_s

    @property
    def name(self) -> str:
        return self._name

    @property
    def timeout_s(self) -> float:
        return self._timeout_s

    @property
    def store(self) -> StoreLike:
        return self._store

    async def by_number(self, e164: str) -> list[SourceRecord]:
        try:
            resolution = await self._store.resolve(e164)
        except CrmError as exc:
            raise SourceError(str(exc)) from exc
        return [_record(c) for c in resolution.candidates]

    async def by_key(self, key: str) -> SourceRecord | None:
        if not key.isdigit():
            return None
        try:
            view = await self._store.view(int(key))
        except CrmError as exc:
            raise SourceError(str(exc)) from exc
        if view is None:
            return None
        return SourceRecord(
            key=key, name=view.name, fields=view_fields(view), customer_id=view.customer_id
        )

    async def routing_facts(self, key: str) -> RoutingFacts | None:
        """The store's one-query answer for the rules where it has one, else from the view."""
        if not key.isdigit():
            return None
        facts = getattr(self._store, "routing_facts", None)
        try:
            if callable(facts):
                result: RoutingFacts | None = await facts(int(key))
                return result
            view = await self._store.view(int(key))
        except CrmError as exc:
            raise SourceError(str(exc)) from exc
        return RoutingFacts.from_view(view) if view is not None else None

    async def search(self, query: str, limit: int) -> list[SourceRecord]:
        try:
            found = await self._store.search(query, limit=limit)
        except CrmError as exc:
            raise SourceError(str(exc)) from exc
        return [_record(c) for c in found]

    async def close(self) -> None:
        """The store is owned by the daemon, which closes it."""
