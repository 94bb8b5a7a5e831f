"""Hostile and malformed input: a clear 400 naming the field, and nothing reaches Asterisk.

These run over a real AMI connection to the fake Asterisk, so "nothing sent" is what the PBX
received, and with a real SQLite CRM where the size of an id matters.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from http_world import AGI_TOKEN, CALLER, World, ami_world, call_actions, headers

from crm_core.store import CrmStore

A1, SUP = "Agent 1001", "Supervisor"
NESTED = b"[" * 100_000

POSTS = [
    "/api/login",
    "/api/route",
    "/api/calls/originate",
    "/api/calls/c1/notes",
    "/api/calls/c1/disposition",
    "/api/calls/c1/escalate",
    "/api/agent/queues",
    "/api/agent/pause",
]


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[World, Any]]:
    store = await CrmStore.open(f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}")
    try:
        async with ami_world(crm=store) as (w, pbx):
            await w.queued_call("c1")
            await w.ring("c1", "1001")
            await w.answer("c1", "1001")
            pbx.state.add_channel("Local/08005550100@from-pstn-c1;2")
            yield w, pbx
    finally:
        await store.close()


def auth_for(path: str) -> dict[str, str]:
    if path == "/api/route":
        return {"Authorization": f"Bearer {AGI_TOKEN}"}
    return headers(A1)


async def error_of(resp: Any) -> str:
    assert resp.headers["Content-Type"].startswith("application/json")
    body = await resp.json()
    assert set(body) == {"error"}, body
    message: str = body["error"]
    return message


async def test_a_body_nested_100000_deep_is_a_400_on_every_post(
    world: tuple[World, Any],
) -> None:
    w, pbx = world
    for path in POSTS:
        resp = await w.client.post(path, data=NESTED, headers=auth_for(path))
        assert resp.status == 400, (path, await resp.text())
        assert (await error_of(resp)).startswith("body:"), path
    assert call_actions(pbx) == []
    assert (await w.client.get("/healthz")).status == 200


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/calls/c1/escalate", {"tier": "tier2", "reason": "line\rfault"}, "reason"),
        ("/api/calls/c1/escalate", {"tier": "tier2", "reason": "line fault\r"}, "reason"),
        (
            "/api/calls/c1/escalate",
            {"tier": "tier2", "reason": "x\nAction: Originate"},
            "reason",
        ),
        ("/api/calls/c1/escalate", {"tier": "tier2", "reason": "x", "note": "a\x00b"}, "note"),
        ("/api/calls/c1/escalate", {"tier": "tier\r2", "reason": "x"}, "tier"),
        ("/api/agent/pause", {"paused": True, "reason": "lunch\r\nQueue: tier2"}, "reason"),
        ("/api/agent/pause", {"paused": True, "queue": "tier1\r"}, "queue"),
        ("/api/agent/queues", {"queue": "tier1\n", "action": "login"}, "queue"),
        ("/api/agent/queues", {"queue": "tier1\x00", "action": "logout"}, "queue"),
        ("/api/calls/c1/notes", {"text": "router\x00resets"}, "text"),
        ("/api/calls/c1/notes", {"text": "odd \ud800 half"}, "text"),
        ("/api/calls/c1/notes", {"text": "x" * 4001}, "text"),
        ("/api/calls/c1/disposition", {"code": "resolved\r"}, "code"),
        ("/api/calls/c1/disposition", {"code": "resolved\x00"}, "code"),
        ("/api/calls/originate", {"number": "+442071234567\r"}, "number"),
        ("/api/calls/originate", {"number": CALLER, "customer_id": True}, "customer_id"),
        ("/api/calls/originate", {"number": CALLER, "customer_id": 10**40}, "customer_id"),
        ("/api/calls/originate", {"number": CALLER, "customer_id": "１"}, "customer_id"),
        ("/api/calls/originate", {"number": CALLER, "customer_id": "1"}, "customer_id"),
        ("/api/calls/originate", {"number": CALLER, "customer_id": 1.0}, "customer_id"),
        ("/api/calls/originate", {"number": CALLER, "agent": "A\r"}, "agent"),
        ("/api/login", {"token": "token-1001\x00"}, "token"),
        ("/api/route", {"caller": "+442071234567\r\n"}, "caller"),
        ("/api/route", {"caller": 442071234567}, "caller"),
    ],
)
async def test_control_characters_wrong_types_and_huge_values_are_a_400_naming_the_field(
    world: tuple[World, Any], path: str, body: dict[str, Any], field: str
) -> None:
    w, pbx = world
    resp = await w.client.post(path, json=body, headers=auth_for(path))
    assert resp.status == 400, await resp.text()
    assert (await error_of(resp)).startswith(f"{field}:")
    assert call_actions(pbx) == []  # not even the first Setvar of an escalation
    ctx = w.calls.get("c1")
    assert ctx is not None
    assert ctx.notes == [] and ctx.escalations == [] and ctx.disposition is None


@pytest.mark.parametrize(
    ("path", "raw", "field"),
    [
        ("/api/calls/c1/escalate", '{"tier": "tier1", "reason": "x", "tier": "tier2"}', "tier"),
        ("/api/calls/originate", '{"number": "020 7123 4567", "customer_id": 1, "customer_id": 2}',
         "customer_id"),
        ("/api/calls/c1/disposition", '{"code": "sale", "extra": {"a": 1, "a": 2}}', "a"),
    ],
)  # fmt: skip
async def test_a_field_given_twice_is_a_400_naming_it_not_the_last_one_taken(
    world: tuple[World, Any], path: str, raw: str, field: str
) -> None:
    """Which of the two did the client mean? Nobody knows: nothing is done."""
    w, pbx = world
    resp = await w.client.post(
        path, data=raw, headers={**auth_for(path), "Content-Type": "application/json"}
    )
    assert resp.status == 400, await resp.text()
    assert await error_of(resp) == f"{field}: given more than once"
    assert call_actions(pbx) == []
    ctx = w.calls.get("c1")
    assert ctx is not None and ctx.escalations == [] and ctx.disposition is None


async def test_a_note_may_span_lines(world: tuple[World, Any]) -> None:
    w, _ = world
    text = "tested the line\n\tno sync light"
    resp = await w.client.post("/api/calls/c1/notes", json={"text": text}, headers=headers(A1))
    assert resp.status == 201
    assert (await resp.json())["notes"][0]["text"] == text


@pytest.mark.parametrize(
    "customer_id",
    ["9223372036854775808", "99999999999999999999999999", "１", "+1", " 1", "1_0", "0", "-1"],
)
async def test_a_customer_id_in_the_path_outside_digits_or_64_bits_is_a_400(
    world: tuple[World, Any], customer_id: str
) -> None:
    w, _ = world
    resp = await w.client.get(f"/api/customers/{customer_id}", headers=headers(A1))
    assert resp.status == 400, await resp.text()
    assert (await error_of(resp)).startswith("id:")
    resp = await w.client.get("/api/customers/9223372036854775807", headers=headers(A1))
    assert resp.status == 404


async def test_originate_for_a_customer_id_past_64_bits_is_a_400_not_a_crm_failure(
    world: tuple[World, Any],
) -> None:
    w, pbx = world
    resp = await w.client.post(
        "/api/calls/originate",
        json={"number": CALLER, "customer_id": 2**63},
        headers=headers(A1),
    )
    assert resp.status == 400, await resp.text()
    assert (await error_of(resp)).startswith("customer_id:")
    assert call_actions(pbx) == []


async def test_originate_takes_a_number_as_people_write_it_and_refuses_garbage_in_words(
    world: tuple[World, Any],
) -> None:
    w, pbx = world
    resp = await w.client.post(
        "/api/calls/originate", json={"number": "(020) 3991-7908"}, headers=headers(A1)
    )
    assert resp.status == 202, await resp.text()
    sent = await pbx.wait_for_action("Originate")
    assert sent.headers["exten"] == "+442039917908"
    for garbage in ("call me", "020 7123", "++44", "0800 CALL NOW", "+999 1234 5678"):
        resp = await w.client.post(
            "/api/calls/originate", json={"number": garbage}, headers=headers(A1)
        )
        assert resp.status == 400, garbage
        message = await error_of(resp)
        assert message.startswith("number:") and "phone number" in message, message
        assert "^" not in message  # not a regular expression
    assert call_actions(pbx) == ["Originate"]


async def test_a_token_header_that_is_not_utf8_is_a_401_not_a_crash(
    world: tuple[World, Any],
) -> None:
    w, _ = world
    server = w.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(
        b"GET /api/me HTTP/1.1\r\nHost: cti\r\nAuthorization: Bearer caf\xe9\r\n"
        b"Connection: close\r\n\r\n"
    )
    status = await reader.readline()
    writer.close()
    assert status.split()[1] == b"401", status


def test_every_text_limit_is_in_the_openapi_document() -> None:
    from cti.http.openapi import build_openapi

    schemas = build_openapi()["components"]["schemas"]
    for name in ("NoteBody", "EscalateBody", "PauseBody", "QueueBody", "OriginateBody"):
        for prop, schema in schemas[name]["properties"].items():
            kinds = [schema, *schema.get("anyOf", [])]
            for kind in kinds:
                if kind.get("type") == "string" and "enum" not in kind:
                    assert "maxLength" in kind, (name, prop)
