"""Clean data on the supervisor console, in headless Chromium: a supervisor sees two likely
duplicates with their score and merges them; every record is counted before and after.

Uses Debian's ``chromium`` from PATH (never downloads a browser)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from http_world import TOKENS, headers, running_api
from sqlalchemy import insert, text

from crm_core import CrmStore, InteractionRecord
from crm_core.merge import CustomerMaintenance
from crm_core.models import Case, Order

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
TABLES = ("phone_numbers", "cases", "orders", "interactions")


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


async def rows(store: CrmStore, table: str, customer_id: int) -> int:
    sql = text(f"SELECT count(*) FROM {table} WHERE customer_id = :c")
    async with store.engine.connect() as conn:
        return int((await conn.execute(sql, {"c": customer_id})).scalar_one())


async def on_screen(page: Any, locator: Any) -> None:
    """In the viewport's width, with the page not wider than the viewport (no sideways scroll)."""
    box = await locator.bounding_box()
    width = await page.evaluate("window.innerWidth")
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, box
    assert await page.evaluate("document.documentElement.scrollWidth") <= width


@pytest.mark.parametrize("size", [(1400, 1000), (390, 844)], ids=["desktop", "phone"])
async def test_a_supervisor_merges_two_duplicates_from_the_console(
    browser: Any, tmp_path: Path, size: tuple[int, int]
) -> None:
    from playwright.async_api import expect

    store = await CrmStore.open(f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}")
    try:
        jon = (await store.upsert_customer(name="Jon Smith", phones=["020 7123 4567"])).customer_id
        john = (
            await store.upsert_customer(name="John Smith", phones=["+442071234567", "07700900123"],
                                        flags=["do_not_call"])
        ).customer_id  # fmt: skip
        await store.upsert_customer(name="Zed Other", phones=["020 7946 0999"])
        async with store.engine.begin() as conn:
            for cid in (jon, john, john):
                await conn.execute(insert(Case).values(customer_id=cid, subject="Router",
                                                       status="open", notes=""))  # fmt: skip
                await conn.execute(insert(Order).values(customer_id=cid, reference="O", status="x"))
        for n, cid in enumerate((jon, john, john)):
            await store.record_interaction(
                InteractionRecord(call_id=f"c{n}", caller="+442071234567", customer_id=cid)
            )
        before = {t: (await rows(store, t, jon), await rows(store, t, john)) for t in TABLES}

        async with running_api(crm=store, customers_admin=CustomerMaintenance(store)) as world:
            page = await browser.new_page(viewport={"width": size[0], "height": size[1]})
            await page.goto(str(world.client.make_url("/supervisor")))
            await page.get_by_label("Supervisor token").fill(TOKENS["Supervisor"])
            await page.get_by_role("button", name="Sign in").click()

            row = page.locator(f'#dupes-pairs tr[data-pair="{jon}-{john}"]')
            await expect(row).to_be_visible()
            found = await (
                await world.client.get("/api/crm/duplicates", headers=headers("Supervisor"))
            ).json()
            assert [(p["first_id"], p["second_id"]) for p in found["pairs"]] == [(jon, john)]
            await expect(row.locator("td.score")).to_have_text(str(found["pairs"][0]["score"]))
            await expect(row).to_contain_text("same number +442071234567")
            await row.get_by_role("button", name=f"Keep #{jon}").scroll_into_view_if_needed()
            await on_screen(page, row.get_by_role("button", name=f"Keep #{jon}"))
            await row.get_by_role("button", name=f"Keep #{jon}").click()
            await on_screen(page, row.get_by_role("button", name="Confirm merge"))
            await row.get_by_role("button", name="Confirm merge").click()
            moved = sum(b for _a, b in before.values())
            await expect(page.locator("#dupes-feedback")).to_have_text(
                f"merged #{john} into #{jon}: {moved} records moved, none lost."
            )
            await expect(page.locator("#dupes-pairs tbody")).to_have_text("No likely duplicates.")
            await expect(page.locator("#dupes-audit li")).to_have_count(1)
            await expect(page.locator("#dupes-audit li")).to_contain_text(
                f"Supervisor: merge #{jon} / #{john}"
            )

            # The mobile was John's own: divide it back out to a new customer, with one case.
            await page.get_by_label("Divide customer").fill(str(jon))
            await page.get_by_role("button", name="Show records").click()
            await page.get_by_label("move 07700900123 (mobile)").check()
            await page.get_by_label("case #2 Router").check()
            await page.get_by_label("To customer id, or a new customer's name").fill("John Smyth")
            await on_screen(page, page.get_by_role("button", name="Divide"))
            await page.get_by_role("button", name="Divide").click()
            await expect(page.locator("#dupes-feedback")).to_have_text(
                f"divided #{jon}: 2 records moved to #4."
            )
            await expect(page.locator("#dupes-audit li")).to_have_count(2)

        for table, (a, b) in before.items():
            back = 1 if table in ("phone_numbers", "cases") else 0
            assert (await rows(store, table, jon), await rows(store, table, john)) == (
                a + b - back,
                0,
            )
            assert await rows(store, table, 4) == back
        assert (await store.resolve("07700900123")).customer_id == 4
        view = await store.view(jon)
        assert view is not None and "do_not_call" in view.flags
    finally:
        await store.close()
