"""Cases and callbacks on the desktop page in headless Chromium (Debian's ``chromium``, never a
downloaded browser), against the real daemon and the fake Asterisk 22 AMI server playing
recorded calls."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert
from test_desktop_browser import browser
from test_e2e_calls import (
    Harness,
    call_id_of,
    harness,
    play_like_asterisk,
    split_before,
    token_of,
    trace,
)

from crm_core.cases import CaseBook
from crm_core.models import Case
from cti.config import CallbacksConfig

__all__ = ["browser", "harness"]  # fixtures shared with the other browser and e2e tests

pytestmark = pytest.mark.browser


async def signed_in(browser: object, h: Harness, who: str) -> object:
    from playwright.async_api import Browser, expect

    assert isinstance(browser, Browser)
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    await page.goto(h.base + "/")
    await page.get_by_label("Your agent token").fill(token_of(who))
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#link")).to_have_text("connected")
    return page


async def test_a_case_opened_from_the_pop_shows_its_sla_clock_and_overdue_in_red(
    browser: object, harness: Harness, traces_dir: Path
) -> None:
    from playwright.async_api import Page, expect

    h = harness
    [grace] = await h.store.search("Grace Hopper")
    overdue = datetime.now(UTC) - timedelta(hours=2, minutes=5)
    async with h.store.engine.begin() as conn:
        await conn.execute(
            insert(Case).values(
                customer_id=grace.customer_id,
                subject="Broken router",
                status="open",
                tier="tier1",
                sla_deadline=overdue,
                notes="",
                opened_at=overdue - timedelta(hours=24),
            )
        )
    await h.start_daemon()
    page = await signed_in(browser, h, "Agent 1001")
    assert isinstance(page, Page)
    events = trace(traces_dir, "answered_tier1")
    cut = split_before(events, lambda e: e.get("Event") in ("SoftHangupRequest", "Hangup"))
    await play_like_asterisk(h, events[:cut])
    call_id = call_id_of(events)
    await expect(page.locator("#customer-name")).to_have_text("Grace Hopper", timeout=10_000)

    cases = page.locator("#case-list")
    late = cases.locator("li", has_text="Broken router").locator(".sla")
    await expect(late).to_have_text("overdue by 2 h 5 min")
    await expect(late).to_have_css("color", "rgb(180, 35, 24)")  # --bad: red

    await page.get_by_label("Open a case for").select_option("fault")
    await page.get_by_role("button", name="Open case").click()
    opened = cases.locator("li", has_text="Fault report")
    await expect(opened).to_contain_text("tier2")
    await expect(opened).to_contain_text("1 call")
    await expect(opened.locator(".sla")).to_have_text("23 h 59 min left")
    await expect(opened.locator(".sla")).not_to_have_class("sla overdue")
    await expect(page.locator("#case-feedback")).to_contain_text("opened")

    book = CaseBook(h.store.engine, {})
    [late_case, fault] = await book.open_cases(grace.customer_id)
    assert fault.subject == "Fault report" and [c.call_id for c in fault.calls] == [call_id]
    assert fault.sla_deadline is not None and fault.opened_at is not None
    assert fault.sla_deadline - fault.opened_at == timedelta(hours=24)
    assert abs(fault.opened_at.timestamp() - time.time()) < 60

    # The older case gets this call too, from its row.
    await page.get_by_role("button", name=f"Add this call to case {late_case.case_id}").click()
    await expect(cases.locator("li", has_text="Broken router")).to_contain_text("1 call")


async def test_an_abandoned_caller_is_called_back_from_the_desktop(
    browser: object, harness: Harness, traces_dir: Path
) -> None:
    from playwright.async_api import Page, expect

    h = harness
    h.config = h.config.model_copy(update={"callbacks": CallbacksConfig(poll_s=0.5)})
    await h.start_daemon()
    page = await signed_in(browser, h, "Agent 1001")
    assert isinstance(page, Page)
    events = trace(traces_dir, "abandoned_in_queue")
    # As on a real PBX, the CRM has answered before the caller gives up (seconds later).
    gives_up = split_before(events, lambda e: e.get("Event") == "QueueCallerAbandon")
    await h.ami.play(events[:gives_up])
    assert h.daemon is not None
    calls, call_id = h.daemon.parts.calls, call_id_of(events)
    for _ in range(200):
        if calls.get(call_id) is not None:
            break
        await asyncio.sleep(0.02)
    await calls.lookup_settled(call_id)
    await h.ami.play(events[gives_up:])
    task = page.locator("#callback-list li", has_text="Grace Hopper")
    # The desk polls at the daemon's pace (0.5 s here) from sign-in on, not at its 10 s
    # default until the first of those has passed: ten polls' time is plenty, under load too.
    await expect(task).to_contain_text("+442071234567 · tier1 · waited 4 s", timeout=5_000)
    await page.get_by_role("button", name="Call back Grace Hopper").click()
    originate = await h.ami.wait_for_action("Originate")
    assert originate.headers["exten"] == "+442071234567"
    assert originate.headers["channel"] == "Local/1001@agents"
    await expect(task).to_contain_text("Agent 1001 is calling")
