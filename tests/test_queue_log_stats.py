"""Calls Asterisk answered or lost while no daemon listened are in the statistics once it
starts again: ``/api/stats`` (``call_legs``) and ``/api/stats/live`` count them as Asterisk's
own queue_log does, and today's live figures also count what the daemon saw before its stop.

The same restart as ``test_queue_log_restart`` (the simulator writes its queue_log as
app_queue does), on SQLite and PostgreSQL; the figures expected are read from the queue_log
lines here, apart from the daemon's reading of them."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from test_queue_log_restart import (
    IMPATIENT,
    KNOWN,
    PATIENT,
    SHARED,
    SUPERVISOR_TOKEN,
    World,
    until,
    world,
)

from cti.stats.legs import Leg
from cti.stats.store import legs_since

__all__ = ["world"]


def asterisk_figures(path: Path, short_abandon_s: float) -> dict[str, dict[str, Any]]:
    """Per queue, what app_queue's lines say: ENTERQUEUE offered, CONNECT answered (its hold
    time the speed of answer), ABANDON given up after its wait (short within the grace)."""
    out: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"offered": 0, "answered": 0, "abandoned": 0, "short_abandoned": 0, "holds": []}
    )
    for line in path.read_text().splitlines():
        _, _, queue, _, event, *data = line.split("|")
        q = out[queue]
        if event == "ENTERQUEUE":
            q["offered"] += 1
        elif event == "CONNECT":
            q["answered"] += 1
            q["holds"].append(int(data[0]))
        elif event == "ABANDON":
            q["short_abandoned" if int(data[2]) <= short_abandon_s else "abandoned"] += 1
    return dict(out)


def counts(figures: dict[str, Any]) -> dict[str, int]:
    keys = ("offered", "answered", "abandoned", "short_abandoned")
    return {k: figures[k] for k in keys}


async def get(daemon_port: int, path: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {SUPERVISOR_TOKEN}"}
    url = f"http://127.0.0.1:{daemon_port}{path}"
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as r:
        assert r.status == 200, await r.text()
        body: dict[str, Any] = await r.json()
        return body


async def test_calls_asterisk_counted_while_the_daemon_was_down_are_in_period_and_live_figures(
    world: World,
) -> None:
    sim = world.sim
    await world.start()
    seen = sim.place_call(PATIENT, KNOWN)  # followed from start to end: its legs written
    await seen
    spanning = sim.place_call(PATIENT, KNOWN)  # waiting at the stop, ended while down
    await asyncio.sleep(0.5)
    await world.stop()
    answered = sim.place_call(PATIENT, KNOWN)
    abandoned = sim.place_call(IMPATIENT, SHARED)
    await asyncio.gather(seen, spanning, answered, abandoned)
    unseen = {spanning.result().call_id, answered.result().call_id, abandoned.result().call_id}

    daemon = await world.start()
    port = daemon.http_port
    assert port is not None
    expected = asterisk_figures(world.queue_log, world.config.stats.short_abandon_s)
    assert counts(expected["tier1"]) == {
        "offered": 4,
        "answered": 3,
        "abandoned": expected["tier1"]["abandoned"],
        "short_abandoned": expected["tier1"]["short_abandoned"],
    }
    assert expected["tier1"]["abandoned"] + expected["tier1"]["short_abandoned"] == 1

    async def written() -> list[Leg]:
        return [
            leg
            for leg in await legs_since(world.store.engine, 0.0)
            if leg.call_id in unseen | {seen.result().call_id}
        ]

    await until(lambda: _legs_of_every_call(written, 4))
    await asyncio.sleep(1.0)  # anything written twice would be by now
    legs = await written()
    assert sorted(leg.call_id for leg in legs) == sorted(unseen | {seen.result().call_id})
    for leg in legs:
        if leg.call_id in unseen:  # from queue_log: hold and wrap-up not known, not 0
            assert (leg.hold_s, leg.wrap_s) == (None, None), leg
        else:
            assert leg.hold_s == 0.0, leg  # the daemon saw it: measured

    now = datetime.now(UTC)
    day = now.strftime("%Y-%m-%d")
    next_day = (now + timedelta(days=1)).strftime("%Y-%m-%d")
    period = await get(port, f"/api/stats?from={day}&to={next_day}&group_by=queue")
    tier1 = expected["tier1"]
    asa = sum(tier1["holds"]) / len(tier1["holds"])
    assert counts(period["groups"]["tier1"]) == counts(tier1)
    # The seen call's wait is measured to the millisecond, Asterisk's in whole seconds.
    assert period["groups"]["tier1"]["asa_s"] == pytest.approx(asa, abs=1.0)

    async def live_counts_them() -> bool:
        live = await get(port, "/api/stats/live")
        return live["queue"].get("tier1", {}).get("offered") == 4

    await until(live_counts_them)
    live = await get(port, "/api/stats/live")
    assert counts(live["queue"]["tier1"]) == counts(tier1)
    assert live["queue"]["tier1"]["asa_s"] == pytest.approx(asa, abs=1.0)
    assert live["queue"]["tier1"]["asa_s"] == pytest.approx(period["groups"]["tier1"]["asa_s"])


async def _legs_of_every_call(written: Any, calls: int) -> bool:
    return len({leg.call_id for leg in await written()}) == calls


async def test_a_restarted_daemon_counts_todays_calls_it_saw_before_its_stop(world: World) -> None:
    """One instance: today's live figures go on from where they were, not from zero."""
    sim = world.sim
    await world.start()
    await sim.place_call(PATIENT, KNOWN)
    await world.stop()

    daemon = await world.start()
    port = daemon.http_port
    assert port is not None

    async def counted() -> bool:
        live = await get(port, "/api/stats/live")
        return live["queue"].get("tier1", {}).get("answered") == 1

    await until(counted)
    live = await get(port, "/api/stats/live")
    assert counts(live["queue"]["tier1"]) == counts(
        asterisk_figures(world.queue_log, world.config.stats.short_abandon_s)["tier1"]
    )
