"""The REST API over a real socket: auth, customers, calls, escalation, dialling, agent state."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from http_world import (
    AGI_TOKEN,
    CALLER,
    DNC_NUMBER,
    SHARED_NUMBER,
    TOKENS,
    World,
    customer_view,
    headers,
    memory_crm,
    running_api,
)

A1, A2, T2, SUP = "Agent 1001", "Agent 1002", "Agent 2001", "Supervisor"


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with running_api() as w:
        yield w


# ---- auth ----------------------------------------------------------------------------------


async def test_login_with_a_token_returns_the_agents_identity(world: World) -> None:
    resp = await world.client.post("/api/login", json={"token": TOKENS[A1]})
    assert resp.status == 200
    agent = (await resp.json())["agent"]
    assert agent == {
        "name": A1,
        "member": A1,
        "interface": "Local/1001@agents",
        "role": "agent",
        "tiers": ["tier1"],
    }


async def test_login_with_an_unknown_token_is_refused(world: World) -> None:
    resp = await world.client.post("/api/login", json={"token": "guess"})
    assert resp.status == 401
    resp = await world.client.post("/api/login", json={})
    assert resp.status == 400
    assert "token" in (await resp.json())["error"]


async def test_api_needs_a_bearer_token(world: World) -> None:
    for path in ("/api/calls", "/api/customers?q=ada", "/api/me"):
        resp = await world.client.get(path)
        assert resp.status == 401, path
        resp = await world.client.get(path, headers={"Authorization": "Bearer nope"})
        assert resp.status == 401, path
    resp = await world.client.get("/api/me", headers=headers(A1))
    assert (await resp.json())["agent"]["name"] == A1


async def test_health_metrics_openapi_and_the_page_need_no_token(world: World) -> None:
    resp = await world.client.get("/healthz")
    assert resp.status == 200
    assert (await resp.json())["ami"] is True
    world.ami.connected = False
    resp = await world.client.get("/healthz")
    assert resp.status == 503
    assert (await resp.json()) | {"time": 0} == {
        "ok": False,
        "status": "down",
        "ami": False,
        "db": True,
        "desktops": 0,
        "time": 0,
    }
    resp = await world.client.get("/metrics")
    text = await resp.text()
    assert resp.status == 200
    assert 'cti_http_requests_total{method="GET",route="/healthz",status="503"} 1.0' in text
    assert "cti_desktops_connected 0.0" in text
    resp = await world.client.get("/api/openapi.json")
    doc = await resp.json()
    assert doc["openapi"].startswith("3.")
    assert "/api/calls/{call_id}/escalate" in doc["paths"]
    assert "EscalateBody" in doc["components"]["schemas"]
    resp = await world.client.get("/")
    assert resp.status == 200
    assert "<html" in (await resp.text()).lower()


async def test_api_route_needs_its_own_token_even_from_loopback(world: World) -> None:
    ask = {"caller": CALLER, "dnid": "08005550100"}
    for auth in ({}, headers(SUP), {"Authorization": "Bearer not-the-agi-token"}):
        resp = await world.client.post("/api/route", json=ask, headers=auth)
        assert resp.status == 401, auth
        assert set(await resp.json()) == {"error"}
    resp = await world.client.post(
        "/api/route", json=ask, headers={"Authorization": f"Bearer {AGI_TOKEN}"}
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["dialplan"]["CTI_QUEUE"] == "tier1"


async def test_api_route_answers_nobody_when_no_agi_token_is_configured() -> None:
    async with running_api(agi_token="") as w:
        for auth in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer x"}):
            resp = await w.client.post("/api/route", json={"caller": CALLER}, headers=auth)
            assert resp.status == 401
            assert "http_token" in (await resp.json())["error"]


async def test_api_route_is_in_the_openapi_document_with_its_own_credential(
    world: World,
) -> None:
    doc = await (await world.client.get("/api/openapi.json")).json()
    route = doc["paths"]["/api/route"]["post"]
    assert route["security"] == [{"agiToken": []}]
    assert doc["components"]["securitySchemes"]["agiToken"]["scheme"] == "bearer"
    body = route["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert body.endswith("/RouteBody") and "RouteBody" in doc["components"]["schemas"]
    app_routes = {
        (r.method, r.resource.canonical)
        for r in world.client.app.router.routes()
        if r.resource is not None and r.method != "HEAD"
    }
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert app_routes - documented == {("GET", "/"), ("GET", "/desktop")}


async def test_the_favicon_request_is_not_refused(world: World) -> None:
    resp = await world.client.get("/favicon.ico")
    assert resp.status in (200, 204)


async def test_cors_is_off_by_default(world: World) -> None:
    resp = await world.client.get("/healthz", headers={"Origin": "https://crm.example.com"})
    assert "Access-Control-Allow-Origin" not in resp.headers


async def test_cors_allows_only_configured_origins() -> None:
    async with running_api(cors_origins=["https://crm.example.com"]) as w:
        ok = {"Origin": "https://crm.example.com", "Access-Control-Request-Method": "POST"}
        resp = await w.client.options("/api/calls/originate", headers=ok)
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Origin"] == "https://crm.example.com"
        assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]
        resp = await w.client.get("/api/me", headers={**headers(A1), "Origin": ok["Origin"]})
        assert resp.headers["Access-Control-Allow-Origin"] == "https://crm.example.com"
        resp = await w.client.get("/api/me", headers={**headers(A1), "Origin": "https://evil"})
        assert "Access-Control-Allow-Origin" not in resp.headers


# ---- customers -----------------------------------------------------------------------------


async def test_customer_search_and_360_view(world: World) -> None:
    resp = await world.client.get("/api/customers?q=lovel", headers=headers(A1))
    assert [c["name"] for c in (await resp.json())["customers"]] == ["Ada Lovelace"]
    resp = await world.client.get("/api/customers/1", headers=headers(A1))
    view = await resp.json()
    assert view["name"] == "Ada Lovelace"
    assert view["highlights"] == ["vip", "hearing_impaired"]
    assert view["orders"][0]["delivery_state"] == "in_transit"


async def test_customer_errors_name_the_parameter(world: World) -> None:
    resp = await world.client.get("/api/customers?q=a", headers=headers(A1))
    assert resp.status == 400 and (await resp.json())["error"].startswith("q:")
    resp = await world.client.get("/api/customers?q=ada&limit=x", headers=headers(A1))
    assert resp.status == 400 and (await resp.json())["error"].startswith("limit:")
    resp = await world.client.get("/api/customers/abc", headers=headers(A1))
    assert resp.status == 400 and (await resp.json())["error"].startswith("id:")
    resp = await world.client.get("/api/customers/99", headers=headers(A1))
    assert resp.status == 404


# ---- calls ---------------------------------------------------------------------------------


async def test_agents_see_their_own_calls_and_supervisors_all(world: World) -> None:
    await world.queued_call("c1")
    await world.ring("c1", "1001")
    await world.queued_call("c2")
    await world.ring("c2", "1002")

    async def ids(who: str) -> list[str]:
        resp = await world.client.get("/api/calls", headers=headers(who))
        return [c["call_id"] for c in (await resp.json())["calls"]]

    assert await ids(A1) == ["c1"]
    assert await ids(A2) == ["c2"]
    assert await ids(SUP) == ["c1", "c2"]
    resp = await world.client.get("/api/calls/c1", headers=headers(A1))
    call = await resp.json()
    assert call["caller"] == CALLER and call["view"]["name"] == "Ada Lovelace"


async def test_another_agents_call_is_forbidden_and_an_unknown_one_not_found(world: World) -> None:
    await world.queued_call("c1")
    await world.ring("c1", "1001")
    resp = await world.client.get("/api/calls/c1", headers=headers(A2))
    assert resp.status == 403
    resp = await world.client.post("/api/calls/c1/notes", json={"text": "x"}, headers=headers(A2))
    assert resp.status == 403
    assert world.calls.get("c1").notes == []  # type: ignore[union-attr]
    resp = await world.client.get("/api/calls/nope", headers=headers(A1))
    assert resp.status == 404
    resp = await world.client.post(
        "/api/calls/nope/notes", json={"text": "x"}, headers=headers(SUP)
    )
    assert resp.status == 404


async def test_notes_and_disposition_are_kept_on_the_call(world: World) -> None:
    await world.queued_call("c1")
    await world.ring("c1", "1001")
    await world.answer("c1", "1001")
    resp = await world.client.post(
        "/api/calls/c1/notes", json={"text": "router reboots hourly"}, headers=headers(A1)
    )
    assert resp.status == 201
    assert (await resp.json())["notes"][0]["text"] == "router reboots hourly"
    resp = await world.client.post(
        "/api/calls/c1/disposition", json={"code": "resolved"}, headers=headers(A1)
    )
    assert resp.status == 200
    ctx = world.calls.get("c1")
    assert ctx is not None and ctx.disposition == "resolved" and ctx.disposition_by == A1
    assert ctx.notes[0]["author"] == A1


async def test_bad_bodies_get_400_naming_the_field_and_change_nothing(world: World) -> None:
    await world.queued_call("c1")
    await world.answer("c1", "1001")
    cases = [
        ("/api/calls/c1/notes", {}, "text"),
        ("/api/calls/c1/notes", {"text": ""}, "text"),
        ("/api/calls/c1/notes", {"text": "x", "colour": "red"}, "colour"),
        ("/api/calls/c1/disposition", {"code": 5}, "code"),
        ("/api/calls/c1/escalate", {"reason": "x"}, "tier"),
        ("/api/calls/c1/escalate", {"tier": "tier2"}, "reason"),
        ("/api/calls/c1/escalate", {"tier": "tier9", "reason": "x"}, "tier"),
        ("/api/calls/originate", {"number": "call me"}, "number"),
        ("/api/agent/queues", {"queue": "tier1", "action": "dance"}, "action"),
        ("/api/agent/pause", {"paused": "maybe"}, "paused"),
    ]
    for path, body, field in cases:
        resp = await world.client.post(path, json=body, headers=headers(A1))
        assert resp.status == 400, (path, body)
        assert (await resp.json())["error"].startswith(field), (path, body)
    resp = await world.client.post("/api/calls/c1/notes", data=b"{not json", headers=headers(A1))
    assert resp.status == 400 and "JSON" in (await resp.json())["error"]
    ctx = world.calls.get("c1")
    assert ctx is not None and ctx.notes == [] and ctx.disposition is None
    assert ctx.escalations == [] and world.ami.actions == []


# ---- escalation ----------------------------------------------------------------------------


async def test_escalating_a_waiting_caller_redirects_with_the_escalation_priority(
    world: World,
) -> None:
    await world.queued_call("c1")
    await world.ring("c1", "1001")
    resp = await world.client.post(
        "/api/calls/c1/escalate",
        json={"tier": "tier2", "reason": "line fault", "note": "tested the line"},
        headers=headers(SUP),
    )
    assert resp.status == 200, await resp.text()
    channel = "Local/08005550100@from-pstn-c1;2"
    assert world.ami.actions == [
        {"Action": "Setvar", "Channel": channel, "Variable": "CTI_PRIORITY", "Value": "10"},
        {
            "Action": "Setvar",
            "Channel": channel,
            "Variable": "CTI_ESCALATION_REASON",
            "Value": "line fault",
        },
        {
            "Action": "Redirect",
            "Channel": channel,
            "Context": "transfer",
            "Exten": "8002",
            "Priority": "1",
        },
    ]
    assert (await resp.json())["action"] == "Redirect"
    escalation = world.calls.get("c1").escalations[0]  # type: ignore[union-attr]
    assert (escalation["tier"], escalation["reason"], escalation["note"]) == (
        "tier2",
        "line fault",
        "tested the line",
    )


async def test_escalating_a_bridged_call_blind_transfers_from_the_agents_channel(
    world: World,
) -> None:
    await world.queued_call("c1")
    await world.ring("c1", "1001")
    await world.answer("c1", "1001")
    resp = await world.client.post(
        "/api/calls/c1/escalate",
        json={"tier": "tier3", "reason": "needs engineering"},
        headers=headers(A1),
    )
    assert resp.status == 200, await resp.text()
    assert world.ami.names() == ["Setvar", "Setvar", "BlindTransfer"]
    assert world.ami.actions[0]["Value"] == "10"  # tier3 by default: priority 0 + boost 10
    assert world.ami.actions[2] == {
        "Action": "BlindTransfer",
        "Channel": "Local/1001@agents-c1;1",
        "Exten": "8003",
        "Context": "transfer",
    }
    escalation = world.calls.get("c1").escalations[0]  # type: ignore[union-attr]
    assert escalation["from_agent"] == A1


async def test_an_agent_cannot_escalate_someone_elses_call(world: World) -> None:
    await world.queued_call("c1")
    await world.answer("c1", "1001")
    resp = await world.client.post(
        "/api/calls/c1/escalate", json={"tier": "tier2", "reason": "x"}, headers=headers(A2)
    )
    assert resp.status == 403
    assert world.ami.actions == []


async def test_ami_refusal_is_502_with_asterisks_message_and_nothing_recorded(
    world: World,
) -> None:
    await world.queued_call("c1")
    world.ami.refuse["Redirect"] = "Channel does not exist: Local/x"
    resp = await world.client.post(
        "/api/calls/c1/escalate", json={"tier": "tier2", "reason": "x"}, headers=headers(SUP)
    )
    assert resp.status == 502
    assert "Channel does not exist: Local/x" in (await resp.json())["error"]
    assert world.calls.get("c1").escalations == []  # type: ignore[union-attr]


# ---- click to dial -------------------------------------------------------------------------


async def test_click_to_dial_rings_the_agents_phone_then_the_number(world: World) -> None:
    resp = await world.client.post(
        "/api/calls/originate", json={"number": "+44 20 7123 4567"}, headers=headers(A1)
    )
    assert resp.status == 202, await resp.text()
    assert world.ami.actions == [
        {
            "Action": "Originate",
            "Channel": "Local/1001@agents",
            "Context": "dial-out",
            "Exten": CALLER,
            "Variable": "CTI_CUSTOMER_ID=1",
        }
    ]


async def test_click_to_dial_refuses_a_do_not_call_customer(world: World) -> None:
    resp = await world.client.post(
        "/api/calls/originate", json={"number": DNC_NUMBER}, headers=headers(A1)
    )
    assert resp.status == 409
    assert "do-not-call" in (await resp.json())["error"]
    resp = await world.client.post(
        "/api/calls/originate",
        json={"number": "+441632960000", "customer_id": 2},
        headers=headers(A1),
    )
    assert resp.status == 409
    resp = await world.client.post(
        "/api/calls/originate",
        json={"number": "+441632960000", "customer_id": 77},
        headers=headers(A1),
    )
    assert resp.status == 404
    assert world.ami.actions == []


async def test_click_to_dial_refuses_a_number_shared_with_any_do_not_call_customer() -> None:
    """Seven customers share a switchboard; the seventh refused calls: nobody dials it."""
    crm = memory_crm()
    board = "+442079460123"
    crm.shared[board] = [(10 + n, f"reason {n}") for n in range(7)]
    for n in range(7):
        crm.views[10 + n] = customer_view(10 + n, f"Office {n}", ("do_not_call",) if n == 6 else ())
    async with running_api(crm=crm) as w:
        resp = await w.client.post(
            "/api/calls/originate", json={"number": board}, headers=headers(A1)
        )
        assert resp.status == 409, await resp.text()
        assert "customer 16 (Office 6) is flagged do-not-call" in (await resp.json())["error"]
        assert w.ami.actions == []


async def test_a_supervisor_without_a_phone_cannot_dial(world: World) -> None:
    resp = await world.client.post(
        "/api/calls/originate", json={"number": CALLER}, headers=headers(SUP)
    )
    assert resp.status == 409
    resp = await world.client.post(
        "/api/calls/originate", json={"number": CALLER, "agent": A2}, headers=headers(SUP)
    )
    assert resp.status == 202
    assert world.ami.actions[0]["Channel"] == "Local/1002@agents"


# ---- agent state ---------------------------------------------------------------------------


async def test_queue_login_logout_and_pause_use_the_agents_interface(world: World) -> None:
    for body in (
        {"queue": "tier1", "action": "login"},
        {"queue": "tier1", "action": "logout"},
    ):
        resp = await world.client.post("/api/agent/queues", json=body, headers=headers(A1))
        assert resp.status == 200, await resp.text()
    resp = await world.client.post(
        "/api/agent/pause", json={"paused": True, "reason": "lunch"}, headers=headers(A1)
    )
    assert resp.status == 200
    assert world.ami.actions == [
        {
            "Action": "QueueAdd",
            "Queue": "tier1",
            "Interface": "Local/1001@agents",
            "MemberName": A1,
        },
        {"Action": "QueueRemove", "Queue": "tier1", "Interface": "Local/1001@agents"},
        {
            "Action": "QueuePause",
            "Interface": "Local/1001@agents",
            "Paused": "true",
            "Reason": "lunch",
        },
    ]


async def test_agents_may_only_join_their_tiers_and_only_act_for_themselves(
    world: World,
) -> None:
    resp = await world.client.post(
        "/api/agent/queues", json={"queue": "tier3", "action": "login"}, headers=headers(A1)
    )
    assert resp.status == 403
    resp = await world.client.post(
        "/api/agent/pause", json={"paused": True, "agent": A2}, headers=headers(A1)
    )
    assert resp.status == 403
    resp = await world.client.post(
        "/api/agent/pause", json={"paused": False, "agent": A2}, headers=headers(SUP)
    )
    assert resp.status == 200
    assert world.ami.actions == [
        {"Action": "QueuePause", "Interface": "Local/1002@agents", "Paused": "false"}
    ]


async def test_queue_action_refused_by_asterisk_is_502(world: World) -> None:
    world.ami.refuse["QueueAdd"] = "Unable to add interface: Already there"
    resp = await world.client.post(
        "/api/agent/queues", json={"queue": "tier1", "action": "login"}, headers=headers(A1)
    )
    assert resp.status == 502
    assert "Already there" in (await resp.json())["error"]


async def test_escalation_over_a_real_ami_connection_sets_the_variables_then_redirects() -> None:
    from fakes.ami_server import FakeAmiServer

    from cti.ami.client import AmiClient
    from cti.config import AmiConfig

    async with FakeAmiServer() as pbx:
        client = AmiClient(
            AmiConfig(host=pbx.host, port=pbx.port, username="cti", secret="cti-secret")
        )
        await client.start()
        try:
            await client.wait_connected(5)
            async with running_api(ami=client) as world:
                await world.queued_call("c1")
                pbx.state.add_channel("Local/08005550100@from-pstn-c1;2")
                resp = await world.client.post(
                    "/api/calls/c1/escalate",
                    json={"tier": "tier2", "reason": "line fault", "note": "tested"},
                    headers=headers(SUP),
                )
                assert resp.status == 200, await resp.text()
                sent = [(a.name, dict(a.headers)) for a in pbx.actions]
                moves = [(n, h) for n, h in sent if n in ("Setvar", "Redirect")]
                assert [(n, h.get("variable"), h.get("exten")) for n, h in moves] == [
                    ("Setvar", "CTI_PRIORITY", None),
                    ("Setvar", "CTI_ESCALATION_REASON", None),
                    ("Redirect", None, "8002"),
                ]
                assert moves[0][1]["value"] == "10"
                assert moves[2][1]["channel"] == "Local/08005550100@from-pstn-c1;2"

                await world.queued_call("gone")  # its channel does not exist on the PBX
                resp = await world.client.post(
                    "/api/calls/gone/escalate",
                    json={"tier": "tier2", "reason": "x"},
                    headers=headers(SUP),
                )
                assert resp.status == 502
                assert "No such channel" in (await resp.json())["error"]
                assert world.calls.get("gone").escalations == []  # type: ignore[union-attr]
        finally:
            await client.stop()


async def test_every_error_names_what_is_wrong(world: World) -> None:
    """``{"error": "what: why"}`` for every refusal, aiohttp's own included."""
    await world.queued_call("c1")
    await world.ring("c1", "1001")
    world.ami.refuse["QueuePause"] = "Interface not found"
    requests = [
        ("GET", "/api/calls", None, {}, 401),
        ("GET", "/api/calls/nope", None, headers(A1), 404),
        ("GET", "/api/calls/c1", None, headers(A2), 403),
        ("GET", "/api/customers/99", None, headers(A1), 404),
        ("GET", "/api/nothing-here", None, headers(A1), 404),
        ("PUT", "/api/calls/originate", None, headers(A1), 405),
        ("POST", "/api/calls/c1/notes", b"x" * 300_000, headers(A1), 413),
        ("POST", "/api/agent/pause", {"paused": True}, headers(SUP), 409),
        ("POST", "/api/agent/pause", {"paused": True}, headers(A1), 502),
        ("POST", "/api/calls/originate", {"number": DNC_NUMBER}, headers(A1), 409),
        ("POST", "/api/calls/c1/escalate", {"tier": "tier2", "reason": "x"}, headers(A2), 403),
    ]
    for method, path, body, auth, status in requests:
        kwargs = {"json": body} if isinstance(body, dict) else {"data": body}
        resp = await world.client.request(method, path, headers=auth, **kwargs)
        assert resp.status == status, (path, await resp.text())
        error = await resp.json()
        assert set(error) == {"error"}, error
        assert re.match(r"^[a-z_]+: \S", error["error"]), (path, error)


async def test_the_agent_confirms_which_customer_sharing_the_number_is_calling(
    world: World,
) -> None:
    await world.queued_call("c1", caller=SHARED_NUMBER)
    await world.ring("c1", "1001")
    await world.calls.lookup_settled("c1")
    ctx = world.calls.get("c1")
    assert ctx is not None and ctx.status == "ambiguous"
    assert [c["customer_id"] for c in ctx.candidates] == [3, 4]
    for body, status in (({"customer_id": 1}, 400), ({"customer_id": "4"}, 400)):
        resp = await world.client.post("/api/calls/c1/customer", json=body, headers=headers(A1))
        assert resp.status == status
        assert (await resp.json())["error"].startswith("customer_id:")
    resp = await world.client.post(
        "/api/calls/c1/customer", json={"customer_id": 4}, headers=headers(A2)
    )
    assert resp.status == 403  # not their call
    resp = await world.client.post(
        "/api/calls/c1/customer", json={"customer_id": 4}, headers=headers(A1)
    )
    assert resp.status == 200, await resp.text()
    call = (await resp.json())["call"]
    assert (call["customer_id"], call["confirmed_by"]) == (4, A1)
    assert call["view"]["name"] == "Acme Holdings"
    await world.event("ended", "c1", hangup_by="caller")
    assert world.calls.record_of(ctx).customer_id == 4
