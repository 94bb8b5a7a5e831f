"""``ChainDirectory``: an ordered list of sources behind the one ``CustomerDirectory`` shape.

Every source is asked at once, each under its own timeout; a slow or failing one is reported in
``unavailable`` and never holds the answer past its timeout. Number matching is ours: the caller
ID is normalised here, and each source compares the numbers it holds as E.164.

Records of several sources are one customer when they share an external id or an email; then the
view takes each field from the first source (in chain order) that has it and says which in
``sources`` (flags are the union, each flag attributed as ``flags.<flag>``). Several customers
for one number, across sources or within one, are ``ambiguous``: the chain never picks one.

Customer ids: the store's own integer ids stay as they are; a customer known only to another
source gets a stable id derived from (source, remote id), above 2**52 so it never meets a store
id and still fits a JavaScript number. The chain remembers which sources hold each id it gave.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog

from connectors.source import DirectorySource, SourceRecord
from crm_core.errors import CrmUnavailable
from crm_core.phone import normalise
from crm_core.types import (
    Candidate,
    CustomerView,
    Resolution,
    ResolutionStatus,
    RoutingFacts,
)

log = structlog.get_logger(__name__)

T = TypeVar("T")

REMOTE_ID_BASE = 1 << 52
_HIGHLIGHT_FLAGS = ("vip", "hearing_impaired", "wheelchair_user", "payment_arrears", "do_not_call")


@dataclass(frozen=True)
class SourcedCandidate(Candidate):
    """A candidate, with the sources that know them."""

    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChainResolution(Resolution):
    """A resolution, with the sources that did not answer in time."""

    unavailable: tuple[str, ...] = ()


@dataclass(frozen=True)
class SourcedView(CustomerView):
    """The 360° view with, for each field, the source that gave it, and who did not answer."""

    sources: dict[str, str] = field(default_factory=dict)
    unavailable: tuple[str, ...] = ()


Link = tuple[str, str]  # (source name, the source's own id)


def remote_customer_id(source: str, key: str) -> int:
    digest = hashlib.blake2b(f"{source}\0{key}".encode(), digest_size=8).digest()
    return REMOTE_ID_BASE | (int.from_bytes(digest, "big") & (REMOTE_ID_BASE - 1))


def _same_customer(a: SourceRecord, b: SourceRecord) -> bool:
    if a.external_id and a.external_id == b.external_id:
        return True
    return bool(a.email and a.email == b.email)


class ChainDirectory:
    def __init__(
        self,
        sources: Sequence[DirectorySource],
        *,
        region: str = "GB",
        internal_max_digits: int = 6,
        max_links: int = 100_000,
    ) -> None:
        if not sources:
            raise ValueError("a directory chain needs at least one source")
        names = [s.name for s in sources]
        if len(set(names)) != len(names):
            raise ValueError(f"directory source names must be unique: {names}")
        self._sources = list(sources)
        self._by_name = {s.name: s for s in sources}
        self._region = region
        self._internal_max_digits = internal_max_digits
        self._links: OrderedDict[int, tuple[Link, ...]] = OrderedDict()
        # The sources that did not answer when a customer was last resolved: the view says so
        # too, since they may hold more of that customer.
        self._missed: dict[int, tuple[str, ...]] = {}
        self._max_links = max_links

    @property
    def sources(self) -> list[DirectorySource]:
        return list(self._sources)

    def source(self, name: str) -> DirectorySource | None:
        return self._by_name.get(name)

    def links(self, customer_id: int) -> tuple[Link, ...]:
        """The (source, remote id) pairs behind a customer id, as far as the chain knows."""
        known = self._links.get(customer_id)
        if known is not None:
            return known
        if customer_id < REMOTE_ID_BASE:
            # A store id the chain has not met yet (a customer opened from a list, a restart).
            return tuple((s.name, str(customer_id)) for s in self._sources if _is_store(s))
        return ()

    # ---- asking sources ------------------------------------------------------------------

    async def _ask(
        self, source: DirectorySource, call: Callable[[], Awaitable[T]], what: str
    ) -> tuple[T | None, bool]:
        """The source's answer and True, or None and False when it failed or was too slow."""
        try:
            async with asyncio.timeout(source.timeout_s):
                return await call(), True
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            log.warning(
                "directory source too slow", source=source.name, op=what,
                timeout_ms=round(source.timeout_s * 1000),
            )  # fmt: skip
        except Exception as exc:
            log.warning("directory source failed", source=source.name, op=what, error=str(exc))
        return None, False

    async def _ask_all(
        self, calls: Sequence[tuple[DirectorySource, Callable[[], Awaitable[T]]]], what: str
    ) -> list[tuple[T | None, bool]]:
        if len(calls) == 1:  # no task for the common one-source case
            return [await self._ask(calls[0][0], calls[0][1], what)]
        return list(await asyncio.gather(*(self._ask(s, c, what) for s, c in calls)))

    # ---- the directory -------------------------------------------------------------------

    async def resolve(self, caller_id: str | None) -> Resolution:
        caller = caller_id if isinstance(caller_id, str) else ""
        number = normalise(caller_id, self._region, self._internal_max_digits)
        if number.kind == "anonymous":
            return ChainResolution("anonymous", None, caller)
        if number.kind == "internal":
            return ChainResolution("internal", None, caller)
        e164 = number.e164
        if e164 is None:
            return ChainResolution("unknown", None, caller)
        answers = await self._ask_all(
            [(s, _bind_number(s, e164)) for s in self._sources], "by_number"
        )
        unavailable = tuple(
            s.name for s, (_, ok) in zip(self._sources, answers, strict=True) if not ok
        )
        if len(unavailable) == len(self._sources):
            raise CrmUnavailable("no directory source answered: " + ", ".join(unavailable))
        candidates = self._candidates(
            unavailable,
            [
                (s.name, records or [])
                for s, (records, ok) in zip(self._sources, answers, strict=True)
                if ok
            ],
        )
        status: ResolutionStatus = (
            "unknown" if not candidates else "match" if len(candidates) == 1 else "ambiguous"
        )
        return ChainResolution(status, e164, caller, candidates, unavailable=unavailable)

    def _candidates(
        self, unavailable: tuple[str, ...], answered: list[tuple[str, list[SourceRecord]]]
    ) -> tuple[Candidate, ...]:
        groups: list[list[tuple[str, SourceRecord]]] = []
        for source, records in answered:
            for record in records:
                for group in groups:
                    if all(s != source for s, _ in group) and any(
                        _same_customer(record, r) for _, r in group
                    ):
                        group.append((source, record))
                        break
                else:
                    groups.append([(source, record)])
        return tuple(self._candidate(group, unavailable) for group in groups)

    def _candidate(
        self, group: list[tuple[str, SourceRecord]], unavailable: tuple[str, ...]
    ) -> SourcedCandidate:
        customer_id = next((r.customer_id for _, r in group if r.customer_id is not None), None)
        if customer_id is None:
            customer_id = remote_customer_id(group[0][0], group[0][1].key)
        self._remember(customer_id, tuple((s, r.key) for s, r in group), unavailable)
        first = group[0][1]
        external_id = next((r.external_id for _, r in group if r.external_id), None)
        reasons = "; ".join(r.rank_reason for _, r in group if r.rank_reason)
        return SourcedCandidate(
            customer_id, external_id, first.name, reasons, sources=tuple(s for s, _ in group)
        )

    def _remember(
        self, customer_id: int, links: tuple[Link, ...], unavailable: tuple[str, ...] = ()
    ) -> None:
        known = self._links.pop(customer_id, ())
        merged = known + tuple(link for link in links if link not in known)
        self._links[customer_id] = merged
        if unavailable:
            self._missed[customer_id] = unavailable
        else:
            self._missed.pop(customer_id, None)
        while len(self._links) > self._max_links:
            forgotten, _ = self._links.popitem(last=False)
            self._missed.pop(forgotten, None)

    async def view(self, customer_id: int) -> CustomerView | None:
        links = [
            (self._by_name[s], key) for s, key in self.links(customer_id) if s in self._by_name
        ]
        if not links:
            return None
        answers = await self._ask_all([(s, _bind_key(s, key)) for s, key in links], "by_key")
        unavailable = tuple(
            s.name for (s, _), (_, ok) in zip(links, answers, strict=True) if not ok
        )
        if len(unavailable) == len(links):
            raise CrmUnavailable("no directory source answered: " + ", ".join(unavailable))
        records = [
            (s.name, record)
            for (s, _), (record, ok) in zip(links, answers, strict=True)
            if ok and record is not None
        ]
        if not records:
            return None
        missed = self._missed.get(customer_id, ())
        return merge_view(customer_id, records, tuple(dict.fromkeys(unavailable + missed)))

    async def routing_facts(self, customer_id: int) -> RoutingFacts | None:
        links = self.links(customer_id)
        if len(links) == 1:
            source = self._by_name.get(links[0][0])
            facts = getattr(source, "routing_facts", None)
            if source is not None and callable(facts):
                answer, ok = await self._ask(source, lambda: facts(links[0][1]), "routing_facts")
                if not ok:
                    raise CrmUnavailable(f"directory source {source.name} did not answer")
                if answer is None:
                    return None
                result: RoutingFacts = answer
                return result
        view = await self.view(customer_id)
        return RoutingFacts.from_view(view) if view is not None else None

    async def resolve_for_routing(
        self, caller_id: str | None, *, facts: bool = True
    ) -> tuple[Resolution, RoutingFacts | None]:
        resolution = await self.resolve(caller_id)
        if not facts or resolution.status != "match" or resolution.customer_id is None:
            return resolution, None
        return resolution, await self.routing_facts(resolution.customer_id)

    async def search(self, query: str, limit: int = 20) -> list[Candidate]:
        answers = await self._ask_all(
            [(s, _bind_search(s, query, limit)) for s in self._sources], "search"
        )
        if not any(ok for _, ok in answers):
            raise CrmUnavailable("no directory source answered the search")
        answered = [
            (s.name, records or [])
            for s, (records, ok) in zip(self._sources, answers, strict=True)
            if ok
        ]
        unavailable = tuple(
            s.name for s, (_, ok) in zip(self._sources, answers, strict=True) if not ok
        )
        return list(self._candidates(unavailable, answered))[:limit]

    async def close(self) -> None:
        for source in self._sources:
            try:
                await source.close()
            except Exception as exc:
                log.warning("directory source close failed", source=source.name, error=repr(exc))


def _is_store(source: DirectorySource) -> bool:
    return getattr(source, "store", None) is not None


def _bind_number(source: DirectorySource, e164: str) -> Callable[[], Awaitable[list[SourceRecord]]]:
    return lambda: source.by_number(e164)


def _bind_key(source: DirectorySource, key: str) -> Callable[[], Awaitable[SourceRecord | None]]:
    return lambda: source.by_key(key)


def _bind_search(
    source: DirectorySource, query: str, limit: int
) -> Callable[[], Awaitable[list[SourceRecord]]]:
    return lambda: source.search(query, limit)


def merge_view(
    customer_id: int, records: list[tuple[str, SourceRecord]], unavailable: tuple[str, ...]
) -> SourcedView:
    """One view from the records of one customer, in chain order, each field attributed."""
    fields: dict[str, Any] = {}
    sources: dict[str, str] = {}
    flags: list[str] = []
    for source, record in records:
        for name, value in record.fields.items():
            if name == "flags":
                for flag in value:
                    if flag not in flags:
                        flags.append(flag)
                        sources[f"flags.{flag}"] = source
            elif name not in fields and value not in (None, "", ()):
                fields[name] = value
                sources[name] = source
    if "name" not in fields:
        fields["name"] = records[0][1].name
        sources["name"] = records[0][0]
    return SourcedView(
        customer_id=customer_id,
        external_id=fields.get("external_id"),
        name=str(fields["name"]),
        kind=str(fields.get("kind") or "person"),
        organisation=fields.get("organisation"),
        language=fields.get("language"),
        email=fields.get("email"),
        address=fields.get("address"),
        phones=tuple(fields.get("phones", ())),
        flags=tuple(flags),
        highlights=tuple(f for f in flags if f in _HIGHLIGHT_FLAGS),
        open_cases=tuple(fields.get("open_cases", ())),
        orders=tuple(fields.get("orders", ())),
        products=tuple(fields.get("products", ())),
        interactions=tuple(fields.get("interactions", ())),
        contacts=tuple(fields.get("contacts", ())),
        sources=sources,
        unavailable=unavailable,
    )
