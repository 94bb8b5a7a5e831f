"""The desktop page in headless Chromium: a call pops, the agent escalates, tier 2 sees the note.

Uses Debian's ``chromium`` from PATH (never downloads a browser). Call events are driven into
the hub through the live calls, as the daemon does with the tracker's output.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator

import pytest
from http_world import SHARED_NUMBER, TOKENS, World, running_api

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = os.environ.get("CTI_DESKTOP_SCREENSHOT", "/tmp/desktop.png")


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    if CHROMIUM is None:
        pytest.skip("chromium is not on PATH (apt install chromium); no browser is downloaded")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield chromium
        finally:
            await chromium.close()


async def signed_in(browser: object, world: World, who: str) -> object:
    from playwright.async_api import Browser, expect

    assert isinstance(browser, Browser)
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    await page.goto(str(world.client.make_url("/")))
    await page.get_by_label("Your agent token").fill(TOKENS[who])
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#link")).to_have_text("connected")
    await expect(page.locator("#who")).to_contain_text(who)
    return page


async def test_pop_escalate_and_the_tier2_agent_sees_the_note(browser: object) -> None:
    from playwright.async_api import Page, expect

    async with running_api() as world:
        tier1 = await signed_in(browser, world, "Agent 1001")
        tier2 = await signed_in(browser, world, "Agent 2001")
        assert isinstance(tier1, Page) and isinstance(tier2, Page)

        await world.queued_call("c1")
        await world.ring("c1", "1001")
        await expect(tier1.locator("#customer-name")).to_have_text("Ada Lovelace")
        await expect(tier1.locator("#flags")).to_contain_text("VIP")
        await expect(tier1.locator("#flags")).to_contain_text("Hearing impaired")
        await expect(tier1.locator("#call-state")).to_have_text("Ringing")
        await expect(tier1.locator("#orders")).to_contain_text("in_transit")
        await expect(tier2.locator("#customer-name")).to_have_text("Waiting for calls…")

        await world.answer("c1", "1001")
        await expect(tier1.locator("#call-state")).to_have_text("On call")

        await tier1.get_by_label("To tier").select_option("tier2")
        await tier1.get_by_label("Reason", exact=True).fill("line fault")
        await tier1.get_by_label("Note for the next agent").fill("router resets every hour")
        await tier1.get_by_role("button", name="Escalate").click()
        await expect(tier1.locator("#feedback")).to_have_text("Escalated to tier2.")
        assert [a["Action"] for a in world.ami.actions] == ["Setvar", "Setvar", "BlindTransfer"]

        await world.event(
            "transferred", "c1", kind="blind", from_agent="Agent 1001", to_queue="tier2"
        )
        await world.ring("c1", "2001", queue="tier2")
        await expect(tier1.locator("#call-state")).to_contain_text("Transferred")
        await expect(tier2.locator("#customer-name")).to_have_text("Ada Lovelace")
        await expect(tier2.locator("#reason")).to_have_text("line fault")
        await expect(tier2.locator("#handover")).to_contain_text("Agent 1001")
        await expect(tier2.locator("#handover-note")).to_have_text("router resets every hour")
        await tier2.screenshot(path=SCREENSHOT, full_page=True)


async def test_a_wrong_token_is_refused_on_the_page(browser: object) -> None:
    from playwright.async_api import Browser, expect

    assert isinstance(browser, Browser)
    async with running_api() as world:
        page = await browser.new_page()
        await page.goto(str(world.client.make_url("/")))
        await page.get_by_label("Your agent token").fill("not-a-token")
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.locator("#login-error")).to_contain_text("unknown token")
        await expect(page.locator("#desk")).to_be_hidden()


async def test_wrap_up_stays_with_the_call_it_was_typed_for(browser: object) -> None:
    from playwright.async_api import Page, expect

    async with running_api() as world:
        page = await signed_in(browser, world, "Agent 1001")
        assert isinstance(page, Page)
        await world.queued_call("old")
        await world.ring("old", "1001")
        await world.answer("old", "1001")
        await world.event("ended", "old", hangup_by="caller")  # the caller hangs up
        await expect(page.locator("#call-state")).to_have_text("Ended")

        await page.get_by_label("Add a note").fill("wants a refund for March")
        await page.get_by_label("Disposition").select_option("callback")
        await world.queued_call("new")  # a second later the next call pops
        await world.ring("new", "1001")
        await expect(page.locator("#call-state")).to_have_text("Ringing")
        # The screen is the new call's, with empty forms; Save there writes nothing anywhere.
        await expect(page.get_by_label("Add a note")).to_have_value("")
        await expect(page.get_by_label("Disposition")).to_have_value("")
        await page.get_by_role("button", name="Save", exact=True).click()
        await expect(page.locator("#feedback")).to_have_text(
            "Write a note or choose a disposition."
        )

        # The ended call is still on the desk, with what was typed for it.
        old_tab = page.get_by_role("button", name="Ended – wrap-up")
        await old_tab.click()
        await expect(page.get_by_label("Add a note")).to_have_value("wants a refund for March")
        await expect(page.get_by_label("Disposition")).to_have_value("callback")
        await page.get_by_role("button", name="Save", exact=True).click()
        await expect(page.locator("#feedback")).to_contain_text("Saved note and disposition")

        old, new = world.calls.get("old"), world.calls.get("new")
        assert old is not None and new is not None
        assert [n["text"] for n in old.notes] == ["wants a refund for March"]
        assert old.disposition == "callback"
        assert new.notes == [] and new.disposition is None
        # Wrapped up, the old call leaves the desk; the new one is on screen, forms empty.
        await expect(old_tab).to_have_count(0)
        await expect(page.locator("#call-state")).to_have_text("Ringing")
        await expect(page.get_by_label("Add a note")).to_have_value("")


async def test_an_ambiguous_caller_is_shown_as_one_of_several_not_as_the_first(
    browser: object,
) -> None:
    from playwright.async_api import Page, expect

    async with running_api() as world:
        page = await signed_in(browser, world, "Agent 1001")
        assert isinstance(page, Page)
        await world.queued_call("c1", caller=SHARED_NUMBER)
        await world.ring("c1", "1001")
        await expect(page.locator("#customer-name")).to_have_text("One of 2 possible customers")
        candidates = page.locator("#candidates li")
        await expect(candidates).to_have_count(2)
        await expect(candidates.nth(0)).to_contain_text("Acme Ltd")
        await expect(candidates.nth(0)).to_contain_text("open case #12 (tier1)")
        await expect(candidates.nth(1)).to_contain_text("Acme Holdings")
        await expect(candidates.nth(1)).to_contain_text("latest call 3 days ago")
        # The first candidate's record is not presented as the caller's.
        await expect(page.locator("#flags")).not_to_contain_text("VIP")
        await expect(page.locator("#cases")).not_to_contain_text("Broadband drops hourly")
        await expect(page.locator("#orders")).not_to_contain_text("ORD-7")
        await expect(page.locator("#history")).not_to_contain_text("Agent 1002")
        await expect(page.locator("#cases")).to_contain_text("not known until the caller says")

        # The caller says who they are: the agent confirms, and only then sees their record.
        await page.get_by_role("button", name="Acme Holdings is the caller").click()
        await expect(page.locator("#customer-name")).to_have_text("Acme Holdings")
        await expect(page.locator("#candidates-box")).to_be_hidden()
        await expect(page.locator("#caller-line")).to_contain_text("confirmed by Agent 1001")
        await expect(page.locator("#cases")).to_contain_text("Broadband drops hourly")
        ctx = world.calls.get("c1")
        assert ctx is not None and ctx.customer_id == 4 and ctx.confirmed_by == "Agent 1001"


async def test_escalating_shows_my_note_and_the_tier_name_of_the_transfer(
    browser: object,
) -> None:
    from playwright.async_api import Page, expect

    async with running_api() as world:
        page = await signed_in(browser, world, "Agent 1001")
        assert isinstance(page, Page)
        await world.queued_call("c1")
        await world.ring("c1", "1001")
        await world.answer("c1", "1001")
        await expect(page.locator("#call-state")).to_have_text("On call")
        await page.get_by_label("To tier").select_option("tier2")
        await page.get_by_label("Reason", exact=True).fill("line fault")
        await page.get_by_label("Note for the next agent").fill("router resets every hour")
        await page.get_by_role("button", name="Escalate").click()
        await expect(page.locator("#feedback")).to_have_text("Escalated to tier2.")
        await expect(page.locator("#notes")).to_contain_text("router resets every hour")

        # Asterisk reports the blind transfer to the tier's extension.
        await world.event("transferred", "c1", kind="blind", from_agent="Agent 1001", to="8002")
        await expect(page.locator("#call-state")).to_have_text("Transferred to Tier 2 technical")
        await expect(page.locator("#notes")).to_contain_text("router resets every hour")


async def test_a_user_without_a_phone_gets_no_pause_or_queue_buttons_and_no_console_error(
    browser: object,
) -> None:
    from playwright.async_api import Browser, expect

    assert isinstance(browser, Browser)
    async with running_api() as world:
        for who, has_phone in (("Supervisor", False), ("Agent 1001", True)):
            page = await browser.new_page()
            errors: list[str] = []
            page.on("console", lambda m, e=errors: e.append(m.text) if m.type == "error" else None)
            await page.goto(str(world.client.make_url("/")))
            await page.get_by_label("Your agent token").fill(TOKENS[who])
            await page.get_by_role("button", name="Sign in").click()
            await expect(page.locator("#link")).to_have_text("connected")
            for name in ("Pause", "Log in", "Log out"):
                button = page.get_by_role("button", name=name, exact=True)
                if has_phone:
                    await expect(button).to_be_visible()
                else:
                    await expect(button).to_have_count(0)
            if not has_phone:
                await expect(page.locator("#no-phone")).to_be_visible()
            assert errors == [], (who, errors)
            await page.close()


async def test_an_ended_call_leaves_the_desk_when_the_daemon_forgets_it(browser: object) -> None:
    from playwright.async_api import Page, expect

    async with running_api(grace_s=0.5) as world:
        page = await signed_in(browser, world, "Agent 1001")
        assert isinstance(page, Page)
        await world.queued_call("c1")
        await world.ring("c1", "1001")
        await world.answer("c1", "1001")
        await world.event("ended", "c1", hangup_by="caller")
        tab = page.get_by_role("button", name="Ended – wrap-up")
        await expect(tab).to_have_count(1)
        await page.get_by_label("Disposition").select_option("resolved")
        await page.wait_for_timeout(1500)  # the daemon's grace period is over
        assert world.calls.get("c1") is None
        await page.get_by_role("button", name="Save", exact=True).click()
        await expect(page.locator("#feedback")).to_contain_text("wrap-up time has passed")
        await expect(tab).to_have_count(0)
        await expect(page.locator("#customer-name")).to_have_text("Waiting for calls…")
