"""A running HTTP API on a real socket with its real hub and live calls, for the HTTP tests.

The AMI side is ``RecordingAmi``: it keeps every action as the AMI fields it would send and
answers like Asterisk (``Response: Error`` becomes ``AmiActionError`` with Asterisk's message).
The CRM is a small in-memory directory of real ``CustomerView`` values.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from crm_core.types import (
    CaseView,
    CustomerView,
    InteractionView,
    OrderView,
    Resolution,
)
from cti.ami.errors import AmiActionError, AmiError
from cti.callback_feed import CallbackNews, queue_agents
from cti.calls import LiveCalls
from cti.config import AgentConfig, AgiConfig, Config, HttpConfig, TierConfig
from cti.http import ApiDeps, create_app
from cti.http.auth import hash_token
from cti.hub import PopHub
from cti.tracker.events import CallEvent

TOKENS = {
    "Agent 1001": "token-1001",
    "Agent 1002": "token-1002",
    "Agent 2001": "token-2001",
    "Supervisor": "token-super",
}
CALLER = "+442071234567"
DNC_NUMBER = "+441632960999"
# A switchboard number two customers share: the caller is one of them, nobody knows which.
SHARED_NUMBER = "+442079460000"


def agents() -> list[AgentConfig]:
    def agent(name: str, tiers: list[str], role: str = "agent") -> AgentConfig:
        ext = name.split()[-1]
        phone = {"member": name, "interface": f"Local/{ext}@agents"} if role == "agent" else {}
        return AgentConfig.model_validate(
            {
                "name": name,
                "role": role,
                "tiers": tiers,
                "token_sha256": hash_token(TOKENS[name]),
                **phone,
            }
        )

    return [
        agent("Agent 1001", ["tier1"]),
        agent("Agent 1002", ["tier1"]),
        agent("Agent 2001", ["tier2"]),
        agent("Supervisor", [], "supervisor"),
    ]


def headers(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name]}"}


def customer_view(customer_id: int, name: str, flags: tuple[str, ...] = ()) -> CustomerView:
    return CustomerView(
        customer_id=customer_id,
        external_id=f"C{customer_id}",
        name=name,
        kind="person",
        organisation=None,
        language="en",
        email=None,
        address="1 High Street, London",
        phones=(),
        flags=flags,
        highlights=tuple(f for f in flags if f != "marketing_opt_in"),
        open_cases=(
            CaseView(12, "Broadband drops hourly", "open", "tier1", "Fibre 500", None, ""),
        ),
        orders=(OrderView(7, "ORD-7", "shipped", "in_transit", "TRK1", None),),
        products=("Fibre 500",),
        interactions=(
            InteractionView(3, None, "inbound", "tier1", "tier1", "Agent 1002", "answered", "", ""),
        ),
    )


@dataclass
class MemoryCrm:
    by_number: dict[str, int] = field(default_factory=dict)
    views: dict[int, CustomerView] = field(default_factory=dict)
    # number -> (customer id, rank reason), best ranked first
    shared: dict[str, list[tuple[int, str]]] = field(default_factory=dict)

    async def resolve(self, caller_id: str | None) -> Resolution:
        from crm_core.types import Candidate

        owners = self.shared.get(caller_id or "")
        if owners:
            candidates = tuple(
                Candidate(cid, f"C{cid}", self.views[cid].name, reason) for cid, reason in owners
            )
            return Resolution("ambiguous", caller_id, caller_id or "", candidates)
        cid = self.by_number.get(caller_id or "")
        if cid is None:
            return Resolution("unknown", caller_id, caller_id or "")
        view = self.views[cid]
        return Resolution("match", caller_id, caller_id or "", (Candidate(cid, None, view.name),))

    async def view(self, customer_id: int) -> CustomerView | None:
        return self.views.get(customer_id)

    async def search(self, query: str, limit: int = 20) -> list[Any]:
        from crm_core.types import Candidate

        found = [
            Candidate(v.customer_id, v.external_id, v.name)
            for v in self.views.values()
            if query.lower() in v.name.lower()
        ]
        return found[:limit]


@dataclass
class RecordingAmi:
    """Records the AMI actions; ``refuse[action] = message`` answers that one with an error."""

    actions: list[dict[str, str]] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)
    connected: bool = True

    def _send(self, fields: Mapping[str, str | None]) -> dict[str, str]:
        action = {k: v for k, v in fields.items() if v is not None}
        name = action["Action"]
        if name in self.refuse:
            raise AmiActionError(name, self.refuse[name])
        self.actions.append(action)
        return {"Response": "Success"}

    def names(self) -> list[str]:
        return [a["Action"] for a in self.actions]

    async def setvar(self, variable: str, value: str, *, channel: str | None = None) -> Any:
        return self._send(
            {"Action": "Setvar", "Channel": channel, "Variable": variable, "Value": value}
        )

    async def redirect(self, channel: str, *, context: str, exten: str, priority: int = 1) -> Any:
        return self._send(
            {
                "Action": "Redirect",
                "Channel": channel,
                "Context": context,
                "Exten": exten,
                "Priority": str(priority),
            }
        )

    async def blind_transfer(self, channel: str, *, exten: str, context: str) -> Any:
        return self._send(
            {"Action": "BlindTransfer", "Channel": channel, "Exten": exten, "Context": context}
        )

    async def originate(
        self,
        channel: str,
        *,
        context: str | None = None,
        exten: str | None = None,
        priority: int = 1,
        caller_id: str | None = None,
        variables: Mapping[str, str] | None = None,
    ) -> Any:
        variable = "\n".join(f"{k}={v}" for k, v in (variables or {}).items()) or None
        return self._send(
            {
                "Action": "Originate",
                "Channel": channel,
                "Context": context,
                "Exten": exten,
                "Variable": variable,
            }
        )

    async def queue_add(self, queue: str, interface: str, *, member_name: str | None = None) -> Any:
        return self._send(
            {
                "Action": "QueueAdd",
                "Queue": queue,
                "Interface": interface,
                "MemberName": member_name,
            }
        )

    async def queue_remove(self, queue: str, interface: str) -> Any:
        return self._send({"Action": "QueueRemove", "Queue": queue, "Interface": interface})

    async def queue_pause(
        self, interface: str, paused: bool, *, queue: str | None = None, reason: str | None = None
    ) -> Any:
        return self._send(
            {
                "Action": "QueuePause",
                "Interface": interface,
                "Paused": str(paused).lower(),
                "Queue": queue,
                "Reason": reason,
            }
        )


@dataclass
class World:
    client: TestClient
    hub: PopHub
    calls: LiveCalls
    ami: RecordingAmi
    crm: MemoryCrm
    config: Config
    t: float = 1_795_396_000.0

    async def event(self, event: str, call: str, **data: Any) -> None:
        """A tracker call event through live calls into the hub, as the daemon does it."""
        self.t += 1.0
        ev = CallEvent(call, event, self.t, data)  # type: ignore[arg-type]
        ctx = await self.calls.apply(ev)
        self.hub.publish(ev, ctx)

    async def queued_call(self, call: str, caller: str = CALLER, queue: str = "tier1") -> None:
        await self.event(
            "offered",
            call,
            caller=caller,
            channel=f"Local/08005550100@from-pstn-{call};2",
            uniqueid=call,
        )
        await self.event("queued", call, queue=queue, position=1)

    async def ring(self, call: str, ext: str, queue: str = "tier1") -> None:
        await self.event(
            "ringing",
            call,
            queue=queue,
            member=f"Agent {ext}",
            interface=f"Local/{ext}@agents",
            agent_channel=f"Local/{ext}@agents-{call};1",
        )

    async def answer(self, call: str, ext: str, queue: str = "tier1") -> None:
        await self.event(
            "answered",
            call,
            agent=f"Agent {ext}",
            interface=f"Local/{ext}@agents",
            queue=queue,
            agent_channel=f"Local/{ext}@agents-{call};1",
        )


AGI_TOKEN = "agi-secret-for-tests"


def memory_crm() -> MemoryCrm:
    return MemoryCrm(
        by_number={CALLER: 1, DNC_NUMBER: 2},
        views={
            1: customer_view(1, "Ada Lovelace", ("vip", "hearing_impaired")),
            2: customer_view(2, "Charles Babbage", ("do_not_call",)),
            3: customer_view(3, "Acme Ltd", ("vip",)),
            4: customer_view(4, "Acme Holdings"),
        },
        shared={
            SHARED_NUMBER: [(3, "open case #12 (tier1)"), (4, "latest call 3 days ago")],
        },
    )


def route_handler_for(crm: Any) -> Any:
    """POST /api/route as the daemon mounts it, routing by the default rules over ``crm``."""
    from cti.routing.decisions import DecisionLog
    from cti.routing.http import route_handler
    from cti.routing.router import Router
    from cti.routing.rules import load_rules

    return route_handler(Router(crm, load_rules(Config())), DecisionLog())


@asynccontextmanager
async def running_api(
    *,
    cors_origins: list[str] | None = None,
    ami: Any = None,
    crm: Any = None,
    agi_token: str = AGI_TOKEN,
    grace_s: float = 120.0,
    recorder: Any = None,
    customers_admin: Any = None,
    callbacks: Any = None,
) -> AsyncIterator[World]:
    """The API on a real socket; ``ami`` replaces the recording double (e.g. an AmiClient),
    ``crm`` the in-memory CRM (e.g. a real ``CrmStore``), ``recorder`` where ended calls go,
    ``callbacks`` the callback tasks (a ``CallbackBook``)."""
    config = Config(
        agents=agents(),
        http=HttpConfig(cors_origins=cors_origins or [], originate_context="dial-out"),
        agi=AgiConfig(http_token=agi_token),
        tiers={
            f"tier{n}": TierConfig(queue=f"tier{n}", exten=f"800{n}", label=f"Tier {n} {name}")
            for n, name in ((1, "front desk"), (2, "technical"), (3, "engineering"))
        },
    )
    crm = crm or memory_crm()
    hub = PopHub(config.agents)
    calls = LiveCalls(
        directory=crm,
        tiers_by_queue={t.queue: n for n, t in config.tiers.items()},
        grace_s=grace_s,
        recorder=recorder,
    )
    recording = RecordingAmi()

    async def db_ok() -> bool:
        return True

    deps = ApiDeps(
        config=config,
        hub=hub,
        calls=calls,
        crm=crm,
        ami=ami or recording,
        ami_errors=(AmiError,),
        ami_connected=lambda: bool((ami or recording).connected),
        db_ok=db_ok,
        route_handler=route_handler_for(crm),
        customers_admin=customers_admin,
        callbacks=callbacks,
        callback_news=CallbackNews(hub, queue_agents(config)),
    )
    client = TestClient(TestServer(create_app(deps)))
    await client.start_server()
    try:
        yield World(client, hub, calls, recording, crm, config)
    finally:
        await client.close()
        await calls.close()


@asynccontextmanager
async def ami_world(**kwargs: Any) -> AsyncIterator[tuple[World, Any]]:
    """``running_api`` over a real AMI connection (``AmiClient``) to the fake Asterisk; yields
    the world and the ``FakeAmiServer`` (``pbx.actions`` is every action it received)."""
    from fakes.ami_server import FakeAmiServer

    from cti.ami.client import AmiClient
    from cti.config import AmiConfig

    server_kwargs = {k: kwargs.pop(k) for k in ("delays", "queues") if k in kwargs}
    async with FakeAmiServer(**server_kwargs) as pbx:
        client = AmiClient(
            AmiConfig(host=pbx.host, port=pbx.port, username="cti", secret="cti-secret")
        )
        await client.start()
        try:
            await client.wait_connected(5)
            async with running_api(ami=client, **kwargs) as world:
                yield world, pbx
        finally:
            await client.stop()


# What the API may send to Asterisk (the client's own Login, Events, Ping... are not counted).
CALL_ACTIONS = frozenset(
    {"setvar", "redirect", "blindtransfer", "originate", "queueadd", "queueremove", "queuepause"}
)


def call_actions(pbx: Any) -> list[str]:
    return [a.name for a in pbx.actions if a.name.lower() in CALL_ACTIONS]
