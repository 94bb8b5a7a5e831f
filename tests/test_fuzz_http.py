"""Generated requests against every REST endpoint: never a 500, never a traceback, nothing sent
to Asterisk for a request that is refused, and the server still serving afterwards.

The endpoints come from the application's own router, so a new one is covered without editing
this file. The server is the real API over a real AMI connection to the fake Asterisk, whose
``actions`` list is what the PBX received.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import pytest
from http_world import AGI_TOKEN, World, ami_world, call_actions
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

pytestmark = pytest.mark.slow

FIELDS = [
    "token",
    "text",
    "code",
    "tier",
    "reason",
    "note",
    "number",
    "customer_id",
    "agent",
    "queue",
    "action",
    "paused",
    "caller",
    "dnid",
    "uniqueid",
    "channel",
]
NASTY = [
    "",
    "tier2",
    "tier1",
    "login",
    "Agent 1002",
    "+442071234567",
    "(020) 3991-7908",
    "line\rfault",
    "x\nAction: Originate",
    "a\x00b",
    "\ud800",
    "１２",
    "9223372036854775808",
    "x" * 5000,
]
PATH_VALUES = ["c1", "1", "0", "-1", "9223372036854775808", "１", "%00", "..", "a b", "\x00"]

texts = st.one_of(st.sampled_from(NASTY), st.text(max_size=60))
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    texts,
)
json_values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
bodies = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), json_values, max_size=5)


HOSTILE_BODIES = [b"[" * 100_000, b'{"a":' * 50_000, b"", b"null", b"[]", b"{", b"\xff\xfe"]
raw_bodies = st.one_of(
    st.sampled_from(HOSTILE_BODIES),
    st.binary(max_size=300),
    json_values.map(lambda v: repr(v).encode("utf-8", "surrogatepass")),
)

header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
# Mostly credentials that pass, so that requests reach the validation behind the auth check.
auths = st.sampled_from(
    ["Bearer token-1001", "Bearer token-super", f"Bearer {AGI_TOKEN}", None, "Bearer x"]
) | header_text.map(lambda t: f"Bearer {t}")


@pytest.fixture
async def served() -> AsyncIterator[tuple[World, Any]]:
    async with ami_world(queues={"tier1": [], "tier2": []}) as (world, pbx):
        await world.queued_call("c1")
        await world.ring("c1", "1001")
        await world.answer("c1", "1001")
        pbx.state.add_channel("Local/08005550100@from-pstn-c1;2")
        yield world, pbx


def routes(world: World) -> list[tuple[str, str]]:
    """Every (method, path template) the application serves, HEAD aside."""
    found = set()
    for route in world.client.app.router.routes():
        resource = route.resource
        if resource is not None and route.method != "HEAD":
            found.add((route.method, resource.canonical))
    return sorted(found)


def fill(template: str, draw: Any) -> str:
    path = template
    while "{" in path:
        start = path.index("{")
        end = path.index("}", start)
        value = draw(st.sampled_from(PATH_VALUES) | st.text(max_size=30))
        path = path[:start] + quote(value, safe="") + path[end + 1 :]
    if path == "/desktop":
        path += "/" + quote(draw(st.sampled_from(["app.js", "../x", "nope"]) | st.text()), safe="")
    return path


class Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@settings(
    max_examples=600,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_generated_requests_never_crash_the_api_or_reach_asterisk_when_refused(
    served: tuple[World, Any], data: st.DataObject
) -> None:
    world, pbx = served
    method, template = data.draw(st.sampled_from(routes(world)), label="route")
    path = fill(template, data.draw)
    query = data.draw(st.dictionaries(st.sampled_from(["q", "limit", "token"]), header_text))
    headers: dict[str, str] = {}
    auth = data.draw(auths, label="auth")
    if auth is not None:
        headers["Authorization"] = auth
    content_type = data.draw(st.sampled_from([None, "application/json", "text/plain", "x/y"]))
    if content_type:
        headers["Content-Type"] = content_type
    extra = data.draw(st.dictionaries(st.sampled_from(["X-Forwarded-For", "Origin"]), header_text))
    headers.update(extra)
    body: bytes | None = None
    if method == "POST":
        if data.draw(st.booleans(), label="json object body"):
            body = json.dumps(data.draw(bodies, label="body")).encode()
        else:
            body = data.draw(raw_bodies, label="raw body")

    sent_before = len(call_actions(pbx))
    errors = Errors()
    logging.getLogger().addHandler(errors)
    try:
        with capture_logs() as logs:
            resp = await world.client.request(
                method, path, params=query, data=body, headers=headers
            )
            status = resp.status
            await resp.read()
    finally:
        logging.getLogger().removeHandler(errors)

    assert status != 500, (method, path, body and body[:200], await resp.text())
    assert status < 500 or status in (502, 503), status
    bad = [e for e in logs if e.get("log_level") in ("error", "critical") or e.get("exc_info")]
    assert bad == [], bad
    assert errors.records == [], [r.getMessage() for r in errors.records]
    if 400 <= status < 500:
        assert len(call_actions(pbx)) == sent_before, (method, path, status)
    if resp.content_type == "application/json" and status >= 400:
        assert set(await resp.json()) >= {"error"}

    health = await world.client.get("/healthz")
    assert health.status == 200
