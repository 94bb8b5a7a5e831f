"""Event → screen on the supervisor console, measured in the page, beside the simplest
implementation of the same job (a bare WebSocket push and a DOM row append, same table size).

The page records, for each call row that appears, when its ``tr`` entered the DOM and when
the frame that shows it was painted (a task queued from ``requestAnimationFrame`` runs after
that frame's style, layout and paint). The event's time is taken in this process just before
the call event is fed (the clock is the machine's: ``performance.timeOrigin + now()`` in the
page, ``time.time()`` here). Waiting for the result polls over CDP, which does not affect
what is measured.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

OBSERVER = """
window.__seen = {};
const seen = (id) => {
  if (id in window.__seen) return;
  const at = performance.timeOrigin + performance.now();
  const entry = (window.__seen[id] = { dom: at, painted: null });
  requestAnimationFrame(() => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => { entry.painted = performance.timeOrigin + performance.now(); };
    channel.port2.postMessage(null);
  });
};
new MutationObserver((records) => {
  for (const r of records) {
    for (const node of r.addedNodes) {
      if (node.nodeType === 1 && node.matches("tr[data-call]")) seen(node.dataset.call);
    }
  }
}).observe(document, { childList: true, subtree: true });
"""

BARE_PAGE = """<!doctype html><meta charset="utf-8"><title>bare</title>
<table id="calls"><tbody></tbody></table>
<script>
const body = document.querySelector("#calls tbody");
function row(c) {
  const tr = document.createElement("tr");
  tr.dataset.call = c.call_id;
  for (const v of [c.caller, c.customer, "", c.state, c.queue, c.tier, "0s", "", ""]) {
    const td = document.createElement("td");
    td.textContent = v;
    tr.append(td);
  }
  return tr;
}
const ws = new WebSocket(`ws://${location.host}/ws`);
ws.onmessage = (event) => { body.append(row(JSON.parse(event.data).row)); };
ws.onopen = () => { document.title = "open"; };
</script>"""


class BarePush:
    """The simplest implementation: one socket, a message per row, appended to the table."""

    def __init__(self) -> None:
        self.sockets: list[web.WebSocketResponse] = []
        self.app = web.Application()
        self.app.router.add_get("/", self._page)
        self.app.router.add_get("/ws", self._ws)

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(text=BARE_PAGE, content_type="text/html")

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.append(ws)
        async for _ in ws:
            pass
        return ws

    async def push(self, call_id: str) -> None:
        row = {"call_id": call_id, "caller": "+441632960001", "customer": "unknown"}
        text = json.dumps({"type": "call_row", "row": {**row, "state": "waiting"}})
        for ws in self.sockets:
            await ws.send_str(text)


@dataclass
class Latencies:
    name: str
    dom_ms: list[float]
    painted_ms: list[float]

    @staticmethod
    def _pct(values: list[float], p: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, max(0, round(p * len(ordered) + 0.5) - 1))]

    def p50(self) -> float:
        return statistics.median(self.painted_ms)

    def summary(self) -> str:
        v = self.painted_ms
        return (
            f"{self.name}: event → painted p50 {self.p50():.1f} ms, p99 {self._pct(v, 0.99):.1f} "
            f"ms, max {max(v):.1f} ms; event → in the DOM p50 "
            f"{statistics.median(self.dom_ms):.1f} ms ({len(v)} events)"
        )


async def seen(page: Any, call_id: str) -> dict[str, float]:
    await page.wait_for_function(
        "id => window.__seen[id] && window.__seen[id].painted !== null", arg=call_id, timeout=10_000
    )
    result: dict[str, float] = await page.evaluate("id => window.__seen[id]", call_id)
    return result


async def measure(
    pages: dict[str, tuple[Any, Callable[[str], Awaitable[None]]]],
    events: int,
    *,
    seed: int = 15,
) -> dict[str, Latencies]:
    """For each page, ``events`` new calls fed by its function, interleaved page by page, at
    random moments (so that they fall anywhere within the page's frames and its 1 s tick)."""
    rnd = random.Random(seed)
    out = {name: Latencies(name, [], []) for name in pages}
    for n in range(events):
        for name, (page, feed) in pages.items():
            await asyncio.sleep(rnd.uniform(0.05, 0.25))
            call_id = f"m-{name}-{n}"
            sent = time.time() * 1000
            await feed(call_id)
            times = await seen(page, call_id)
            out[name].dom_ms.append(times["dom"] - sent)
            out[name].painted_ms.append(times["painted"] - sent)
    return out


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} cores"


async def console_beside_bare(
    browser: Any, tmp_path: Any, events: int, background: int = 500
) -> dict[str, Latencies]:
    """The console with ``background`` calls in progress and the bare page with as many rows,
    in one browser: ``events`` new calls each, interleaved."""
    from aiohttp.test_utils import TestServer
    from http_world import TOKENS
    from playwright.async_api import expect
    from supervisor_world import running_console

    bare = BarePush()
    server = TestServer(bare.app)
    await server.start_server()
    console = await browser.new_page(viewport={"width": 1400, "height": 1000})
    plain = await browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        async with running_console(tmp_path) as world:
            try:
                await console.add_init_script(OBSERVER)
                await console.goto(str(world.client.make_url("/supervisor")))
                await console.get_by_label("Supervisor token").fill(TOKENS["Supervisor"])
                await console.get_by_role("button", name="Sign in").click()
                await expect(console.locator("#link")).to_have_text("connected")
                await plain.add_init_script(OBSERVER)
                await plain.goto(str(server.make_url("/")))
                await expect(plain).to_have_title("open")
                for n in range(background):
                    queue = "tier1" if n % 2 else "tier2"
                    await world.event("offered", f"bg{n}", n * 0.1, caller="+441632960001")
                    await world.event("queued", f"bg{n}", n * 0.1, queue=queue)
                    await bare.push(f"bg{n}")
                count = console.locator("#call-count")
                await expect(count).to_have_text(str(background), timeout=30_000)
                await expect(plain.locator("#calls tr")).to_have_count(background, timeout=30_000)
                at = [60.0]

                async def new_call(call_id: str) -> None:
                    at[0] += 1
                    await world.event("offered", call_id, at[0], caller="+441632960001")

                pages = {"console": (console, new_call), "bare": (plain, bare.push)}
                return await measure(pages, events)
            finally:
                # Closed before the servers: a server waits for its open sockets to close.
                await console.close()
                await plain.close()
    finally:
        await server.close()
