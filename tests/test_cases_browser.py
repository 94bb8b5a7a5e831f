"""Cases and callbacks on the desktop page in headless Chromium (Debian's ``chromium``, never a
downloaded browser), against the real daemon and the fake Asterisk 22 AMI server playing
recorded calls."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert
from test_callbacks_daemon import click_to_dial
from test_desktop_browser import browser
from test_desktop_identify import no_sideways_scroll
from test_e2e_calls import (
    Harness,
    call_id_of,
    harness,
    play_like_asterisk,
    split_before,
    token_of,
    trace,
)

from crm_core.callbacks import CallbackBook
from crm_core.cases import CaseBook
from crm_core.models import Case

__all__ = ["browser", "harness"]  # fixtures shared with the other browser and e2e tests

pytestmark = pytest.mark.browser


DESK = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


async def signed_in(browser: object, h: Harness, who: str, size: dict[str, int] = DESK) -> object:
    from playwright.async_api import Browser, expect

    assert isinstance(browser, Browser)
    page = await browser.new_page(viewport=size)
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
    await h.start_daemon()
    page = await signed_in(browser, h, "Agent 1001", PHONE)
    assert isinstance(page, Page)
    events = trace(traces_dir, "abandoned_in_queue")
    await h.ami.play(events)
    task = page.locator("#callback-list li", has_text="Grace Hopper")
    await expect(task).to_contain_text("+442071234567 · tier1 · waited 4 s", timeout=10_000)
    await no_sideways_scroll(page)  # a phone: the task and its button fit the width
    await page.get_by_role("button", name="Call back Grace Hopper").click()
    originate = await h.ami.wait_for_action("Originate")
    assert originate.headers["exten"] == "+442071234567"
    assert originate.headers["channel"] == "Local/1001@agents"
    await expect(task).to_contain_text("Agent 1001 is calling")
    await h.ami.play(click_to_dial("busy", "2071234567"))  # the outcome closes the task
    await expect(task).to_have_count(0)
    await expect(page.locator("#callback-list")).to_have_text("nobody to call back")


async def test_a_task_shows_on_the_desktop_at_once_and_leaves_when_the_caller_rings_again(
    browser: object, harness: Harness, traces_dir: Path
) -> None:
    """Pushed over the WebSocket: the page reads the list once, when it connects, never again."""
    from playwright.async_api import Page, Request, expect

    h = harness
    await h.start_daemon()
    page = await signed_in(browser, h, "Agent 1001")
    assert isinstance(page, Page)
    empty = page.locator("#callback-list")
    await expect(empty).to_have_text("nobody to call back")  # the list read on connecting
    reads: list[str] = []

    def count(request: Request) -> None:
        if request.method == "GET" and request.url.endswith("/api/callbacks"):
            reads.append(request.url)

    page.on("request", count)
    events = trace(traces_dir, "abandoned_in_queue")
    await h.ami.play(events)
    gave_up = time.monotonic()
    task = page.locator("#callback-list li", has_text="Grace Hopper")
    # At once: well inside the 10 s the desktop used to poll at (5 s: a loaded 2-core machine).
    await expect(task).to_contain_text("+442071234567 · tier1", timeout=5_000)
    shown_after = time.monotonic() - gave_up
    news = page.get_by_role("status").filter(has_text="to call back")
    await expect(news).to_have_text("Grace Hopper gave up in tier1: to call back.")
    await h.ami.play(trace(traces_dir, "answered_tier1"))  # the same number, answered
    await expect(task).to_have_count(0, timeout=5_000)
    await expect(empty).to_have_text("nobody to call back")
    assert reads == [], f"the page polled {len(reads)} times"
    assert shown_after < 5.0


async def test_how_long_ago_a_caller_gave_up_counts_on_without_asking_the_daemon(
    browser: object, harness: Harness
) -> None:
    from playwright.async_api import Page, Request, expect

    h = harness
    await h.start_daemon()
    book = CallbackBook(h.store.engine)
    await book.abandoned(queue="tier1", e164="+442079460123", customer_id=None, call_id="c0",
                         wait_s=75.0, at=time.time() - 56)  # fmt: skip
    page = await signed_in(browser, h, "Agent 1001", PHONE)
    assert isinstance(page, Page)
    since = page.locator("#callback-list li", has_text="+442079460123").locator(".gave-up")
    await expect(since).to_have_text(re.compile(r"gave up 5[6-9] s ago"))
    reads: list[str] = []

    def count(request: Request) -> None:
        if request.url.endswith("/api/callbacks"):
            reads.append(request.url)

    page.on("request", count)
    await expect(since).to_have_text("gave up 1 min ago", timeout=10_000)
    assert reads == []


async def test_two_callers_giving_up_together_are_both_announced_to_screen_readers(
    browser: object, harness: Harness
) -> None:
    from playwright.async_api import Page, expect

    h = harness
    daemon = await h.start_daemon()
    page = await signed_in(browser, h, "Agent 1001")
    assert isinstance(page, Page)
    await expect(page.locator("#callback-list")).to_have_text("nobody to call back")
    feed = daemon.parts.callbacks
    assert feed is not None and feed.news is not None
    [grace] = await h.store.search("Grace Hopper")
    callers = (("+442071234567", grace.customer_id), ("+442079460123", None))
    for n, (number, customer) in enumerate(callers):
        task = await feed.book.abandoned(
            queue="tier1",
            e164=number,
            customer_id=customer,
            call_id=f"gave-up-{n}",
            wait_s=20.0,
            at=time.time(),
        )
        assert task is not None
        feed.news.changed(task)  # both reach the desktop in the same moment
    await expect(page.locator("#callback-list li")).to_have_count(2)
    # A polite status line whose text is replaced says only the last: a blind agent would
    # never hear of the first caller.
    news = page.get_by_role("status").filter(has_text="to call back")
    await expect(news).to_contain_text("Grace Hopper gave up in tier1")
    await expect(news).to_contain_text("+442079460123 gave up in tier1")


async def test_a_caller_who_gives_up_while_the_desktop_reads_its_list_stays_on_it(
    browser: object, harness: Harness, traces_dir: Path
) -> None:
    """The list read on connecting was computed before the task opened and arrives after the
    task's pushed message: the task stays (it was wiped until the next reconnect, and the
    list is never read again while connected)."""
    import asyncio

    from playwright.async_api import Browser, Page, Route, expect

    h = harness
    await h.start_daemon()
    assert isinstance(browser, Browser)
    page: Page = await browser.new_page(viewport=DESK)
    read, release = asyncio.Event(), asyncio.Event()

    async def slow_list(route: Route) -> None:
        answer = await route.fetch()  # the daemon's list now: nobody yet
        read.set()
        await release.wait()
        await route.fulfill(response=answer)

    await page.route("**/api/callbacks", slow_list)
    await page.goto(h.base + "/")
    await page.get_by_label("Your agent token").fill(token_of("Agent 1001"))
    await page.get_by_role("button", name="Sign in").click()
    await asyncio.wait_for(read.wait(), 10)
    await h.ami.play(trace(traces_dir, "abandoned_in_queue"))
    task = page.locator("#callback-list li", has_text="Grace Hopper")
    await expect(task).to_have_count(1, timeout=10_000)  # pushed
    release.set()  # the list read before it arrives now
    await expect(page.locator("#callback-news")).to_have_text(
        "Grace Hopper gave up in tier1: to call back."
    )
    await page.wait_for_timeout(500)
    await expect(task).to_have_count(1)
