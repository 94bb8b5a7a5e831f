"""The HTTP API with supervision wired as the daemon wires it, on a real socket and a real
SQLite file: call events go through live calls, the hub and supervision in the daemon's order."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from http_world import MemoryCrm, RecordingAmi, agents, customer_view

from crm_core.store import CrmStore
from crm_core.types import InteractionRecord
from cti.ami.errors import AmiError
from cti.calls import LiveCalls
from cti.config import Config, StatsConfig, SupervisorConfig
from cti.http import ApiDeps, create_app
from cti.hub import PopHub
from cti.stats.store import StatsRecorder
from cti.supervisor.audit import AuditLog
from cti.supervisor.listen import PbxActions, Supervise
from cti.supervisor.service import Supervision
from cti.tracker.events import CallEvent

T0 = 1_795_392_000.0


@dataclass
class SupervisorWorld:
    client: TestClient
    hub: PopHub
    calls: LiveCalls
    supervision: Supervision
    ami: RecordingAmi
    store: CrmStore
    recorder: StatsRecorder
    now: list[float]
    interactions: dict[str, InteractionRecord]  # the latest record of each call

    async def event(self, event: str, call: str, at: float, **data: Any) -> None:
        """A call event at T0 + ``at``, through live calls, the hub and supervision."""
        self.now[0] = max(self.now[0], T0 + at)
        ev = CallEvent(call, event, T0 + at, data)  # type: ignore[arg-type]
        ctx = await self.calls.apply(ev)
        self.hub.publish(ev, ctx)
        self.supervision.apply(ev, ctx)

    async def agent_state(self, ext: str, at: float, **data: Any) -> None:
        member = {"member": f"Agent {ext}", "interface": f"Local/{ext}@agents"}
        values = {"queue": "tier1", "logged_in": True, "paused": False, **data}
        await self.event("agent_state", "", at, **member, **values)

    async def call(self, call: str, at: float, wait: float, talk: float, ext: str) -> None:
        member = {"member": f"Agent {ext}", "interface": f"Local/{ext}@agents"}
        await self.event("offered", call, at, caller="+442071234567", uniqueid=call)
        await self.event("queued", call, at, queue="tier1")
        await self.event("ringing", call, at + 1, queue="tier1", **member)
        agent = {"agent": f"Agent {ext}", "queue": "tier1", **member}
        await self.event("answered", call, at + wait, **agent)
        await self.event("ended", call, at + wait + talk, hangup_by="caller")


SUPERVISOR_PHONE = "PJSIP/9000"


class LatestRecords(dict[str, InteractionRecord]):
    """The interaction sink: the latest record submitted for each call."""

    def submit(self, record: InteractionRecord) -> None:
        self[record.call_id] = record


@asynccontextmanager
async def running_console(
    tmp_path: Path,
    *,
    supervisor: SupervisorConfig | None = None,
    pbx: PbxActions | None = None,
    db_url: str | None = None,
    grace_s: float = 120,
) -> AsyncIterator[SupervisorWorld]:
    """``pbx``: an AMI client for listening and recording (left out without one); ``db_url``:
    the database (a SQLite file in ``tmp_path`` by default)."""
    people = [
        a.model_copy(update={"interface": SUPERVISOR_PHONE}) if a.role == "supervisor" else a
        for a in agents()
    ]
    config = Config(
        agents=people,
        stats=StatsConfig(service_level_s=20.0, service_level_target=0.8),
        supervisor=supervisor or SupervisorConfig(refresh_s=3600),
    )
    crm = MemoryCrm(by_number={"+442071234567": 1}, views={1: customer_view(1, "Ada Lovelace")})
    store = await CrmStore.open(db_url or f"sqlite+aiosqlite:///{tmp_path / 'stats.db'}")
    hub = PopHub(config.agents)
    tiers = {t.queue: n for n, t in config.tiers.items()}
    now = [T0]
    records = LatestRecords()
    calls = LiveCalls(
        directory=crm, tiers_by_queue=tiers, recorder=records, clock=lambda: now[0], grace_s=grace_s
    )
    recorder = StatsRecorder(store.engine)
    supervise = None
    if pbx is not None:
        supervise = Supervise(config.supervisor, pbx, AuditLog(store.engine), clock=lambda: now[0])
    supervision = Supervision(
        config,
        hub,
        calls,
        tiers_by_queue=tiers,
        recorder=recorder,
        engine=store.engine,
        supervise=supervise,
        clock=lambda: now[0],
    )
    ami = RecordingAmi()

    async def db_ok() -> bool:
        return True

    deps = ApiDeps(
        config=config,
        hub=hub,
        calls=calls,
        crm=crm,
        ami=ami,
        ami_errors=(AmiError,),
        ami_connected=lambda: True,
        db_ok=db_ok,
        supervision=supervision,
    )
    client = TestClient(TestServer(create_app(deps)))
    await client.start_server()
    await supervision.start()
    try:
        yield SupervisorWorld(client, hub, calls, supervision, ami, store, recorder, now, records)
    finally:
        await supervision.stop()
        await client.close()
        await calls.close()
        await store.close()
