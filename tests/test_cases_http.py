"""Cases from the pop over the HTTP API: the real daemon, the fake Asterisk 22 AMI server
playing a recorded answered call, the CRM in a real SQLite file."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path

from test_e2e_calls import SUPERVISOR, Harness, call_id_of, harness, split_before, trace

__all__ = ["harness"]  # the fixture, shared with the end-to-end call tests


async def answered_call(h: Harness, traces_dir: Path) -> str:
    """Grace Hopper's recorded call, answered by Agent 1001 and still going."""
    events = trace(traces_dir, "answered_tier1")
    cut = split_before(events, lambda e: e.get("Event") in ("SoftHangupRequest", "Hangup"))
    desk = await h.desktop("Agent 1001")
    await h.ami.play(events[:cut])
    call_id = call_id_of(events)
    await desk.wait_for("answered", call_id, within_s=10)
    assert h.daemon is not None
    await h.daemon.parts.calls.lookup_settled(call_id)
    return call_id


async def test_a_case_opened_from_the_pop_takes_the_reasons_tier_and_sla_deadline(
    harness: Harness, traces_dir: Path
) -> None:
    h = harness
    await h.start_daemon()
    call_id = await answered_call(h, traces_dir)
    status, reasons = await h.api("GET", "/api/cases/reasons", "Agent 1001")
    assert status == 200
    assert {"name": "fault", "label": "Fault report", "tier": "tier2", "sla_hours": 24.0} in (
        reasons["reasons"])  # fmt: skip

    before = time.time()
    status, body = await h.api("POST", f"/api/calls/{call_id}/cases", "Agent 1001",
                               json={"reason": "fault"})  # fmt: skip
    after = time.time()
    assert status == 201, body
    case = body["case"]
    assert (case["subject"], case["tier"], case["status"]) == ("Fault report", "tier2", "open")
    opened = datetime.fromisoformat(case["opened_at"])
    assert before - 1 <= opened.timestamp() <= after + 1
    assert datetime.fromisoformat(case["sla_deadline"]) == opened + timedelta(hours=24)
    assert 24 * 3600 - 60 < case["sla_left_s"] <= 24 * 3600
    assert [c["call_id"] for c in case["calls"]] == [call_id]
    assert case["calls"][0]["linked_by"] == "Agent 1001"

    # The 360° view (what the next pop shows) lists the case with its calls.
    status, view = await h.api("GET", f"/api/customers/{case['customer_id']}", "Agent 1001")
    assert status == 200 and view["name"] == "Grace Hopper"
    [shown] = view["open_cases"]
    assert shown["case_id"] == case["case_id"] and shown["calls"] == [call_id]
    status, listed = await h.api("GET", f"/api/cases?customer_id={case['customer_id']}",
                                 "Agent 1001")  # fmt: skip
    assert status == 200 and [c["case_id"] for c in listed["cases"]] == [case["case_id"]]


async def test_a_case_escalates_with_the_call_and_closes(
    harness: Harness, traces_dir: Path
) -> None:
    h = harness
    await h.start_daemon()
    call_id = await answered_call(h, traces_dir)
    status, body = await h.api("POST", f"/api/calls/{call_id}/cases", "Agent 1001",
                               json={"reason": "billing", "subject": "Double charge"})  # fmt: skip
    assert status == 201, body
    case_id = body["case"]["case_id"]
    assert body["case"]["tier"] == "tier1"
    escalation = {"tier": "tier2", "reason": "refund", "case_id": case_id}
    status, body = await h.api(
        "POST", f"/api/calls/{call_id}/escalate", "Agent 1001", json=escalation
    )
    assert status == 200, body
    assert (body["case"]["status"], body["case"]["tier"]) == ("escalated", "tier2")
    assert h.ami.actions_named("BlindTransfer") or h.ami.actions_named("Redirect")
    status, body = await h.api("POST", f"/api/cases/{case_id}/close", SUPERVISOR,
                               json={"note": "refunded"})  # fmt: skip
    assert status == 200 and body["case"]["status"] == "closed"
    status, body = await h.api("POST", f"/api/cases/{case_id}/calls", "Agent 1001",
                               json={"call_id": call_id})  # fmt: skip
    assert status == 409 and "closed" in body["error"]


async def test_bad_case_requests_are_refused_and_nothing_reaches_asterisk(
    harness: Harness, traces_dir: Path
) -> None:
    h = harness
    await h.start_daemon()
    call_id = await answered_call(h, traces_dir)
    cases = f"/api/calls/{call_id}/cases"
    for who, path, body, status, error in [
        ("Agent 1001", cases, {"reason": "lost"}, 400, "unknown reason 'lost'"),
        ("Agent 1001", cases, {"reason": "fault\r"}, 400, "a carriage return"),
        ("Agent 1001", cases, {"reason": 3}, 400, "reason: Input should be a valid string"),
        ("Agent 1001", cases, {}, 400, "reason: Field required"),
        ("Agent 1001", cases, {"reason": "fault", "subject": "s" * 201}, 400,
         "subject: String should have at most 200 characters"),
        ("Agent 1001", cases, {"reason": "fault", "subject": ""}, 400,
         "subject: String should have at least 1 character"),
        ("Agent 1001", "/api/calls/nope/cases", {"reason": "fault"}, 404, "no live call"),
        ("Agent 2001", cases, {"reason": "fault"}, 403, "not one of yours"),
        ("Agent 1001", "/api/cases/x/close", {}, 400, "case_id: must be a whole number"),
        ("Agent 1001", "/api/cases/77/close", {}, 404, "no case 77"),
        ("Agent 1001", f"/api/calls/{call_id}/escalate",
         {"tier": "tier2", "reason": "r", "case_id": 77}, 404, "no case 77"),
        ("Agent 1001", f"/api/calls/{call_id}/escalate",
         {"tier": "tier2", "reason": "r", "case_id": "1"}, 400, "case_id: Input should be"),
    ]:  # fmt: skip
        got, answer = await h.api("POST", path, who, json=body)
        assert (got, error in answer.get("error", "")) == (status, True), (path, body, answer)
    acting = ("Setvar", "Redirect", "BlindTransfer", "Originate", "Hangup")
    assert [a.name for a in h.ami.actions if a.name in acting] == []
    status, view = await h.api("GET", "/api/cases?customer_id=1", "Agent 1001")
    assert status == 200 and view["cases"] == []
