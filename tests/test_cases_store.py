"""Cases from the pop on both stores: the reason sets the tier and the SLA deadline, and a case
carries the calls made about it (listed in the 360° view)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crm_core.cases import CaseBook, CaseClosed, CaseReason, InvalidCase
from crm_core.testing import empty_store

REASONS = {
    "billing": CaseReason("billing", "Billing question", "tier1", 48),
    "fault": CaseReason("fault", "Fault report", "tier2", 24),
}
OPENED = datetime(2026, 12, 3, 9, 30, tzinfo=UTC).timestamp()


async def test_a_case_opened_for_a_reason_takes_its_tier_and_sla_deadline(db_url: str) -> None:
    store = await empty_store(db_url)
    try:
        customer = await store.upsert_customer(name="Ada Byron", phones=["02071234567"])
        book = CaseBook(store.engine, REASONS, clock=lambda: OPENED)
        case = await book.open_case(customer.customer_id, "fault", by="Agent 1001",
                                    call_id="1795394572.8")  # fmt: skip
        assert case.tier == "tier2"
        assert case.subject == "Fault report"
        assert case.status == "open"
        assert case.opened_at == datetime.fromtimestamp(OPENED, UTC)
        assert case.sla_deadline == datetime.fromtimestamp(OPENED, UTC) + timedelta(hours=24)
        assert case.to_dict(now=OPENED + 3600)["sla_left_s"] == 23 * 3600
        assert case.to_dict(now=OPENED + 25 * 3600)["sla_left_s"] == -3600  # overdue
        view = await store.view(customer.customer_id)
        assert view is not None
        [shown] = view.open_cases
        assert (shown.case_id, shown.tier, shown.sla_deadline) == (
            case.case_id, "tier2", case.sla_deadline)  # fmt: skip
        assert shown.calls == ("1795394572.8",)
        with pytest.raises(InvalidCase, match="unknown reason 'lost'"):
            await book.open_case(customer.customer_id, "lost", by="Agent 1001")
        with pytest.raises(InvalidCase, match="no customer 999"):
            await book.open_case(999, "billing", by="Agent 1001")
    finally:
        await store.close()


async def test_a_case_lists_the_calls_made_about_it_until_it_is_closed(db_url: str) -> None:
    store = await empty_store(db_url)
    try:
        customer = await store.upsert_customer(name="Ada Byron", phones=["02071234567"])
        clock = iter(OPENED + i for i in range(100))
        book = CaseBook(store.engine, REASONS, clock=lambda: next(clock))
        case = await book.open_case(customer.customer_id, "billing", by="Agent 1001",
                                    call_id="call-1", subject="Double charge")  # fmt: skip
        await book.add_call(case.case_id, "call-2", by="Agent 1002")
        await book.add_call(case.case_id, "call-1", by="Agent 1002")  # once only
        case = await book.escalate(case.case_id, "tier2", by="Agent 1002", call_id="call-3")
        assert case.status == "escalated" and case.tier == "tier2"
        assert [c.call_id for c in case.calls] == ["call-1", "call-2", "call-3"]
        assert [c.linked_by for c in case.calls] == ["Agent 1001", "Agent 1002", "Agent 1002"]
        view = await store.view(customer.customer_id)
        assert view is not None and view.open_cases[0].calls == ("call-1", "call-2", "call-3")
        closed = await book.close(case.case_id, by="Agent 2001", note="refunded")
        assert closed.status == "closed" and "closed by Agent 2001: refunded" in closed.notes
        assert await book.open_cases(customer.customer_id) == []
        with pytest.raises(CaseClosed):
            await book.add_call(case.case_id, "call-4", by="Agent 1001")
    finally:
        await store.close()
