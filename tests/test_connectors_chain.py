"""The directory chain: the built-in store beside a CSV phonebook and sources that fail."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
from fakes.routing import OPEN, routing_rules

from connectors.chain import REMOTE_ID_BASE, ChainDirectory
from connectors.csv_source import CsvSource, CsvSourceConfig
from connectors.source import SourceError, SourceRecord
from connectors.store_source import StoreSource
from crm_core.errors import CrmUnavailable
from crm_core.store import CrmStore
from crm_core.testing import empty_store
from cti.routing.router import Router

PHONEBOOK = """account,full_name,phone,mobile,email,vip,do_not_call
ACME-1,Ada Lovelace,020 7123 4567,,ada@example.com,yes,
P-7,Grace Hopper,,07700 900123,grace@example.com,,1
P-8,Shared Line,0161 496 0000,,,,
"""

MAPPING = {
    "id": "account",
    "external_id": "account",
    "name": "full_name",
    "email": "email",
    "phones": [{"path": "phone", "kind": "work"}, {"path": "mobile", "kind": "mobile"}],
    "flags": {"vip": "vip", "do_not_call": "do_not_call"},
}


def phonebook(path: Path, text: str = PHONEBOOK) -> CsvSource:
    path.write_text(text, encoding="utf-8")
    config = CsvSourceConfig(name="phonebook", path=str(path), mapping=MAPPING)  # type: ignore[arg-type]
    return CsvSource(config, region="GB")


class Hanging:
    """A source that never answers in time (a CRM that accepted the request and went quiet)."""

    writes_back = False

    def __init__(self, name: str = "slow", timeout_s: float = 0.1) -> None:
        self._name, self._timeout_s = name, timeout_s

    @property
    def name(self) -> str:
        return self._name

    @property
    def timeout_s(self) -> float:
        return self._timeout_s

    async def by_number(self, e164: str) -> list[SourceRecord]:
        await asyncio.sleep(30)
        return []

    async def by_key(self, key: str) -> SourceRecord | None:
        await asyncio.sleep(30)
        return None

    async def search(self, query: str, limit: int) -> list[SourceRecord]:
        await asyncio.sleep(30)
        return []

    async def close(self) -> None:
        return None


class Broken(Hanging):
    async def by_number(self, e164: str) -> list[SourceRecord]:
        raise SourceError("connection refused")

    async def by_key(self, key: str) -> SourceRecord | None:
        raise SourceError("connection refused")


@pytest.fixture
async def store(tmp_path: Path) -> CrmStore:
    store = await empty_store(f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}")
    yield store  # type: ignore[misc]
    await store.close()


async def test_a_customer_in_the_store_and_the_phonebook_is_one_match_with_fields_attributed(
    store: CrmStore, tmp_path: Path
) -> None:
    ada = await store.upsert_customer(
        name="Ada King", external_id="ACME-1", phones=["+44 20 7123 4567"], language="en"
    )
    chain = ChainDirectory(
        [StoreSource(store, timeout_s=5.0), phonebook(tmp_path / "book.csv")], region="GB"
    )

    resolution = await chain.resolve("+442071234567")
    view = await chain.view(ada.customer_id)

    assert resolution.status == "match"
    assert resolution.customer_id == ada.customer_id
    assert resolution.candidates[0].sources == ("store", "phonebook")  # type: ignore[attr-defined]
    assert view is not None
    assert (view.name, view.language, view.email) == ("Ada King", "en", "ada@example.com")
    assert view.flags == ("vip",) and view.highlights == ("vip",)
    assert view.sources["name"] == "store"  # type: ignore[attr-defined]
    assert view.sources["email"] == "phonebook"  # type: ignore[attr-defined]
    assert view.sources["flags.vip"] == "phonebook"  # type: ignore[attr-defined]
    assert view.to_dict()["unavailable"] == []


async def test_a_number_stored_in_national_format_matches_the_callers_e164(
    store: CrmStore, tmp_path: Path
) -> None:
    chain = ChainDirectory(
        [StoreSource(store, timeout_s=5.0), phonebook(tmp_path / "book.csv")], region="GB"
    )

    by_work = await chain.resolve("+442071234567")
    by_mobile = await chain.resolve("00447700900123")

    assert [c.name for c in by_work.candidates] == ["Ada Lovelace"]
    assert [c.name for c in by_mobile.candidates] == ["Grace Hopper"]
    assert by_mobile.customer_id is not None and by_mobile.customer_id >= REMOTE_ID_BASE
    view = await chain.view(by_mobile.customer_id)
    assert view is not None and view.flags == ("do_not_call",)


async def test_two_customers_for_one_number_across_sources_are_ambiguous(
    store: CrmStore, tmp_path: Path
) -> None:
    await store.upsert_customer(name="Someone Else", external_id="X-1", phones=["01614960000"])
    chain = ChainDirectory(
        [StoreSource(store, timeout_s=5.0), phonebook(tmp_path / "book.csv")], region="GB"
    )

    resolution = await chain.resolve("+441614960000")

    assert resolution.status == "ambiguous"
    assert resolution.customer_id is not None  # ranked, but nobody is picked
    assert sorted(c.name for c in resolution.candidates) == ["Shared Line", "Someone Else"]


async def test_a_slow_source_is_reported_unavailable_and_holds_nothing_past_its_timeout(
    store: CrmStore, tmp_path: Path
) -> None:
    ada = await store.upsert_customer(name="Ada", external_id="A", phones=["02071234567"])
    chain = ChainDirectory([StoreSource(store, timeout_s=5.0), Hanging(timeout_s=0.2)], region="GB")

    started = time.monotonic()
    resolution = await chain.resolve("+442071234567")
    view = await chain.view(ada.customer_id)
    elapsed = time.monotonic() - started

    assert resolution.status == "match"
    assert resolution.unavailable == ("slow",)  # type: ignore[attr-defined]
    assert view is not None and view.name == "Ada"
    # The pop says who did not answer: the slow CRM may know more of Ada.
    assert view.unavailable == ("slow",)  # type: ignore[attr-defined]
    assert elapsed < 1.5  # two lookups, each bounded by the slow source's 200 ms


async def test_every_source_down_is_crm_unavailable_and_the_router_still_answers_in_time(
    tmp_path: Path,
) -> None:
    chain = ChainDirectory([Hanging(timeout_s=0.15), Broken("broken")], region="GB")
    with pytest.raises(CrmUnavailable):
        await chain.resolve("+442071234567")

    chain = ChainDirectory([Hanging(timeout_s=5.0), Broken("broken")], region="GB")
    router = Router(chain, routing_rules(), deadline_s=0.3, clock=lambda: OPEN)
    started = time.monotonic()
    decision = await router.route("+442071234567")
    elapsed = time.monotonic() - started

    assert decision.fallback and decision.status == "unavailable"
    assert elapsed < 0.3 + 0.1


async def test_anonymous_and_internal_callers_ask_no_source() -> None:
    chain = ChainDirectory([Broken("broken")], region="GB")
    assert (await chain.resolve("anonymous")).status == "anonymous"
    assert (await chain.resolve("201")).status == "internal"
    assert (await chain.resolve("not a number")).status == "unknown"


async def test_the_phonebook_is_read_again_when_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "book.csv"
    book = phonebook(path)
    chain = ChainDirectory([book], region="GB")
    assert (await chain.resolve("+442079460000")).status == "unknown"

    path.write_text(PHONEBOOK + "NEW-1,New Person,020 7946 0000,,,,\n", encoding="utf-8")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000_000))

    resolution = await chain.resolve("+442079460000")
    assert [c.name for c in resolution.candidates] == ["New Person"]
    assert book.loads == 2
    found = await chain.search("grace", 10)
    assert [c.name for c in found] == ["Grace Hopper"]
