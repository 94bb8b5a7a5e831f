"""The ``http`` source, driven through the shipped example configs against real HTTP servers
that answer as HubSpot, SuiteCRM 8 and Odoo document their APIs."""

from __future__ import annotations

import asyncio
import time
import tomllib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fakes.crm_servers import FakeHubSpot, FakeOdoo, FakeSuiteCrm

from connectors.chain import ChainDirectory
from connectors.http_config import HttpSourceConfig
from connectors.http_source import HttpSource
from connectors.source import SourceError
from crm_core.errors import CrmUnavailable
from crm_core.types import InteractionRecord

EXAMPLES = Path(__file__).resolve().parent.parent / "config" / "connectors"
ADA = "+442071234567"  # kept by every CRM here as "020 7123 4567"
GRACE = "+447700900123"


def example(name: str, base_url: str, **overrides: Any) -> HttpSourceConfig:
    text = (EXAMPLES / f"{name}.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)["directories"][0]
    data["base_url"] = base_url + ("/legacy" if name == "suitecrm" else "")
    data.setdefault("timeout_ms", 250)
    data["timeout_ms"] = max(data["timeout_ms"], 1500)  # a loaded test machine, not the CRM
    data.update(overrides)
    return HttpSourceConfig.model_validate(data)


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUBSPOT_TOKEN", FakeHubSpot.TOKEN)
    monkeypatch.setenv("SUITECRM_CLIENT_ID", FakeSuiteCrm.CLIENT_ID)
    monkeypatch.setenv("SUITECRM_CLIENT_SECRET", FakeSuiteCrm.CLIENT_SECRET)
    monkeypatch.setenv("ODOO_API_KEY", FakeOdoo.PASSWORD)


@pytest.fixture
async def hubspot() -> AsyncIterator[FakeHubSpot]:
    async with FakeHubSpot().running() as server:
        yield server  # type: ignore[misc]


@pytest.fixture
async def suitecrm() -> AsyncIterator[FakeSuiteCrm]:
    async with FakeSuiteCrm().running() as server:
        yield server  # type: ignore[misc]


@pytest.fixture
async def odoo() -> AsyncIterator[FakeOdoo]:
    async with FakeOdoo().running() as server:
        yield server  # type: ignore[misc]


def finished_call() -> InteractionRecord:
    return InteractionRecord(
        call_id="1764750000.42",
        customer_id=None,
        caller=ADA,
        started_at=datetime(2026, 12, 3, 9, 0, 0, tzinfo=UTC),
        answered_at=datetime(2026, 12, 3, 9, 0, 20, tzinfo=UTC),
        ended_at=datetime(2026, 12, 3, 9, 5, 20, tzinfo=UTC),
        queues=("tier1",),
        agents=("alice",),
        wait_s=20.0,
        talk_s=300.0,
        notes="wants a callback",
        disposition="resolved",
    )


async def test_hubspot_pops_the_contact_whose_number_is_the_callers_with_open_tickets(
    hubspot: FakeHubSpot,
) -> None:
    source = HttpSource(example("hubspot", hubspot.base_url), region="GB")
    chain = ChainDirectory([source], region="GB")
    try:
        resolution = await chain.resolve(ADA)
        assert resolution.customer_id is not None
        view = await chain.view(resolution.customer_id)
        grace = await chain.resolve("07700 900123")
        found = await chain.search("hopper", 5)
    finally:
        await chain.close()

    # "+1 415 555 4567" also ends in 4567: HubSpot's search finds it, the match is ours.
    assert resolution.status == "match"
    assert [c.name for c in resolution.candidates] == ["Ada Lovelace"]
    assert view is not None
    assert (view.email, view.organisation, view.language) == (
        "ada@example.com", "Analytical Engines Ltd", "en",
    )  # fmt: skip
    assert view.flags == ("vip",)
    assert [(p.number, p.e164, p.kind) for p in view.phones] == [("020 7123 4567", ADA, "work")]
    assert [(c.case_id, c.subject, c.tier) for c in view.open_cases] == [
        (9001, "Engine jammed", "HIGH")
    ]
    assert view.sources["email"] == "hubspot"  # type: ignore[attr-defined]
    assert grace.status == "match" and grace.candidates[0].name == "Grace Hopper"
    assert [c.name for c in found] == ["Grace Hopper"]


async def test_suitecrm_gets_a_token_once_and_a_fresh_one_when_it_expires_or_is_refused(
    suitecrm: FakeSuiteCrm,
) -> None:
    suitecrm.token_lifetime = 2  # refreshed ahead of expiry, as configured (margin)
    source = HttpSource(example("suitecrm", suitecrm.base_url, cache_ttl_s=0), region="GB")
    try:
        first = await source.by_number(ADA)
        again = await source.by_number(GRACE)
        assert suitecrm.tokens_issued == 1
        await asyncio.sleep(1.2)  # past the refresh point of a 2 s token
        await source.by_number(ADA)
        assert suitecrm.tokens_issued == 2
        suitecrm.revoke_all()  # the server forgets its tokens: 401, a new token, the answer
        after_401 = await source.by_number(ADA)
        assert suitecrm.tokens_issued == 3
        record = await source.by_key(first[0].key)
    finally:
        await source.close()

    assert [r.name for r in first] == ["Ada Lovelace"]
    assert [r.name for r in again] == ["Grace Hopper"]
    assert [r.name for r in after_401] == ["Ada Lovelace"]
    assert record is not None and record.fields["flags"] == ("vip",)
    assert record.fields["organisation"] == "Analytical Engines Ltd"


async def test_suitecrm_with_wrong_client_credentials_is_a_source_error(
    suitecrm: FakeSuiteCrm, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUITECRM_CLIENT_SECRET", "wrong")
    source = HttpSource(example("suitecrm", suitecrm.base_url), region="GB")
    try:
        with pytest.raises(SourceError, match="token request refused: HTTP 401"):
            await source.by_number(ADA)
    finally:
        await source.close()


async def test_odoo_json_rpc_finds_the_partner_and_their_latest_orders(odoo: FakeOdoo) -> None:
    source = HttpSource(example("odoo", odoo.base_url), region="GB")
    chain = ChainDirectory([source], region="GB")
    try:
        resolution = await chain.resolve("0207 123 4567")
        assert resolution.customer_id is not None
        view = await chain.view(resolution.customer_id)
        grace = await chain.resolve(GRACE)
        assert grace.customer_id is not None
        grace_view = await chain.view(grace.customer_id)
        found = await chain.search("lovelace", 5)
    finally:
        await chain.close()

    assert [c.name for c in resolution.candidates] == ["Ada Lovelace"]
    assert view is not None
    assert view.external_id == "CUST-101" and view.organisation == "Analytical Engines Ltd"
    assert view.kind == "person" and view.flags == ("vip",)
    assert [(o.reference, o.status) for o in view.orders] == [
        ("S00031", "sale"),
        ("S00012", "done"),
    ]
    assert grace_view is not None and grace_view.flags == ("do_not_call",)
    assert grace_view.language == "fr"
    assert [c.name for c in found] == ["Ada Lovelace"]


async def test_odoo_refusing_the_credentials_is_a_source_error_not_a_crash(
    odoo: FakeOdoo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ODOO_API_KEY", "wrong")
    source = HttpSource(example("odoo", odoo.base_url), region="GB")
    try:
        with pytest.raises(SourceError, match="AccessDenied"):
            await source.by_number(ADA)
    finally:
        await source.close()


@pytest.mark.parametrize(
    ("name", "fake"), [("hubspot", FakeHubSpot), ("suitecrm", FakeSuiteCrm), ("odoo", FakeOdoo)]
)
async def test_each_example_writes_the_finished_call_back_to_the_customers_record(
    name: str, fake: type[FakeHubSpot | FakeSuiteCrm | FakeOdoo]
) -> None:
    async with fake().running() as server:
        source = HttpSource(example(name, server.base_url), region="GB")
        try:
            (ada,) = await source.by_number(ADA)
            await source.write_back(ada.key, finished_call())
        finally:
            await source.close()
    (written,) = server.written
    if name == "hubspot":
        assert written["associations"][0]["to"]["id"] == "101"
        assert written["properties"]["hs_call_duration"] == 300000
        assert written["properties"]["hs_call_direction"] == "INBOUND"
        assert "wants a callback" in written["properties"]["hs_call_body"]
    elif name == "suitecrm":
        attributes = written["data"]["attributes"]
        assert written["data"]["type"] == "Calls" and attributes["parent_type"] == "Contacts"
        assert attributes["parent_id"] == ada.key
        assert (attributes["duration_hours"], attributes["duration_minutes"]) == (0, 5)
        assert attributes["date_start"] == "2026-12-03 09:00:00"
    else:
        assert written["ids"] == [101] and written["message_type"] == "comment"
        assert "agent alice" in written["body"]


# ---- misbehaving CRMs (HubSpot's example config; the HTTP side is the same for all) -------


async def test_a_429_retry_after_is_honoured_no_request_goes_out_before_it(
    hubspot: FakeHubSpot,
) -> None:
    config = example("hubspot", hubspot.base_url, cache_ttl_s=0, timeout_ms=250)
    source = HttpSource(config, region="GB")
    try:
        hubspot.misbehave("429")  # Retry-After: 1, longer than the 250 ms the pop can wait
        with pytest.raises(SourceError, match="rate limited"):
            await source.by_number(ADA)
        sent = len(hubspot.requests)
        with pytest.raises(SourceError, match="rate limited"):
            await source.by_number(ADA)
        assert len(hubspot.requests) == sent  # not asked again within Retry-After
        await asyncio.sleep(1.1)
        assert [r.name for r in await source.by_number(ADA)] == ["Ada Lovelace"]
    finally:
        await source.close()


async def test_a_429_within_the_time_allowed_is_waited_out_then_retried(
    hubspot: FakeHubSpot,
) -> None:
    config = example("hubspot", hubspot.base_url, cache_ttl_s=0, timeout_ms=3000)
    source = HttpSource(config, region="GB")
    try:
        hubspot.misbehave("429")
        started = time.monotonic()
        assert [r.name for r in await source.by_number(ADA)] == ["Ada Lovelace"]
        assert time.monotonic() - started >= 1.0
        assert len(hubspot.requests) == 2
    finally:
        await source.close()


async def test_a_500_is_retried_with_backoff_and_a_failing_crm_opens_the_breaker(
    hubspot: FakeHubSpot,
) -> None:
    config = example("hubspot", hubspot.base_url, cache_ttl_s=0, retries=2, breaker_failures=3)
    source = HttpSource(config, region="GB")
    try:
        hubspot.misbehave("500")
        assert [r.name for r in await source.by_number(ADA)] == ["Ada Lovelace"]
        hubspot.always = "500"
        with pytest.raises(SourceError, match="HTTP 500"):
            await source.by_number(ADA)
        sent = len(hubspot.requests)
        with pytest.raises(SourceError, match="circuit open"):
            await source.by_number(ADA)
        assert len(hubspot.requests) == sent
    finally:
        await source.close()


async def test_an_answer_slower_than_the_timeout_makes_the_source_unavailable_in_time(
    hubspot: FakeHubSpot, tmp_path: Path
) -> None:
    source = HttpSource(example("hubspot", hubspot.base_url, timeout_ms=250), region="GB")
    chain = ChainDirectory([source], region="GB")
    hubspot.always = "slow"
    try:
        started = time.monotonic()
        with pytest.raises(CrmUnavailable):
            await chain.resolve(ADA)
        assert time.monotonic() - started < 0.25 + 0.3
    finally:
        await chain.close()


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("malformed", "malformed JSON"),
        ("huge", "over the 1000000-byte limit"),
        ("redirect", "more than 3 redirects"),
    ],
)
async def test_a_bad_answer_is_a_source_error_and_the_next_good_one_is_used(
    hubspot: FakeHubSpot, how: str, message: str
) -> None:
    source = HttpSource(example("hubspot", hubspot.base_url, cache_ttl_s=0), region="GB")
    try:
        hubspot.misbehave(*[how] * 10)
        with pytest.raises(SourceError, match=message):
            await source.by_number(ADA)
        hubspot.behave()
        assert [r.name for r in await source.by_number(ADA)] == ["Ada Lovelace"]
    finally:
        await source.close()


async def test_a_failure_message_never_carries_the_callers_full_number(
    hubspot: FakeHubSpot,
) -> None:
    by_phone = {"method": "GET", "path": "/crm/v3/objects/contacts/by-phone/{e164}"}
    config = example("hubspot", hubspot.base_url, retries=0, lookup=by_phone)
    source = HttpSource(config, region="GB")
    hubspot.always = "500"
    try:
        with pytest.raises(SourceError) as failure:
            await source.by_number(ADA)
    finally:
        await source.close()
    assert "HTTP 500" in str(failure.value)
    assert "2071234567" not in str(failure.value) and "…567" in str(failure.value)


async def test_the_router_and_the_pop_asking_at_once_make_one_request(
    hubspot: FakeHubSpot,
) -> None:
    source = HttpSource(example("hubspot", hubspot.base_url, cache_ttl_s=0), region="GB")
    try:
        first, second = await asyncio.gather(source.by_number(ADA), source.by_number(ADA))
    finally:
        await source.close()
    assert first == second and [r.name for r in first] == ["Ada Lovelace"]
    assert hubspot.requests == [("POST", "/crm/v3/objects/contacts/search")]


async def test_the_view_asks_for_the_record_and_its_lists_together(hubspot: FakeHubSpot) -> None:
    source = HttpSource(example("hubspot", hubspot.base_url, timeout_ms=1000), region="GB")
    hubspot.delay_s = 0.6  # one round trip fits the timeout, two in a row would not
    try:
        record = await source.by_key("101")
    finally:
        await source.close()
    assert record is not None and [c.case_id for c in record.fields["open_cases"]] == [9001]
