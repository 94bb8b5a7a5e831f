"""Pop and routing latency with an http CRM answering in 20 ms beside the built-in store.

In one run, against the same callers:

- ``store``: the router and the pop (resolve + 360° view) on the built-in store alone (a SQLite
  file of N seeded customers, its cache off), as a daemon without ``[[directories]]`` runs;
- ``store+http``: the same through ``ChainDirectory([store, http])``, the http source being the
  shipped HubSpot example config pointed at a local server that answers as HubSpot does after
  ``--delay-ms`` (20 ms), its cache off so every call asks it; and the same with its cache on
  (each caller asked once before, as a CRM cache would be warm for repeat callers).

Callers alternate between store customers and contacts only the http CRM has. The router's
rules are ``config/cti.example.toml``'s, at a weekday 10:00, under its 300 ms deadline.

Sizes are counted, not taken from the arguments: the store's customers by ``SELECT count(*)``,
the distinct callers of each kind, the calls timed in each run and the requests the http CRM
answered during it. A run that did not find the size asked for prints no figure and fails.

    .venv/bin/python bench/bench_connectors.py [--customers 20000] [--calls 300]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import tomllib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import bindparam, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connectors.chain import ChainDirectory  # noqa: E402
from connectors.http_config import HttpSourceConfig  # noqa: E402
from connectors.http_source import HttpSource  # noqa: E402
from connectors.store_source import StoreSource  # noqa: E402
from crm_core.errors import CrmUnavailable  # noqa: E402
from crm_core.seed import seed  # noqa: E402
from crm_core.store import CrmStore  # noqa: E402
from cti.config import load_config  # noqa: E402
from cti.routing.router import Router  # noqa: E402
from cti.routing.rules import load_rules  # noqa: E402

WEEKDAY_MORNING = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
TOKEN = "bench-token"


def crm_number(i: int) -> str:
    return f"+4477009{i:05d}"


class Mismatch(Exception):
    """A size counted is not the size asked for: no figure is printed for it."""


def check(what: str, asked: int, found: int) -> None:
    if found != asked:
        raise Mismatch(f"{what}: asked for {asked:,}, found {found:,}")


def hubspot_like(delay_s: float, contacts: int, served: dict[str, int]) -> web.Application:
    """Contacts search and read as HubSpot answers them, each after ``delay_s``; ``served``
    counts the requests answered, by kind (search/get/tickets)."""
    by_last4: dict[str, list[dict[str, Any]]] = {}
    by_id: dict[str, dict[str, Any]] = {}
    for i in range(contacts):
        number = crm_number(i)
        properties = {
            "firstname": "Contact",
            "lastname": str(i),
            "phone": f"07700 9{i:05d}",
            "email": f"c{i}@example.com",
            "cti_vip": "true" if i % 10 == 0 else "false",
        }
        contact = {"id": str(1000 + i), "properties": properties}
        by_last4.setdefault(number[-4:], []).append(contact)
        by_id[contact["id"]] = contact

    async def search(request: web.Request) -> web.Response:
        await asyncio.sleep(delay_s)
        served["search"] = served.get("search", 0) + 1
        body = await request.json()
        last4 = body["filterGroups"][0]["filters"][0]["value"].lstrip("*")
        found = by_last4.get(last4, [])
        return web.json_response({"total": len(found), "results": found})

    async def get(request: web.Request) -> web.Response:
        await asyncio.sleep(delay_s)
        served["get"] = served.get("get", 0) + 1
        contact = by_id.get(request.match_info["id"])
        if contact is None:
            return web.json_response({"message": "Object not found."}, status=404)
        return web.json_response(contact)

    async def tickets(request: web.Request) -> web.Response:
        await asyncio.sleep(delay_s)
        served["tickets"] = served.get("tickets", 0) + 1
        return web.json_response({"total": 0, "results": []})

    app = web.Application()
    app.router.add_post("/crm/v3/objects/contacts/search", search)
    app.router.add_get("/crm/v3/objects/contacts/{id}", get)
    app.router.add_post("/crm/v3/objects/tickets/search", tickets)
    return app


def summary(name: str, samples: list[float], misses: int) -> str:
    ms = sorted(s * 1000 for s in samples)
    p = statistics.quantiles(ms, n=100, method="inclusive")  # never past the max
    return (
        f"{name:34} p50 {p[49]:7.2f}  p95 {p[94]:7.2f}  p99 {p[98]:7.2f}  max {ms[-1]:7.2f} ms"
        f"  ({len(ms)} calls, {misses} without the customer)"
    )


def asked_http(served: dict[str, int]) -> str:
    """What the http CRM answered during a run (counted by the server itself)."""
    return f"; http CRM answered {sum(served.values())} requests"


async def timed(calls: list[str], one: Callable[[str], Awaitable[bool]]) -> tuple[list[float], int]:
    """Latency of each call in turn, and how many ended without the customer (not found, or
    every source past its timeout: ``CrmUnavailable``, as the pop would show it)."""
    samples, misses = [], 0
    for number in calls:
        started = time.perf_counter()
        try:
            found = await one(number)
        except CrmUnavailable:
            found = False
        samples.append(time.perf_counter() - started)
        misses += not found
    return samples, misses


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--delay-ms", type=float, default=20.0)
    args = parser.parse_args()
    try:
        await run(args)
    except Mismatch as exc:
        print(f"refusing to report: {exc}", file=sys.stderr)
        return 1
    return 0


async def run(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="bench-connectors-"))
    store = await CrmStore.open(f"sqlite+aiosqlite:///{workdir / 'crm.db'}", cache_ttl_s=0)
    # Without the demo customers: the store holds exactly the customers asked for.
    await seed(store, args.customers, progress=False, demo=False)
    async with store.engine.connect() as conn:
        customers = (await conn.execute(text("SELECT count(*) FROM customers"))).scalar_one()
        check("customers in the store (SELECT count(*))", args.customers, customers)
        store_numbers = [
            row[0]
            for row in await conn.execute(
                text("SELECT DISTINCT e164 FROM phone_numbers WHERE e164 IS NOT NULL LIMIT :n"),
                {"n": (args.calls + 1) // 2},
            )
        ]
    served: dict[str, int] = {}
    contacts = args.calls // 2  # odd calls: the http CRM's contacts; even ones: the store's
    check("distinct store numbers to call from", (args.calls + 1) // 2, len(store_numbers))
    runner = web.AppRunner(hubspot_like(args.delay_ms / 1000, contacts, served), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]

    os.environ["HUBSPOT_TOKEN"] = TOKEN
    entry = tomllib.loads((ROOT / "config/connectors/hubspot.toml").read_text())["directories"][0]
    entry["base_url"] = f"http://127.0.0.1:{port}"

    def http_source(cache_ttl_s: float) -> HttpSource:
        config = HttpSourceConfig.model_validate({**entry, "cache_ttl_s": cache_ttl_s})
        return HttpSource(config, region="GB")

    config = load_config(ROOT / "config" / "cti.example.toml", env={})
    rules = load_rules(config)
    deadline = config.agi.deadline_ms / 1000
    callers = [
        store_numbers[i // 2] if i % 2 == 0 else crm_number(i // 2) for i in range(args.calls)
    ]
    store_callers = set(callers[0::2])
    check("distinct store callers", (args.calls + 1) // 2, len(store_callers))
    async with store.engine.connect() as conn:
        owned = await conn.execute(
            text(
                "SELECT count(DISTINCT p.e164) FROM phone_numbers p"
                " JOIN customers c ON c.id = p.customer_id WHERE p.e164 IN :n"
            ).bindparams(bindparam("n", expanding=True)),
            {"n": sorted(store_callers)},
        )
        check("store callers owned by a store customer", len(store_callers), owned.scalar_one())
    check("http CRM callers", contacts, len(set(callers[1::2])))
    cold = http_source(0)
    warm = http_source(300)
    directories: list[tuple[str, Any]] = [
        ("store", store),
        ("store+http (http cache off)", ChainDirectory([StoreSource(store), cold])),
        ("store+http (http cache warm)", ChainDirectory([StoreSource(store), warm])),
    ]
    for number in callers:  # warm the third one's http cache (and the page cache of all)
        try:
            resolution = await directories[2][1].resolve(number)
            if resolution.customer_id is not None:
                await directories[2][1].view(resolution.customer_id)
        except CrmUnavailable:  # a source past its timeout (a loaded machine): a colder cache
            pass
    print(f"store: {customers:,} customers (SELECT count(*); SQLite, cache off); http CRM "
          f"answers in {args.delay_ms:.0f} ms; {len(callers)} calls from {len(store_callers)} "
          f"store customers' numbers and {contacts} CRM contacts'")  # fmt: skip
    print(f"routing under the {deadline * 1000:.0f} ms deadline (Router.route):")
    for name, directory in directories:
        router = Router(directory, rules, deadline_s=deadline, clock=lambda: WEEKDAY_MORNING)

        async def route(number: str, router: Router = router) -> bool:
            decision = await router.route(number)
            return decision.customer_id is not None and not decision.fallback

        served.clear()
        samples, misses = await timed(callers, route)
        check(f"routing calls timed ({name})", args.calls, len(samples))
        print("  " + summary(name, samples, misses) + asked_http(served))
    print("pop (resolve + 360° view, what each call's desktop waits for):")
    for name, directory in directories:

        async def pop(number: str, directory: Any = directory) -> bool:
            resolution = await directory.resolve(number)
            if resolution.customer_id is None:
                return False
            return await directory.view(resolution.customer_id) is not None

        served.clear()
        samples, misses = await timed(callers, pop)
        check(f"pop calls timed ({name})", args.calls, len(samples))
        print("  " + summary(name, samples, misses) + asked_http(served))
    await cold.close()
    await warm.close()
    await runner.cleanup()
    await store.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
