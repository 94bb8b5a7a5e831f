"""The console's queue figures in headless Chromium equal ``/api/stats/live``'s, in every queue,
after the first snapshot, after the refresh that follows new calls and after a resync's
snapshot; the three kinds of alert show on the page. Debian's ``chromium`` (never downloaded).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from http_world import headers
from supervisor_world import T0, SupervisorWorld, running_console
from test_supervisor_browser import a_morning, browser, percent, signed_in

from cti.config import SupervisorConfig

__all__ = ["browser"]


async def gave_up(world: SupervisorWorld, call: str, at: float, after: float, queue: str) -> None:
    await world.event("offered", call, at, caller="+441632960001", uniqueid=call)
    await world.event("queued", call, at, queue=queue)
    await world.event("left_queue", call, at + after, queue=queue, reason="abandon")
    await world.event("abandoned", call, at + after, queue=queue, wait_s=after)
    await world.event("ended", call, at + after, hangup_by="caller")


async def sign_in(browser: Any, world: SupervisorWorld) -> Any:
    from playwright.async_api import expect

    page = await signed_in(browser, world, "/supervisor", "Supervisor")
    await expect(page.locator("#link")).to_have_text("connected")
    return page


async def screen_is_live_stats(page: Any, world: SupervisorWorld) -> dict[str, Any]:
    """Every queue the API counts today is on screen with its figures."""
    from playwright.async_api import expect

    live = await (await world.client.get("/api/stats/live", headers=headers("Supervisor"))).json()
    for queue, fig in live["queue"].items():
        row = page.locator(f'#queues tr[data-queue="{queue}"]')
        await expect(row.locator("td.offered")).to_have_text(str(fig["offered"]))
        await expect(row.locator("td.answered")).to_have_text(str(fig["answered"]))
        lost = fig["abandoned"] + fig["short_abandoned"]
        await expect(row.locator("td.abandoned")).to_have_text(str(lost))
        await expect(row.locator("td.sl")).to_have_text(percent(fig["service_level"]))
    for hour, fig in live["hour"].items():  # the day by hour
        col = page.locator(f'#chart .hour[data-hour="{hour}"]')
        await expect(col.locator(".offered")).to_have_text(str(fig["offered"]))
        await expect(col.locator(".sl")).to_have_text(percent(fig["service_level"]))
    for agent, fig in live["agent"].items():  # calls answered today
        row = page.locator(f'#agents tr[data-agent="{agent}"]')
        await expect(row.locator("td.calls-today")).to_have_text(str(fig["answered"]))
    return dict(live["queue"])


async def test_queue_figures_on_screen_are_live_stats_in_every_queue_and_after_a_resync(
    browser: Any, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    limits = SupervisorConfig(refresh_s=3600, max_wait_s=60, max_pause_s=120)
    async with running_console(tmp_path, supervisor=limits) as world:
        await a_morning(world)  # tier 1: 4 calls (one outside 20 s), tier 2: one waiting
        await gave_up(world, "g1", 120, 3, "tier1")  # a short abandon
        await gave_up(world, "g2", 130, 40, "tier3")  # an abandon, in a third queue
        page = await sign_in(browser, world)
        live = await screen_is_live_stats(page, world)
        assert sorted(live) == ["tier1", "tier2", "tier3"]
        # tier 1: c1, c2, c3, t1 answered (c2 after 30 s), g1 gone after 3 s (short):
        # 3 within 20 s of 5 offered less 1 short abandon.
        assert (live["tier1"]["offered"], live["tier1"]["service_level"]) == (5, 0.75)
        assert (live["tier3"]["abandoned"], live["tier3"]["service_level"]) == (1, 0.0)

        # The three alerts: tier 1 below 80%, w1 waiting 30 s over 60 s, 2001 paused too long.
        world.now[0] = T0 + 400  # w1 has waited 100 s; 2001 paused since T0-60: 460 s
        world.supervision.refresh()
        for key in ("service_level:tier1", "longest_wait:tier2", "long_pause:Agent 2001"):
            await expect(page.locator(f'#alerts li[data-alert="{key}"]')).to_be_visible()
        await expect(page.locator('#alerts li[data-alert="longest_wait:tier2"]')).to_contain_text(
            "tier2: a caller has waited"
        )

        # More calls; the queue rows follow at the refresh.
        await world.call("c4", 410, 4, 20, "1001")
        await gave_up(world, "g3", 420, 12, "tier2")
        world.supervision.refresh()
        live = await screen_is_live_stats(page, world)
        assert (live["tier1"]["offered"], live["tier2"]["abandoned"]) == (6, 1)
        # tier 1 is back at 80% (4 within 20 s of 6 less 1 short): its alert clears.
        assert live["tier1"]["service_level"] == 0.8
        await expect(page.locator('#alerts li[data-alert="service_level:tier1"]')).to_have_count(0)
        holding = ["long_pause:Agent 2001", "longest_wait:tier2", "service_level:tier2",
                   "service_level:tier3"]  # fmt: skip

        # A resync: the console starts again from a snapshot, and shows the same figures.
        await world.event("offered", "r1", 440, caller="+442071234567", uniqueid="r1")
        await world.event("queued", "r1", 440, queue="tier3")
        offered = page.locator('#queues tr[data-queue="tier3"] td.offered')
        await expect(offered).to_have_text("1")  # queue rows wait for the refresh...
        world.supervision.resynced()  # ...or a snapshot
        await expect(page.locator('#calls tr[data-call="r1"]')).to_be_visible()
        live = await screen_is_live_stats(page, world)
        assert live["tier3"]["offered"] == 2
        waiting = page.locator('#queues tr[data-queue="tier3"] td.waiting')
        await expect(waiting).to_have_text("1")
        alerts = page.locator("#alerts li[data-alert]")
        await expect(alerts).to_have_count(len(holding))
        assert sorted(await alerts.evaluate_all("els => els.map(e => e.dataset.alert)")) == holding


async def test_a_supervisor_whispers_to_a_talking_call_from_its_panel(
    browser: Any, tmp_path: Path
) -> None:
    """The call's panel offers listen, whisper and barge while an agent talks on it; a click
    rings the supervisor's phone into ChanSpy (the fake AMI server receives it), and the
    buttons go when the call ends."""
    from fakes.ami_server import FakeAmiServer
    from playwright.async_api import expect

    from cti.ami.client import AmiClient
    from cti.config import AmiConfig

    async with FakeAmiServer() as pbx:
        client = AmiClient(AmiConfig(host=pbx.host, port=pbx.port, username="cti",
                                     secret="cti-secret"))  # fmt: skip
        await client.start()
        try:
            await client.wait_connected(5)
            async with running_console(tmp_path, pbx=client) as world:
                member = {"member": "Agent 1001", "interface": "Local/1001@agents"}
                await world.event("offered", "s1", 0, caller="+442071234567", uniqueid="s1")
                await world.event("queued", "s1", 0, queue="tier2")
                page = await sign_in(browser, world)
                await page.locator('#calls tr[data-call="s1"]').click()
                spy = page.locator("#pop-spy")
                await expect(spy).to_be_hidden()  # waiting: nobody to listen to
                await world.event("answered", "s1", 6, agent="Agent 1001", queue="tier2",
                                  agent_channel="PJSIP/1001-0000002a", **member)  # fmt: skip
                await spy.get_by_role("button", name="Whisper").click()
                await expect(page.locator("#spy-feedback")).to_have_text(
                    "whisper: on Agent 1001's call."
                )
                [originate] = [dict(a.headers) for a in pbx.actions_named("Originate")]
                assert (originate["application"], originate["data"]) == (
                    "ChanSpy",
                    "PJSIP/1001-0000002a,qEw",
                )
                await world.event("ended", "s1", 60, hangup_by="caller")
                await expect(spy).to_be_hidden()
        finally:
            await client.stop()
