"""The one interface every customer directory backend implements, and what it hands back.

A source answers in its own terms (its own ids, whatever fields it has); ``ChainDirectory``
turns the answers of an ordered list of sources into the ``crm_core`` values the router, the pop
and the API use. A source raises ``SourceError`` (or times out) when it cannot answer: the chain
reports it as unavailable and goes on with the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from crm_core.types import InteractionRecord

# The view fields a source may give (``crm_core.types.CustomerView``, less the id).
VIEW_FIELDS = (
    "external_id",
    "name",
    "kind",
    "organisation",
    "language",
    "email",
    "address",
    "phones",
    "flags",
    "open_cases",
    "orders",
    "products",
    "interactions",
    "contacts",
)


class SourceError(Exception):
    """A source could not answer (down, refused, malformed answer); the message says why."""


@dataclass(frozen=True)
class SourceRecord:
    """One customer as one source knows them.

    ``key`` is the source's own id (a string whatever its type there). ``fields`` holds only the
    view fields the source gave, already in our shapes (``phones`` a tuple of ``PhoneView``...),
    so the chain can tell which source gave which field. ``rank_reason`` ranks shared numbers.
    """

    key: str
    name: str
    fields: dict[str, Any] = field(default_factory=dict)
    rank_reason: str = ""
    # Set by the built-in store: its own integer id, kept as the customer id.
    customer_id: int | None = None

    @property
    def external_id(self) -> str | None:
        value = self.fields.get("external_id")
        return str(value) if value not in (None, "") else None

    @property
    def email(self) -> str | None:
        value = self.fields.get("email")
        return str(value).strip().lower() if value else None


@runtime_checkable
class DirectorySource(Protocol):
    """A customer directory backend: the built-in store, a REST/JSON-RPC CRM, SQL, a CSV file."""

    @property
    def name(self) -> str: ...

    @property
    def timeout_s(self) -> float: ...

    async def by_number(self, e164: str) -> list[SourceRecord]:
        """Every customer with this number (ours to match: compared as E.164)."""
        ...

    async def by_key(self, key: str) -> SourceRecord | None:
        """One customer with every field the source has (the 360° view's part)."""
        ...

    async def search(self, query: str, limit: int) -> list[SourceRecord]:
        """Customers by name, account number or email."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class WriteBackSource(Protocol):
    """A source that takes the finished call back into the customer's record."""

    @property
    def name(self) -> str: ...

    @property
    def writes_back(self) -> bool: ...

    async def write_back(self, key: str, record: InteractionRecord) -> None:
        """Write the call to customer ``key``; raises ``SourceError`` to be retried."""
        ...
