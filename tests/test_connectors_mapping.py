"""The mapping is general: a CRM shape none of the examples has, configured from its answer
alone (API key header, phones as a list of typed items, nested lists, value maps)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from connectors.chain import ChainDirectory
from connectors.http_config import HttpSourceConfig
from connectors.http_source import HttpSource
from connectors.mapping import MISSING, get_path, render
from connectors.webhooks import sign

# A helpdesk-like API: GET /api/v2/users/search?phone=… and /api/v2/users/{id}.
USER = {
    "id": 5550001,
    "name": "Lin Wei",
    "contact": {"emails": [{"address": "lin@example.cn", "primary": True}]},
    "phones": [
        {"value": "(0)20 7123-4567", "type": "WORK"},
        {"value": "+86 138 0013 8000", "type": "CELL"},
    ],
    "segment": "gold",
    "locale": "zh-CN",
    "dnc": "Y",
    "subscriptions": [{"sku": "ROUTER-X"}, {"sku": "MESH-2"}],
    "tickets": [
        {"id": "T-77", "title": "No signal", "state": "OPEN", "priority": 2,
         "due": 1764756000000},
        {"id": "T-12", "title": "Invoice", "state": "SOLVED", "priority": 4, "due": None},
    ],
}  # fmt: skip

CONFIG: dict[str, Any] = {
    "name": "helpdesk",
    "type": "http",
    "base_url": "http://127.0.0.1:0",
    "timeout_ms": 2000,
    "auth": {"kind": "header", "header": "X-Api-Token", "value": "t0ken"},
    "lookup": {"path": "/api/v2/users/search", "query": {"phone": "{last7}"}, "records": "users"},
    "get": {"path": "/api/v2/users/{id}", "records": "user"},
    "mapping": {
        "id": "id",
        "name": "name",
        "email": "contact.emails.0.address",
        "language": {"path": "locale", "pattern": "^([a-z]{2})"},
        "phones": [
            {"items": "phones", "number": "value", "kind": "type",
             "kind_map": {"work": "work", "cell": "mobile"}},
        ],
        "flags": {
            "vip": {"path": "segment", "map": {"gold": True, "silver": False}},
            "do_not_call": "dnc",
        },
        "products": {"items": "subscriptions", "value": "sku"},
        "open_cases": {
            "items": "tickets",
            "where": {"status": ["open", "pending"]},
            "fields": {"case_id": "id", "subject": "title", "status": {"path": "state"},
                       "tier": {"path": "priority", "map": {"1": "tier3", "2": "tier2"},
                                "map_default": "tier1"},
                       "sla_deadline": "due"},
        },
    },
}  # fmt: skip


@pytest.fixture
async def helpdesk() -> AsyncIterator[str]:
    async def search(request: web.Request) -> web.Response:
        if request.headers.get("X-Api-Token") != "t0ken":
            return web.json_response({"error": "unauthorised"}, status=401)
        digits = request.query["phone"]
        hits = [USER] if any(digits in p["value"].replace("-", "").replace(" ", "")
                             for p in USER["phones"]) else []  # fmt: skip
        return web.json_response({"users": hits, "count": len(hits)})

    async def get(request: web.Request) -> web.Response:
        if request.match_info["id"] != str(USER["id"]):
            return web.json_response({"error": "RecordNotFound"}, status=404)
        return web.json_response({"user": USER})

    app = web.Application()
    app.router.add_get("/api/v2/users/search", search)
    app.router.add_get("/api/v2/users/{id}", get)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def test_a_shape_no_example_has_is_mapped_by_configuration_alone(helpdesk: str) -> None:
    config = HttpSourceConfig.model_validate({**CONFIG, "base_url": helpdesk})
    chain = ChainDirectory([HttpSource(config, region="GB")], region="GB")
    try:
        resolution = await chain.resolve("+442071234567")
        assert resolution.customer_id is not None
        view = await chain.view(resolution.customer_id)
        assert await chain.view(resolution.customer_id + 1) is None
    finally:
        await chain.close()

    assert resolution.status == "match"
    assert view is not None
    assert (view.name, view.email, view.language) == ("Lin Wei", "lin@example.cn", "zh")
    assert [(p.e164, p.kind) for p in view.phones] == [
        ("+442071234567", "work"),
        ("+8613800138000", "mobile"),
    ]
    assert view.flags == ("vip", "do_not_call") and view.highlights == ("vip", "do_not_call")
    assert view.products == ("ROUTER-X", "MESH-2")
    (case,) = view.open_cases
    assert (case.subject, case.status, case.tier) == ("No signal", "OPEN", "tier2")
    assert case.sla_deadline is not None and case.sla_deadline.year == 2025


def test_dotted_paths_index_lists_from_either_end_and_say_when_nothing_is_there() -> None:
    data = {"result": [{"phone": "1"}, {"phone": "2"}], "properties": {"phone": None}}
    assert get_path(data, "result.0.phone") == "1"
    assert get_path(data, "result.-1.phone") == "2"
    assert get_path(data, "result.5.phone") is MISSING
    assert get_path(data, "properties.phone") is None
    assert get_path(data, "properties.phone.x") is MISSING
    assert render("{properties.phone} {result.1.phone}", data) == "2"


def test_the_readme_snippet_verifies_our_webhook_signature() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    start = readme.index("```python\nimport hashlib, hmac, time")
    snippet = readme[start + len("```python\n") : readme.index("```", start + 10)]
    namespace: dict[str, Any] = {}
    exec(snippet, namespace)
    import time

    body = b'{"event":"ended"}'
    timestamp = str(int(time.time()))
    headers = {"X-CTI-Timestamp": timestamp, "X-CTI-Signature": sign("s3", timestamp, body)}
    assert namespace["verify"]("s3", headers, body)
    assert not namespace["verify"]("s3", headers, body + b" ")
    assert not namespace["verify"]("other", headers, body)


async def test_a_crm_without_a_get_template_pops_the_record_its_lookup_answered(
    helpdesk: str,
) -> None:
    data = {k: v for k, v in CONFIG.items() if k != "get"}
    config = HttpSourceConfig.model_validate({**data, "base_url": helpdesk, "cache_ttl_s": 0})
    chain = ChainDirectory([HttpSource(config, region="GB")], region="GB")
    try:
        resolution = await chain.resolve("+442071234567")
        assert resolution.customer_id is not None
        view = await chain.view(resolution.customer_id)
    finally:
        await chain.close()
    assert view is not None and view.name == "Lin Wei" and view.products == ("ROUTER-X", "MESH-2")
