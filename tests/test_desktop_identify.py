"""Identifying the caller on the desktop page, in headless Chromium at desk and phone size.

Uses Debian's ``chromium`` from PATH (never downloads a browser); the CRM is a real SQLite
store and ended calls go through the real interaction recorder into it.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from http_world import SHARED_NUMBER, TOKENS, World, running_api
from sqlalchemy import insert

from crm_core.models import Order
from crm_core.store import CrmStore, PhoneInput
from crm_core.testing import empty_store
from cti.interactions import InteractionRecorder

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
SIZES = {"desk": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}
NEW_NUMBER = "+442071110000"


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if CHROMIUM is None:
        pytest.skip("chromium is not on PATH (apt install chromium); no browser is downloaded")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture(params=sorted(SIZES))
def size(request: pytest.FixtureRequest) -> dict[str, int]:
    return SIZES[request.param]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[CrmStore]:
    store = await empty_store(f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}")
    try:
        yield store
    finally:
        await store.close()


async def grace(store: CrmStore) -> int:
    created = await store.upsert_customer(
        name="Grace Hopper",
        external_id="ACC-1001",
        email="grace@example.com",
        address="12 Navy Row, London SW1A 1AA",
        flags=["hearing_impaired", "wheelchair_user"],
    )
    async with store.engine.begin() as conn:
        await conn.execute(
            insert(Order).values(customer_id=created.customer_id, reference="ORD-555")
        )
    return int(created.customer_id)


async def signed_in(browser: Any, world: World, who: str, size: dict[str, int]) -> Any:
    from playwright.async_api import expect

    page = await browser.new_page(viewport=size)
    await page.goto(str(world.client.make_url("/")))
    await page.get_by_label("Your agent token").fill(TOKENS[who])
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#link")).to_have_text("connected")
    return page


async def no_sideways_scroll(page: Any) -> None:
    width = await page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert width[0] <= width[1], f"the page is {width[0]} px wide in a {width[1]} px window"


async def ring(world: World, call: str, caller: str, ext: str = "1001") -> None:
    await world.queued_call(call, caller=caller)
    await world.calls.lookup_settled(call)
    await world.ring(call, ext)


async def test_a_withheld_caller_found_by_search_takes_the_call_into_their_history(
    browser: Any, store: CrmStore, size: dict[str, int]
) -> None:
    from playwright.async_api import expect

    customer = await grace(store)
    recorder = InteractionRecorder(store)
    await recorder.start()
    try:
        async with running_api(crm=store, recorder=recorder) as world:
            page = await signed_in(browser, world, "Agent 1001", size)
            await ring(world, "c1", "anonymous")
            await world.answer("c1", "1001")
            await expect(page.locator("#customer-name")).to_have_text("Withheld number")
            search = page.get_by_label("Find the caller")
            await expect(search).to_be_visible()
            # A withheld number is never offered to be remembered.
            await expect(page.locator("#remember-line")).to_be_hidden()
            await no_sideways_scroll(page)

            await search.fill("ORD-555")
            await page.get_by_role("button", name="Grace Hopper is the caller").click()
            await expect(page.locator("#customer-name")).to_have_text("Grace Hopper")
            await expect(page.locator("#caller-line")).to_contain_text(
                "found by search, confirmed by Agent 1001"
            )
            await expect(page.locator("#identify-box")).to_be_hidden()
            await expect(page.get_by_label("Customer flag: Wheelchair user")).to_be_visible()
            await expect(page.locator("#announce")).to_contain_text(
                "Flags: Hearing impaired, Wheelchair user"
            )
            await expect(page.locator("#add-number-box")).to_be_hidden()
            await no_sideways_scroll(page)
            assert [(a["Variable"], a["Value"]) for a in world.ami.actions] == [
                ("CTI_CUSTOMER_ID", str(customer))
            ]

            await world.event("ended", "c1", hangup_by="caller")
            assert await recorder.flush(10)
            row = await store.interaction("c1")
            assert row is not None and row["customer_id"] == customer
            assert row["extra"]["confirmed_by"] == "Agent 1001"
            assert row["extra"]["method"] == "search"

            # The next withheld call from her: once found, the first call is in her history.
            await ring(world, "c2", "anonymous")
            await expect(page.locator("#customer-name")).to_have_text("Withheld number")
            await page.get_by_label("Find the caller").fill("sw1a 1aa")
            await page.get_by_role("button", name="Grace Hopper is the caller").click()
            await expect(page.locator("#history li")).to_have_count(1)
            await expect(page.locator("#history")).to_contain_text("Agent 1001")
            await no_sideways_scroll(page)
    finally:
        await recorder.stop()


async def test_an_ambiguous_caller_confirmed_on_one_desktop_updates_the_other(
    browser: Any, store: CrmStore, size: dict[str, int]
) -> None:
    from playwright.async_api import expect

    for name in ("Acme Ltd", "Acme Holdings"):
        await store.upsert_customer(name=name, phones=[PhoneInput(SHARED_NUMBER, "work")])
    async with running_api(crm=store) as world:
        first = await signed_in(browser, world, "Agent 1001", size)
        second = await signed_in(browser, world, "Agent 1002", size)
        await world.queued_call("c1", caller=SHARED_NUMBER)
        await world.calls.lookup_settled("c1")
        await world.ring("c1", "1001")
        await world.ring("c1", "1002")
        for page in (first, second):
            await expect(page.locator("#customer-name")).to_have_text("One of 2 possible customers")
            await expect(page.locator("#candidates li")).to_have_count(2)
            # "Remember" is about a customer found or created here: the listed ones have it.
            await expect(page.locator("#remember-text")).to_contain_text("found or created here")
        await no_sideways_scroll(first)
        await first.get_by_role("button", name="Acme Holdings is the caller").click()
        for page in (first, second):
            await expect(page.locator("#customer-name")).to_have_text("Acme Holdings")
            await expect(page.locator("#caller-line")).to_contain_text("confirmed by Agent 1001")
            await expect(page.locator("#candidates-box")).to_be_hidden()
        await no_sideways_scroll(first)
        ctx = world.calls.get("c1")
        assert ctx is not None and ctx.confirmed_method == "candidate"


async def test_a_new_number_is_recognised_next_time_only_when_the_agent_ticks_remember(
    browser: Any, store: CrmStore, size: dict[str, int]
) -> None:
    from playwright.async_api import expect

    await grace(store)
    async with running_api(crm=store) as world:
        page = await signed_in(browser, world, "Agent 1001", size)

        await ring(world, "c1", NEW_NUMBER)
        await expect(page.locator("#customer-name")).to_have_text("Unknown caller")
        await expect(page.locator("#remember-line")).to_contain_text(NEW_NUMBER)
        await page.get_by_label("Find the caller").fill("hopper")
        await page.get_by_role("button", name="Grace Hopper is the caller").click()
        await expect(page.locator("#customer-name")).to_have_text("Grace Hopper")
        # Offered, not done.
        await expect(page.locator("#add-number")).to_have_text(
            f"Add {NEW_NUMBER} to Grace Hopper's numbers"
        )
        await world.event("ended", "c1", hangup_by="caller")

        await ring(world, "c2", NEW_NUMBER)
        await expect(page.locator("#call-state")).to_have_text("Ringing")
        await expect(page.locator("#customer-name")).to_have_text("Unknown caller")
        await page.get_by_label("Remember").check()
        await page.get_by_label("Find the caller").fill("ACC-1001")
        await page.get_by_role("button", name="Grace Hopper is the caller").click()
        await expect(page.locator("#feedback")).to_contain_text(f"{NEW_NUMBER} is now theirs")
        await expect(page.locator("#add-number-box")).to_be_hidden()
        await world.event("ended", "c2", hangup_by="caller")

        await ring(world, "c3", NEW_NUMBER)
        await expect(page.locator("#call-state")).to_have_text("Ringing")
        await expect(page.locator("#customer-name")).to_have_text("Grace Hopper")
        await expect(page.locator("#identify-box")).to_be_hidden()
        await no_sideways_scroll(page)


async def test_a_customer_created_from_the_pop_gets_the_number_when_asked(
    browser: Any, store: CrmStore, size: dict[str, int]
) -> None:
    from playwright.async_api import expect

    async with running_api(crm=store) as world:
        page = await signed_in(browser, world, "Agent 1001", size)
        await ring(world, "c1", NEW_NUMBER)
        await page.get_by_text("New customer for this caller").click()
        await expect(page.locator("#new-number")).to_contain_text(NEW_NUMBER)
        await page.get_by_label("Name", exact=True).fill("Katherine Johnson")
        await page.get_by_label("Address with postcode").fill("3 Orbit Lane, Leeds LS1 4AP")
        await page.get_by_label("Remember").check()
        await no_sideways_scroll(page)
        await page.get_by_role("button", name="Create and attach").click()
        await expect(page.locator("#customer-name")).to_have_text("Katherine Johnson")
        await expect(page.locator("#caller-line")).to_contain_text("created from this call")
        await world.event("ended", "c1", hangup_by="caller")
        await ring(world, "c2", NEW_NUMBER)
        await expect(page.locator("#call-state")).to_have_text("Ringing")
        await expect(page.locator("#customer-name")).to_have_text("Katherine Johnson")


async def test_the_agent_identifies_notes_and_wraps_up_by_keyboard_alone(
    browser: Any, store: CrmStore, size: dict[str, int]
) -> None:
    from playwright.async_api import expect

    await grace(store)
    async with running_api(crm=store) as world:
        page = await signed_in(browser, world, "Agent 1001", size)
        await expect(page.locator("#keys-help")).to_be_visible()
        await expect(page.locator("#keys-help")).to_contain_text("n note")
        await ring(world, "c1", "anonymous")
        await world.answer("c1", "1001")
        await expect(page.locator("#call-state")).to_have_text("On call")
        await page.locator("body").focus()
        keys = page.keyboard

        await keys.press("/")
        search = page.get_by_label("Find the caller")
        await expect(search).to_be_focused()
        await keys.type("grace")  # no shortcut fires while typing ("e" is escalate)
        await expect(search).to_have_value("grace")
        attach = page.get_by_role("button", name="Grace Hopper is the caller")
        await expect(attach).to_be_visible()
        await keys.press("Tab")
        await expect(attach).to_be_focused()
        await keys.press("Enter")
        await expect(page.locator("#customer-name")).to_have_text("Grace Hopper")

        await page.locator("body").focus()
        await keys.press("n")
        note = page.get_by_label("Add a note")
        await expect(note).to_be_focused()
        await keys.type("needs a large-print letter; deliver on ground floor")
        await expect(note).to_have_value("needs a large-print letter; deliver on ground floor")
        await keys.press("Escape")
        await keys.press("d")
        disposition = page.get_by_label("Disposition")
        await expect(disposition).to_be_focused()
        await keys.press("r")  # the first option starting with r: Resolved
        await expect(disposition).to_have_value("resolved")
        await keys.press("Escape")
        await keys.press("e")
        await expect(page.get_by_label("Reason", exact=True)).to_be_focused()
        await keys.press("Escape")
        await keys.press("n")
        await keys.press("Tab")  # from the note to the disposition, then Save
        await keys.press("Tab")
        await expect(page.get_by_role("button", name="Save", exact=True)).to_be_focused()
        await keys.press("Enter")
        await expect(page.locator("#feedback")).to_contain_text("Saved note and disposition")
        ctx = world.calls.get("c1")
        assert ctx is not None and ctx.customer_id is not None and ctx.disposition == "resolved"
        assert [n["text"] for n in ctx.notes] == [
            "needs a large-print letter; deliver on ground floor"
        ]
        await no_sideways_scroll(page)


async def test_long_unbroken_text_never_widens_the_page(browser: Any, size: dict[str, int]) -> None:
    from playwright.async_api import expect

    async with running_api() as world:
        page = await signed_in(browser, world, "Agent 1001", size)
        await world.queued_call("c1")
        await world.ring("c1", "1001")
        await world.answer("c1", "1001")
        await expect(page.locator("#customer-name")).to_have_text("Ada Lovelace")
        await page.get_by_label("Add a note").fill("tracking:" + "X" * 120)
        await page.get_by_role("button", name="Save", exact=True).click()
        await expect(page.locator("#notes li")).to_have_count(1)
        await no_sideways_scroll(page)


async def test_search_results_show_each_customers_postcode_to_tell_namesakes_apart(
    browser: Any, store: CrmStore
) -> None:
    from playwright.async_api import expect

    await grace(store)
    await store.upsert_customer(name="Grace Kelly", address="1 Palace Rd, Manchester M1 1AE")
    await store.upsert_customer(name="Grace Nobody")  # no address: nothing to show
    async with running_api(crm=store) as world:
        page = await signed_in(browser, world, "Agent 1001", SIZES["phone"])
        await ring(world, "c1", "anonymous")
        await page.get_by_label("Find the caller").fill("grace")
        results = page.locator("#search-results li")
        await expect(results).to_have_count(3)
        await expect(results.filter(has_text="Grace Hopper")).to_contain_text("SW1A 1AA")
        await expect(results.filter(has_text="Grace Kelly")).to_contain_text("M1 1AE")
        await expect(results.filter(has_text="Grace Nobody")).not_to_contain_text("postcode")
        await no_sideways_scroll(page)


async def test_attaching_the_caller_by_keyboard_keeps_the_focus_in_the_pop(
    browser: Any, store: CrmStore, size: dict[str, int]
) -> None:
    from playwright.async_api import expect

    await grace(store)
    for name in ("Acme Ltd", "Acme Holdings"):
        await store.upsert_customer(name=name, phones=[PhoneInput(SHARED_NUMBER, "work")])
    async with running_api(crm=store) as world:
        page = await signed_in(browser, world, "Agent 1001", size)
        keys, caller = page.keyboard, page.locator("#customer-name")
        await ring(world, "c1", NEW_NUMBER)
        await expect(caller).to_have_text("Unknown caller")
        await page.locator("body").focus()
        await keys.press("/")
        await keys.type("hopper")
        await expect(page.get_by_role("button", name="Grace Hopper is the caller")).to_be_visible()
        await keys.press("Tab")
        await keys.press("Enter")
        await expect(caller).to_have_text("Grace Hopper")
        # The button pressed went with the results: the focus is on the next step offered,
        # not thrown back to the top of the page.
        await expect(page.locator("#add-number")).to_be_focused()
        await keys.press("Enter")
        await expect(page.locator("#feedback")).to_contain_text(f"{NEW_NUMBER} added")
        await expect(caller).to_be_focused()
        await world.event("ended", "c1", hangup_by="caller")

        await ring(world, "c2", SHARED_NUMBER)
        await expect(caller).to_have_text("One of 2 possible customers")
        await page.get_by_role("button", name="Acme Holdings is the caller").focus()
        await keys.press("Enter")
        await expect(caller).to_have_text("Acme Holdings")
        await expect(caller).to_be_focused()
        await keys.press("n")  # the shortcuts work from there
        await expect(page.get_by_label("Add a note")).to_be_focused()
