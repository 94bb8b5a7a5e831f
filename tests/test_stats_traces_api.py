"""Every recorded Asterisk 22 trace, replayed through the whole daemon over the fake AMI server:
what ``/api/stats`` (the database), ``/api/stats/live`` and ``cti report`` give per queue (and
per agent and hour) is what Asterisk's own queue events in the trace say, worked out here from
the trace alone.

Asterisk's side (``asterisk_figures``): ``QueueCallerJoin`` offers a leg, ``AgentConnect``
answers it (``HoldTime``: its wait), ``QueueCallerAbandon`` is a caller giving up (``HoldTime``),
``AgentComplete`` ends its talk (``TalkTime``). Waits and talk are taken from the events'
``Timestamp`` (Asterisk's clock, to the microsecond) and checked against the whole seconds
Asterisk wrote in ``HoldTime``/``TalkTime``. Where we count differently on purpose (README,
"Statistics: the definitions"), the rule is applied to Asterisk's events here:

- a ``QueueCallerAbandon`` followed by the same channel joining another queue is a Redirect:
  the caller did not hang up; the leg *left* (and escalated);
- in an attended transfer, the leg joined by the consultation channel is the caller's from
  the join, answered when ``AttendedTransfer`` bridges the caller (Transferee) to the agent.

The daemon runs with no wrap-up grace, so handle time is talk (wrap-up is ours, not Asterisk's).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from daemon_world import token_of, wait_until
from fakes.ami_server import FakeAmiServer, read_ami_events

from crm_core.store import CrmStore
from cti.cli import main
from cti.config import Config
from cti.daemon import Daemon, build_daemon

TRACES = Path(__file__).resolve().parent.parent.parent / "shared" / "ami-traces" / "asterisk22"
NAMES = sorted(p.stem for p in TRACES.glob("*.ami"))
SUPERVISOR = "Supervisor"
SERVICE_LEVEL_S = 20.0
SHORT_ABANDON_S = 5.0


@dataclass
class QueueTruth:
    offered: int = 0
    answered: int = 0
    abandoned: int = 0
    short_abandoned: int = 0
    left: int = 0
    answer_waits: list[float] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)  # every leg's wait that ended
    talks: list[float] = field(default_factory=list)
    escalations_out: int = 0
    transfers_out: int = 0


def group_key(leg: dict[str, Any], by: str) -> str | None:
    if by == "hour":  # the UTC hour it joined
        return time.strftime("%Y-%m-%dT%H:00Z", time.gmtime(leg["joined"]))
    return leg.get(by)  # its queue, or the agent who answered it (AgentConnect MemberName)


def asterisk_figures(events: list[dict[str, str]], by: str = "queue") -> dict[str, QueueTruth]:
    """Per queue (agent, hour), from Asterisk's queue events only (none of our code)."""
    out: dict[str, QueueTruth] = defaultdict(QueueTruth)
    ts = [float(e["Timestamp"]) for e in events]
    legs: list[dict[str, Any]] = []  # every leg, in join order
    open_by_channel: dict[str, dict[str, Any]] = {}  # the channel's latest leg
    for i, e in enumerate(events):
        kind, chan = e.get("Event"), e.get("Channel", "")
        if kind == "QueueCallerJoin":
            leg = {"queue": e["Queue"], "call": e["Linkedid"], "chan": chan, "joined": ts[i]}
            legs.append(leg)
            open_by_channel[chan] = leg
        elif kind == "AgentConnect":
            leg = open_by_channel[chan]
            leg["answered"] = leg["connected"] = ts[i]
            leg["agent"] = e["MemberName"]
            assert abs((ts[i] - leg["joined"]) - int(e["HoldTime"])) < 1.0
        elif kind == "QueueCallerAbandon":
            leg = open_by_channel[chan]
            leg["gave_up"] = ts[i]
            assert abs((ts[i] - leg["joined"]) - int(e["HoldTime"])) < 1.0
        elif kind == "AgentComplete":
            leg = open_by_channel[chan]
            leg["completed"] = ts[i]
            leg["reason"] = e["Reason"]
            assert abs((ts[i] - leg["connected"]) - int(e["TalkTime"])) < 1.0
        elif kind == "AttendedTransfer" and e.get("Result") == "Success":
            # The consultation's leg becomes the transferee's: answered for the caller now.
            for leg in legs:
                if (
                    leg["call"] == e["TransfereeLinkedid"]
                    and leg["chan"] != e["TransfereeChannel"]
                    and "answered" in leg
                    and "completed" not in leg
                ):
                    leg["answered"] = ts[i]
    by_call: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for leg in legs:
        by_call[leg["call"]].append(leg)
    for leg in legs:
        key = group_key(leg, by)
        if key is None:
            continue  # by agent: a leg nobody answered
        q = out[key]
        q.offered += 1
        later = by_call[leg["call"]][by_call[leg["call"]].index(leg) + 1 :]
        moved = any(nxt["queue"] != leg["queue"] for nxt in later)
        if "answered" in leg:
            q.answered += 1
            q.answer_waits.append(leg["answered"] - leg["joined"])
            q.waits.append(leg["answered"] - leg["joined"])
            if "completed" in leg:
                q.talks.append(leg["completed"] - leg["answered"])
            if moved:
                q.escalations_out += 1
            elif leg.get("reason") == "transfer":
                q.transfers_out += 1
        elif "gave_up" in leg:
            wait = leg["gave_up"] - leg["joined"]
            q.waits.append(wait)
            if moved:  # a Redirect out of the queue, not a caller hanging up
                q.left += 1
                q.escalations_out += 1
            elif wait <= SHORT_ABANDON_S:
                q.short_abandoned += 1
            else:
                q.abandoned += 1
    return dict(out)


def expected(q: QueueTruth) -> dict[str, Any]:
    waits = sorted(q.answer_waits)
    counted = q.offered - q.short_abandoned
    in_sl = sum(1 for w in waits if w <= SERVICE_LEVEL_S)
    p90 = waits[math.ceil(0.9 * len(waits)) - 1] if waits else None
    return {
        "offered": q.offered,
        "answered": q.answered,
        "abandoned": q.abandoned,
        "short_abandoned": q.short_abandoned,
        "left": q.left,
        "service_level": round(in_sl / counted, 4) if counted else None,
        "asa_s": sum(waits) / len(waits) if waits else None,
        "p90_answer_s": math.floor(p90 * 10) / 10 if p90 is not None else None,
        "longest_wait_s": max(q.waits) if q.waits else None,
        "aht_s": sum(q.talks) / len(q.talks) if q.talks else None,
        "transfers_out": q.transfers_out,
        "escalations_out": q.escalations_out,
    }


def assert_agrees(ours: dict[str, Any], theirs: dict[str, Any], where: str) -> None:
    for key, want in theirs.items():
        got = ours.get(key)
        if isinstance(want, float):
            # Our times are the call events' (the same Timestamps, to the millisecond).
            assert got == pytest.approx(want, abs=0.01), f"{where} {key}"
        else:
            assert got == want, f"{where} {key}"


def config_of(db_url: str, ami_port: int) -> Config:
    people: list[dict[str, Any]] = [
        {"name": f"Agent {ext}", "member": f"Agent {ext}", "interface": f"Local/{ext}@agents",
         "role": "agent", "tiers": [f"tier{ext[0]}"],
         "token_sha256": hashlib.sha256(token_of(f"Agent {ext}").encode()).hexdigest()}
        for ext in ("1001", "1002", "1003", "2001", "2002", "3001")
    ]  # fmt: skip
    people.append(
        {"name": SUPERVISOR, "role": "supervisor",
         "token_sha256": hashlib.sha256(token_of(SUPERVISOR).encode()).hexdigest()}
    )  # fmt: skip
    return Config.model_validate(
        {
            "ami": {
                "host": "127.0.0.1",
                "port": ami_port,
                "username": "cti",
                "secret": "cti-secret",
                "reconnect_initial_s": 0.05,
            },
            "agi": {"host": "127.0.0.1", "port": 0},
            "http": {"host": "127.0.0.1", "port": 0},
            "database": {"url": db_url},
            "stats": {"service_level_s": SERVICE_LEVEL_S, "short_abandon_s": SHORT_ABANDON_S},
            "agents": people,
        }
    )


@dataclass
class Replayed:
    daemon: Daemon
    db: Path
    session: aiohttp.ClientSession
    last_ts: float  # the trace's last Timestamp

    async def get(self, path: str) -> Any:
        url = f"http://127.0.0.1:{self.daemon.http_port}{path}"
        headers = {"Authorization": f"Bearer {token_of(SUPERVISOR)}"}
        async with self.session.get(url, headers=headers) as r:
            assert r.status == 200, await r.text()
            return await r.json()


@pytest.fixture
async def replayed(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Replayed]:
    """The trace ``request.param`` played to the daemon, every event taken in, legs written;
    ``NAME:untimed``: without the ``Timestamp`` headers (``timestampevents = no``, Asterisk's
    default)."""
    name, _, untimed = request.param.partition(":")
    events = [e for e in read_ami_events(TRACES / f"{name}.ami") if "Event" in e]
    last = max(float(e["Timestamp"]) for e in events)
    if untimed:
        events = [{k: v for k, v in e.items() if k != "Timestamp"} for e in events]
    db = tmp_path / "stats.db"
    store = await CrmStore.open(f"sqlite+aiosqlite:///{db}")
    ami = FakeAmiServer()
    await ami.start()
    session = aiohttp.ClientSession()
    daemon = await build_daemon(config_of(f"sqlite+aiosqlite:///{db}", ami.port), store=store,
                                grace_s=0.0)  # fmt: skip
    try:
        await daemon.start()
        await wait_until(lambda: daemon.resyncs >= 1)
        wanted = sum(1 for e in events if e["Event"] in daemon.parts.tracker.wanted_events)
        await ami.play(events)
        await wait_until(lambda: daemon.events_in >= wanted, 10.0)  # all taken in
        await wait_until(lambda: daemon.parts.calls.active() == [], 10.0)
        supervision = daemon.parts.supervision
        assert supervision is not None and supervision.recorder is not None
        assert await daemon.parts.recorder.flush(5.0)
        assert await supervision.recorder.flush(5.0)  # type: ignore[attr-defined]
        yield Replayed(daemon, db, session, last)
    finally:
        await daemon.stop()
        await session.close()
        await ami.stop()
        await store.close()


@pytest.mark.skipif(not NAMES, reason="recorded traffic not found beside the checkout")
@pytest.mark.parametrize("replayed", NAMES, indirect=True)
async def test_period_and_live_statistics_are_what_asterisk_counted_in_every_trace(
    replayed: Replayed, request: pytest.FixtureRequest
) -> None:
    name = request.node.callspec.params["replayed"]
    events = [e for e in read_ami_events(TRACES / f"{name}.ami") if "Event" in e]
    live = await replayed.get("/api/stats/live")
    for by in ("queue", "agent", "hour"):
        theirs = {key: expected(q) for key, q in asterisk_figures(events, by).items()}
        period = await replayed.get(f"/api/stats?from=2026-01-01&to=2027-01-01&group_by={by}")
        assert sorted(period["groups"]) == sorted(theirs), by
        assert sorted(live[by]) == sorted(theirs), f"{by} (live)"
        for key, want in theirs.items():
            assert_agrees(period["groups"][key], want, f"{name} /api/stats {by} {key}")
            assert_agrees(live[by][key], want, f"{name} /api/stats/live {by} {key}")


@pytest.mark.skipif(not NAMES, reason="recorded traffic not found beside the checkout")
@pytest.mark.parametrize("replayed", ["burst_50_calls"], indirect=True)
def test_cti_report_on_the_replayed_burst_is_what_asterisk_counted(
    replayed: Replayed, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = [e for e in read_ami_events(TRACES / "burst_50_calls.ami") if "Event" in e]
    theirs = {queue: expected(q) for queue, q in asterisk_figures(events).items()}
    config = tmp_path / "cti.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{replayed.db}"\n[stats]\n'
                      f"service_level_s = {SERVICE_LEVEL_S}\nshort_abandon_s = {SHORT_ABANDON_S}\n",
                      encoding="utf-8")  # fmt: skip
    status = main(["report", "-c", str(config), "--from", "2026-01-01", "--to", "2027-01-01",
                   "--json"])  # fmt: skip
    out, err = capsys.readouterr()
    assert status == 0, err
    report = json.loads(out)
    assert sorted(report["groups"]) == sorted(theirs)
    assert sum(t["offered"] for t in theirs.values()) == 50
    for queue, want in theirs.items():
        assert_agrees(report["groups"][queue], want, f"cti report {queue}")


COUNTS = ("offered", "answered", "left", "transfers_out", "escalations_out")


@pytest.mark.skipif(not NAMES, reason="recorded traffic not found beside the checkout")
@pytest.mark.parametrize("replayed", [f"{n}:untimed" for n in NAMES], indirect=True)
async def test_without_timestamps_the_calls_asterisk_counted_are_counted_on_this_hosts_clock(
    replayed: Replayed, request: pytest.FixtureRequest
) -> None:
    """Waits and talk then come from this host's clock (a replay at wire speed has none to
    speak of): the counts are Asterisk's, the callers who gave up in all (short or not)."""
    name = request.node.callspec.params["replayed"].partition(":")[0]
    events = [e for e in read_ami_events(TRACES / f"{name}.ami") if "Event" in e]
    theirs = {queue: expected(q) for queue, q in asterisk_figures(events).items()}
    today = datetime.now(UTC).date()  # the legs are this host's now
    span = f"from={today - timedelta(days=1)}&to={today + timedelta(days=2)}"
    period = await replayed.get(f"/api/stats?{span}&group_by=queue")
    live = await replayed.get("/api/stats/live")
    for ours in (period["groups"], live["queue"]):
        assert sorted(ours) == sorted(theirs), "queues"
        for queue, want in theirs.items():
            got = ours[queue]
            assert {k: got[k] for k in COUNTS} == {k: want[k] for k in COUNTS}, queue
            gave_up = got["abandoned"] + got["short_abandoned"]
            assert gave_up == want["abandoned"] + want["short_abandoned"], queue
