"""The supervisor console in headless Chromium: the numbers on screen are the API's.

Uses Debian's ``chromium`` from PATH (never downloads a browser). Call events go through live
calls, the hub and supervision as the daemon sends them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from http_world import TOKENS, headers
from supervisor_world import T0, SupervisorWorld, running_console

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
SCREENSHOT = os.environ.get("CTI_SUPERVISOR_SCREENSHOT", "/tmp/supervisor.png")


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


def percent(level: float | None) -> str:
    return "–" if level is None else f"{level * 100:.1f}%"


async def signed_in(browser: Any, world: SupervisorWorld, path: str, who: str) -> Any:
    """A 1400x1000 page at ``path`` with ``who``'s token typed into its sign-in form."""
    page = await browser.new_page(viewport={"width": 1400, "height": 1000})
    await page.goto(str(world.client.make_url(path)))
    label = "Supervisor token" if path == "/supervisor" else "Your agent token"
    await page.get_by_label(label).fill(TOKENS[who])
    await page.get_by_role("button", name="Sign in").click()
    return page


async def a_morning(world: SupervisorWorld) -> None:
    """Two agents logged in, three calls done (one outside 20 s), one waiting in tier 2 and
    one talking in tier 1."""
    await world.agent_state("1001", -60)
    await world.agent_state("1002", -60)
    await world.agent_state("2001", -60, queue="tier2", paused=True, reason="training")
    await world.call("c1", 0, 10, 60, "1001")
    await world.call("c2", 100, 30, 60, "1002")
    await world.call("c3", 200, 5, 30, "1001")
    await world.event("offered", "w1", 300, caller="+441632960001", uniqueid="w1")
    await world.event("queued", "w1", 300, queue="tier2")
    await world.event("offered", "t1", 310, caller="+442071234567", uniqueid="t1")
    await world.event("queued", "t1", 310, queue="tier1")
    member = {"member": "Agent 1002", "interface": "Local/1002@agents"}
    await world.event("answered", "t1", 318, agent="Agent 1002", queue="tier1", **member)
    world.now[0] = T0 + 330


async def test_the_numbers_on_screen_are_the_apis(browser: Any, tmp_path: Path) -> None:
    from playwright.async_api import expect

    async with running_console(tmp_path) as world:
        await a_morning(world)
        page = await signed_in(browser, world, "/supervisor", "Supervisor")
        await expect(page.locator("#link")).to_have_text("connected")

        board = await (
            await world.client.get("/api/supervisor/board", headers=headers("Supervisor"))
        ).json()
        live = await (
            await world.client.get("/api/stats/live", headers=headers("Supervisor"))
        ).json()
        for q in board["queues"]:
            row = page.locator(f'#queues tr[data-queue="{q["queue"]}"]')
            for cls, key in (("offered", "offered"), ("answered", "answered"),
                             ("waiting", "waiting"), ("available", "agents_available"),
                             ("logged-in", "agents_logged_in")):  # fmt: skip
                await expect(row.locator(f"td.{cls}")).to_have_text(str(q[key]))
            await expect(row.locator("td.sl")).to_have_text(percent(q["service_level"]))
            if q["queue"] in live["queue"]:
                assert live["queue"][q["queue"]]["offered"] == q["offered"]
                assert live["queue"][q["queue"]]["service_level"] == q["service_level"]
        tier1 = next(q for q in board["queues"] if q["queue"] == "tier1")
        assert (tier1["offered"], tier1["answered"], tier1["service_level"]) == (4, 4, 0.75)
        assert tier1["breached"] is True  # 75% < 80%
        await expect(page.locator('#queues tr[data-queue="tier1"]')).to_have_class("breached")

        await expect(page.locator("#calls tbody tr")).to_have_count(len(board["calls"]))
        await expect(page.locator("#call-count")).to_have_text("2")
        for a in board["agents"]:
            row = page.locator(f'#agents tr[data-agent="{a["name"]}"]')
            await expect(row.locator("td.calls-today")).to_have_text(str(a["calls_today"]))
            today = live["agents"].get(a["member"], {})
            assert a["occupancy"] == today.get("occupancy")
            await expect(row.locator("td.occupancy")).to_have_text(percent(a["occupancy"]))
        await expect(page.locator('#agents tr[data-agent="Agent 2001"] td.state')).to_contain_text(
            "paused (training"
        )
        chart = page.locator('#chart .hour[data-hour="2026-11-23T00:00Z"] .offered')
        await expect(chart).to_have_text(str(board["hours"][0]["offered"]))

        await page.get_by_label("Tier", exact=True).select_option("tier2")
        await expect(page.locator("#calls tbody tr")).to_have_count(1)
        await expect(page.locator('#calls tr[data-call="w1"] td.state')).to_have_text("waiting")
        await page.get_by_label("Tier", exact=True).select_option("")

        # Live: a new call shows up without reloading; opening it shows its pop.
        await world.event("offered", "n1", 331, caller="+442071234567", uniqueid="n1")
        await world.event("queued", "n1", 331, queue="tier1")
        await expect(page.locator('#calls tr[data-call="n1"]')).to_be_visible()
        await world.calls.lookup_settled("n1")
        await page.locator('#calls tr[data-call="n1"]').click()
        await expect(page.locator("#pop-name")).to_have_text("Ada Lovelace")

        # Acting on an agent goes to the PBX through the API.
        await (
            page.locator('#agents tr[data-agent="Agent 1001"]')
            .get_by_role("button", name="Pause")
            .click()
        )
        await expect(page.locator("#feedback")).to_have_text("pause Agent 1001: done.")
        assert world.ami.actions[-1]["Action"] == "QueuePause"
        assert world.ami.actions[-1]["Interface"] == "Local/1001@agents"

        # Alerts and queue rows come with the refresh.
        world.supervision.refresh()
        await expect(page.locator('#alerts li[data-alert="service_level:tier1"]')).to_be_visible()
        # The CRM answered after the call's row went out: the refresh brings the customer.
        customer = page.locator('#calls tr[data-call="n1"] td').nth(1)
        await expect(customer).to_have_text("Ada Lovelace")
        await page.screenshot(path=SCREENSHOT, full_page=True)


async def test_with_500_calls_in_progress_a_new_call_reaches_the_screen_quickly(
    browser: Any, tmp_path: Path
) -> None:
    """Event → painted row, measured in the page over 30 new calls with 500 in progress, beside
    a bare WebSocket push and DOM append with as many rows (``console_latency``; the benchmark
    is bench/bench_console.py). The target is 100 ms on a quiet machine; the bounds hold on a
    loaded shared one: the console's median below 1.3x the bare page's (+ 10 ms), no call
    later than 3 s."""
    from console_latency import console_beside_bare, load

    found = await console_beside_bare(browser, tmp_path, events=30)
    print(load())
    for latencies in found.values():
        print(latencies.summary())
    console, bare = found["console"], found["bare"]
    # At a load of 12-18 on 2 cores, the table laid out and painted whole in each frame took
    # 1.8-3.8x the bare page's median (89 against 50 ms over 150 events); a row rendered alone
    # takes about 0.6x (the bare page lays out its whole table).
    assert console.p50() < 1.3 * bare.p50() + 10
    assert max(console.painted_ms) < 3000


async def test_a_supervisor_signing_in_at_the_desk_is_one_click_from_the_console(
    browser: Any, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    async with running_console(tmp_path) as world:
        await a_morning(world)
        page = await signed_in(browser, world, "/", "Supervisor")
        await expect(page.locator("#who")).to_contain_text("supervisor")

        await page.get_by_role("link", name="Supervisor console").click()
        # Signed in already: the console connects without asking for the token again.
        await expect(page.locator("#link")).to_have_text("connected")
        await expect(page.locator("#login")).to_be_hidden()
        await expect(page.locator('#queues tr[data-queue="tier1"] td.offered')).to_have_text("4")

        agent = await signed_in(browser, world, "/", "Agent 1001")
        await expect(agent.locator("#who")).to_contain_text("Agent 1001")
        await expect(agent.get_by_role("link", name="Supervisor console")).to_be_hidden()
        # An agent's token carried to the console signs nobody in and shows no error.
        await agent.goto(str(world.client.make_url("/supervisor")))
        await expect(agent.locator("#login")).to_be_visible()
        await expect(agent.locator("#login-error")).to_have_text("")
