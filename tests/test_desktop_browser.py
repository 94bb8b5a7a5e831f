"""The desktop page in headless Chromium: a call pops, the agent escalates, tier 2 sees the note.

Uses Debian's ``chromium`` from PATH (never downloads a browser). Call events are driven into
the hub through the live calls, as the daemon does with the tracker's output.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator

import pytest
from http_world import TOKENS, World, running_api

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
