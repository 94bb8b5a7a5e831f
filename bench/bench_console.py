"""Supervisor console: event → screen with 500 calls in progress, beside the simplest
implementation of the same job, in one run and one headless Chromium.

- ``console``: a new call's ``offered`` event fed to live calls, the hub and supervision as
  the daemon feeds them (the call tracker's output: ``bench/bench_tracker.py`` measures the
  tracker), pushed over ``/ws/supervisor`` and drawn by ``cti/desktop/supervisor.js`` into a
  table of 500 live calls (the page also ticks every wait and talk cell each second);
- ``bare``: one aiohttp WebSocket sending a JSON row and a page appending it (nine text cells)
  to a table of 500 rows: what no console can beat.

Times are taken in the page (``tests/console_latency.py``): when the row entered the DOM, and
when the frame showing it was painted, from the moment before the event was fed. The events
alternate between the two pages at random intervals (50–250 ms). Uses Debian's ``chromium``.

    .venv/bin/python bench/bench_console.py [--events 200] [--calls 500]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from console_latency import console_beside_bare, load  # noqa: E402

from cti.logsetup import configure_logging  # noqa: E402

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()
    configure_logging("warning", "console")
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("chromium is not on PATH (apt install chromium)")
    from playwright.async_api import async_playwright

    print(f"before: {load()}")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=ARGS, headless=True)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                found = await console_beside_bare(browser, Path(tmp), args.events, args.calls)
        finally:
            await browser.close()
    print(f"after:  {load()}")
    for latencies in found.values():
        print(f"{args.calls} calls in progress, {latencies.summary()}")


if __name__ == "__main__":
    asyncio.run(main())
