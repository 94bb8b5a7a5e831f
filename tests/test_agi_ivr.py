"""Self-service identification before the queue, through the FastAGI server as Asterisk drives it.

The fake Asterisk (tests/fakes/agi_client.py) answers GET DATA, SAY ALPHA and STREAM FILE as
the real Asterisk 22.10.1 did in tests/recordings/asterisk22/ivr_*.agi-session (checked below).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fakes.agi_client import HANGS_UP, AgiCall, Caller, FakeAsterisk
from fakes.crm_directory import MemoryDirectory, customer
from fakes.routing import OPEN, routing_rules
from prometheus_client import CollectorRegistry, generate_latest
from structlog.testing import capture_logs

from crm_core.types import OrderFact
from cti.agi.server import FastAgiServer
from cti.calls import LiveCalls
from cti.config import IvrConfig
from cti.metrics import DaemonCollector, MetricSources
from cti.routing.decisions import DecisionLog
from cti.routing.ivr import IvrFlow
from cti.routing.router import Router
from cti.tracker.events import CallEvent

RECORDINGS = Path(__file__).parent / "recordings" / "asterisk22"
UNKNOWN = AgiCall(callerid="+449990000000")  # a number the CRM does not know
IVR = IvrConfig(
    enabled=True,
    prompt="cti-ivr-account",
    retry_prompt="cti-ivr-retry",
    account_format="CUST-{digits:0>6}",
    order_format="ORD-{digits}",
    digit_timeout_ms=3000,
    lookup_timeout_ms=300,
)


@dataclass
class Crm(MemoryDirectory):
    """The routing CRM plus account numbers and order references; ``identify`` = "dead" fails
    at once, "hanging" never answers."""

    accounts: dict[str, int] = field(default_factory=dict)
    orders: dict[str, tuple[int, OrderFact]] = field(default_factory=dict)
    identify: str = "ok"
    asked: list[str] = field(default_factory=list)

    async def _check(self, key: str) -> None:
        self.asked.append(key)
        if self.identify == "dead":
            raise ConnectionRefusedError("database is down")
        if self.identify == "hanging":
            await asyncio.Event().wait()

    async def customer_by_external_id(self, external_id: str) -> int | None:
        await self._check(external_id)
        return self.accounts.get(external_id)

    async def order_by_reference(self, reference: str) -> tuple[int, OrderFact] | None:
        await self._check(reference)
        return self.orders.get(reference)


def crm(identify: str = "ok") -> Crm:
    return Crm(
        {
            # reached only by what they type: these numbers never call here
            "+440000000042": customer(42, "Ada Lovelace", case_tiers=("tier2",)),
            "+440000000007": customer(7, "Omar Said", flags=("vip",)),
        },
        accounts={"CUST-010042": 42},
        orders={"ORD-1924": (7, OrderFact("ORD-1924", "shipped", "out_for_delivery"))},
        identify=identify,
    )


@asynccontextmanager
async def ivr_server(
    directory: Crm, settings: IvrConfig = IVR, *, session_timeout_s: float = 30.0
) -> AsyncIterator[tuple[FakeAsterisk, DecisionLog, IvrFlow]]:
    router = Router(directory, routing_rules(), deadline_s=0.25, clock=lambda: OPEN)
    decisions = DecisionLog()
    ivr = IvrFlow(settings, directory, router)
    server = FastAgiServer(
        router, decisions, "127.0.0.1", 0, session_timeout_s=session_timeout_s, ivr=ivr
    )
    await server.start()
    try:
        yield FakeAsterisk("127.0.0.1", server.port), decisions, ivr
    finally:
        await server.stop()
        await router.aclose()


async def test_a_caller_identified_by_account_number_is_routed_as_the_known_customer() -> None:
    directory = crm()
    with capture_logs() as logs:
        async with ivr_server(directory) as (asterisk, decisions, ivr):
            result = await asterisk.call(UNKNOWN, caller=Caller(["10042#"]))
    # The dialplan rings back while routing: the IVR answers before its first prompt.
    assert result.commands[:2] == ["ANSWER", "GET DATA cti-ivr-account 3000 12"]
    assert result.variables == {
        "CTI_QUEUE": "tier2",
        "CTI_PRIORITY": "5",
        "CTI_TIER": "tier2",
        "CTI_CUSTOMER_ID": "42",
        "CTI_REASON": "open case returns to its tier",
        "CTI_IDENTIFIED_BY": "ivr",
    }
    assert result.closed and directory.asked == ["CUST-010042"]
    logged = decisions.get(UNKNOWN.uniqueid)
    assert logged is not None and logged.customer_id == 42 and logged.identified_by == "ivr"
    assert logged.to_dict()["ivr"] == {
        "outcome": "identified",
        "kind": "account",
        "attempts": 1,
        "digits": 5,
    }
    assert ivr.stats.outcomes["identified"] == 1
    # the account number is in no log line, the kind of digits is
    assert not [e for e in logs if "10042" in repr(e)]
    assert any(e.get("kind") == "account" for e in logs if e["event"] == "ivr: caller identified")


async def test_the_pop_and_the_interaction_show_the_ivr_identified_customer() -> None:
    directory = crm()
    async with ivr_server(directory) as (asterisk, decisions, _):
        await asterisk.call(UNKNOWN, caller=Caller(["10042#"]))
    records: list[Any] = []

    class Recorder:
        def submit(self, record: Any) -> None:
            records.append(record)

    calls = LiveCalls(
        directory=directory,
        decisions=decisions,
        recorder=Recorder(),
        tiers_by_queue={"tier2": "tier2"},
    )
    call_id, agi_channel = "1795396343.34", UNKNOWN.channel

    def ev(name: str, ts: float, **data: Any) -> CallEvent:
        return CallEvent(call_id, name, ts, data)  # type: ignore[arg-type]

    await calls.apply(ev("offered", 100.0, caller=UNKNOWN.callerid, uniqueid=call_id))
    ctx = await calls.apply(
        ev("queued", 100.6, queue="tier2", uniqueid=UNKNOWN.uniqueid, channel=agi_channel)
    )
    for _ in range(50):
        if ctx is not None and ctx.view is not None:
            break
        await asyncio.sleep(0.02)
    assert ctx is not None and ctx.customer_id == 42
    assert ctx.view is not None and ctx.view["name"] == "Ada Lovelace"
    await calls.apply(ev("ended", 110.0, hangup_by="caller"))
    (record,) = records
    assert record.customer_id == 42 and record.caller == UNKNOWN.callerid
    assert record.extra["identified_by"] == "ivr"


async def test_a_known_caller_is_not_asked() -> None:
    directory = crm()
    directory.customers["+442071234567"] = customer(99)
    async with ivr_server(directory) as (asterisk, _, ivr):
        result = await asterisk.call(AgiCall(), caller=Caller(["10042#"]))
    assert not [c for c in result.commands if c.startswith("GET DATA")]
    assert result.variables["CTI_CUSTOMER_ID"] == "99" and ivr.stats.sessions == 0


async def test_a_wrong_number_twice_gives_the_route_the_number_would_have_had() -> None:
    directory = crm()
    async with ivr_server(directory) as (asterisk, decisions, ivr):
        result = await asterisk.call(UNKNOWN, caller=Caller(["99999#", "88888#"]))
    asks = [c for c in result.commands if c.startswith("GET DATA")]
    assert asks == ["GET DATA cti-ivr-account 3000 12", "GET DATA cti-ivr-retry 3000 12"]
    assert result.variables["CTI_QUEUE"] == "tier1"
    assert result.variables["CTI_REASON"] == "not in the CRM"
    assert result.variables["CTI_CUSTOMER_ID"] == "" and "CTI_IDENTIFIED_BY" not in result.variables
    logged = decisions.get(UNKNOWN.uniqueid)
    assert logged is not None and logged.identified_by is None
    assert logged.ivr == {"outcome": "not_identified", "attempts": 2, "digits": 5}
    assert ivr.stats.outcomes["not_identified"] == 1


async def test_silence_twice_routes_the_call_without_asking_the_crm() -> None:
    directory = crm()
    async with ivr_server(directory) as (asterisk, decisions, _):
        result = await asterisk.call(UNKNOWN, caller=Caller(["", "#"]))
    assert result.variables["CTI_QUEUE"] == "tier1" and directory.asked == []
    logged = decisions.get(UNKNOWN.uniqueid)
    assert logged is not None and logged.ivr == {"outcome": "no_input", "attempts": 2}


async def test_a_caller_who_hangs_up_during_get_data_ends_cleanly() -> None:
    directory = crm()
    async with ivr_server(directory) as (asterisk, decisions, _):
        result = await asterisk.call(UNKNOWN, caller=Caller([HANGS_UP]))
    assert [c for c in result.commands if c.startswith("GET DATA")] == [
        "GET DATA cti-ivr-account 3000 12"
    ]
    # HANGUP comes with the next command; SET VARIABLE is allowed on the dead channel (replies:
    # ANSWER, GET DATA and five SET VARIABLE)
    assert result.hangup_sent and result.closed and result.replies == ["200"] * 7
    assert result.variables["CTI_QUEUE"] == "tier1" and directory.asked == []
    logged = decisions.get(UNKNOWN.uniqueid)
    assert logged is not None and logged.ivr == {"outcome": "ended", "attempts": 1}


async def test_a_missing_prompt_is_not_asked_twice_and_the_call_goes_on() -> None:
    async with ivr_server(crm()) as (asterisk, _, _):
        result = await asterisk.call(UNKNOWN, caller=Caller(["10042#"], sounds=frozenset()))
    assert len([c for c in result.commands if c.startswith("GET DATA")]) == 1
    assert result.variables["CTI_QUEUE"] == "tier1" and result.closed


@pytest.mark.parametrize("identify", ["dead", "hanging"])
async def test_a_crm_down_during_the_ivr_gives_the_route_within_the_lookup_deadline(
    identify: str,
) -> None:
    directory = crm(identify)
    async with ivr_server(directory) as (asterisk, decisions, ivr):
        started = time.monotonic()
        result = await asterisk.call(UNKNOWN, caller=Caller(["10042#", "10042#"]))
        elapsed = time.monotonic() - started
    assert result.variables["CTI_QUEUE"] == "tier1" and result.closed
    assert len([c for c in result.commands if c.startswith("GET DATA")]) == 1
    assert elapsed < 0.3 + 1.5  # the 300 ms lookup deadline, with room for a loaded machine
    logged = decisions.get(UNKNOWN.uniqueid)
    assert logged is not None and logged.ivr["outcome"] == "crm_unavailable"
    assert ivr.stats.outcomes["crm_unavailable"] == 1


async def test_the_callers_typing_time_is_not_counted_against_the_session_deadline() -> None:
    async with ivr_server(crm(), session_timeout_s=2.0) as (asterisk, _, _):
        result = await asterisk.call(
            UNKNOWN, caller=Caller(["99999#", "10042#"], typing_s=1.5), timeout_s=15
        )
    # 3 s of typing against a 2 s budget (margin for the server's own work on a loaded machine).
    assert result.variables.get("CTI_CUSTOMER_ID") == "42"


async def test_an_order_reference_tells_the_delivery_state_and_counts_a_deflected_caller() -> None:
    settings = IVR.model_copy(update={"end_digit": "1", "end_prompt": "cti-ivr-end"})
    async with ivr_server(crm(), settings) as (asterisk, decisions, ivr):
        result = await asterisk.call(UNKNOWN, caller=Caller(["1924#", "1"]))
        registry = CollectorRegistry()
        registry.register(DaemonCollector(MetricSources(recorder=_NoRecorder(), ivr=ivr)))
        metrics = generate_latest(registry).decode()
    assert 'SAY ALPHA "out for delivery" ""' in result.commands
    assert result.said == ["out for delivery"]
    assert "GET DATA cti-ivr-end 3000 1" in result.commands
    assert result.variables["CTI_IVR_END"] == "1"
    assert result.variables["CTI_CUSTOMER_ID"] == "7" and result.variables["CTI_QUEUE"] == "vip"
    logged = decisions.get(UNKNOWN.uniqueid)
    assert logged is not None and logged.identified_by == "ivr"
    assert logged.ivr == {
        "outcome": "identified",
        "attempts": 1,
        "digits": 4,
        "kind": "order",
        "delivery_state": "out_for_delivery",
        "told": True,
        "deflected": True,
    }
    assert "cti_ivr_deflected_total 1.0" in metrics
    assert "cti_ivr_told_total 1.0" in metrics


async def test_a_caller_told_the_state_who_goes_on_is_queued_and_not_counted() -> None:
    settings = IVR.model_copy(
        update={"end_digit": "1", "state_prompts": {"out_for_delivery": "cti-order-out"}}
    )
    async with ivr_server(crm(), settings) as (asterisk, _, ivr):
        result = await asterisk.call(UNKNOWN, caller=Caller(["1924#", ""]))
    assert 'STREAM FILE cti-order-out ""' in result.commands
    assert "CTI_IVR_END" not in result.variables and result.variables["CTI_QUEUE"] == "vip"
    assert (ivr.stats.told, ivr.stats.deflected) == (1, 0)


class _NoRecorder:
    written = failures = refused = pending = dead_letters = 0


# -- the fake against the recordings --------------------------------------------------------

_HEADER = re.compile(r"^(>>> SEND|<<< RECV|=== META) t=\S+ conn=\S+(?: len=(\d+))?")
RECORDED_CALLERS: dict[str, Caller] = {
    "account": Caller(["10042#"]),
    "slow": Caller(["77"]),
    "hash": Caller(["#"]),
    "silent": Caller(["", ""]),
    "maxlen": Caller(["123456789"]),
    "hangup": Caller([HANGS_UP]),
    "missing": Caller([], sounds=frozenset({"cti-ivr-account", "cti-ivr-thanks"})),
}


def exchanges(path: Path) -> list[tuple[str, bytes]]:
    """(direction, bytes) of an .agi-session, header block excluded."""
    text = path.read_bytes()
    out: list[tuple[str, bytes]] = []
    pos = 0
    while pos < len(text):
        end = text.index(b"\n", pos)
        line = text[pos:end].decode()
        pos = end + 1
        match = _HEADER.match(line)
        if match is None or match.group(2) is None:
            continue
        size = int(match.group(2))
        data = text[pos : pos + size]
        pos += size + (0 if data.endswith(b"\n") else 1)
        out.append((match.group(1)[:3], data))
    return [e for e in out if not e[1].startswith(b"agi_")]


@pytest.mark.parametrize("mode", sorted(RECORDED_CALLERS))
async def test_the_fake_asterisk_answers_ivr_commands_byte_exact_as_recorded(mode: str) -> None:
    recorded = exchanges(RECORDINGS / f"ivr_{mode}.agi-session")
    sent = [data for way, data in recorded if way == ">>>"]
    expected = b"".join(data for way, data in recorded if way == "<<<")
    got = bytearray()
    done = asyncio.Event()

    async def replay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.readline() not in (b"\n", b""):
            pass
        for line in sent:
            writer.write(line)
            while True:
                reply = await reader.readline()
                got.extend(reply)
                if reply != b"HANGUP\n":
                    break
        writer.write_eof()
        got.extend(await reader.read())
        writer.close()
        done.set()

    server = await asyncio.start_server(replay, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        await FakeAsterisk("127.0.0.1", port).call(UNKNOWN, caller=RECORDED_CALLERS[mode])
        await asyncio.wait_for(done.wait(), 5)
    finally:
        server.close()
        await server.wait_closed()
    assert bytes(got) == expected


async def test_the_daemon_asks_with_ivr_enabled_on_the_built_in_crm_and_shows_it_in_metrics(
    tmp_path: Path,
) -> None:
    import aiohttp

    from cti.config import Config
    from cti.daemon import build_daemon

    config = Config.model_validate(
        {
            "ami": {"enabled": False},
            "agi": {"host": "127.0.0.1", "port": 0},
            "http": {"host": "127.0.0.1", "port": 0},
            "database": {"url": f"sqlite:///{tmp_path / 'crm.db'}"},
            "ivr": {"enabled": True, "account_format": "CUST-{digits:0>6}"},
        }
    )
    async with await build_daemon(config) as daemon:
        ann = await daemon.parts.store.upsert_customer(name="Ann", external_id="CUST-000456")
        pbx = FakeAsterisk("127.0.0.1", daemon.agi_port or 0)
        result = await pbx.call(AgiCall().withheld(), caller=Caller(["456#"]))
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{daemon.http_port}/metrics") as response,
        ):
            metrics = await response.text()
    assert result.commands[:2] == ["ANSWER", "GET DATA beep 5000 12"]
    assert result.variables["CTI_CUSTOMER_ID"] == str(ann.customer_id)
    assert 'cti_ivr_sessions_total{outcome="identified"} 1.0' in metrics
    assert "cti_ivr_deflected_total 0.0" in metrics


def test_an_account_format_that_does_not_format_the_digits_is_refused_by_name() -> None:
    from cti.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=r"ivr\.account_format"):
        parse_config('[ivr]\nenabled = true\naccount_format = "CUST-{number}"\n', "cti.toml")


async def test_an_ambiguous_caller_is_asked_and_an_identified_one_gets_their_own_route() -> None:
    directory = crm()
    directory.ambiguous.add("+441234000000")
    async with ivr_server(directory) as (asterisk, decisions, _):
        result = await asterisk.call(AgiCall(callerid="+441234000000"), caller=Caller(["1924#"]))
    assert result.variables["CTI_CUSTOMER_ID"] == "7" and result.variables["CTI_QUEUE"] == "vip"
    logged = decisions.get(AgiCall().uniqueid)
    assert logged is not None and logged.identified_by == "ivr" and logged.status == "match"


async def test_an_ambiguous_caller_is_not_asked_when_the_config_says_so() -> None:
    directory = crm()
    directory.ambiguous.add("+441234000000")
    settings = IVR.model_copy(update={"when": ["unknown", "anonymous"]})
    async with ivr_server(directory, settings) as (asterisk, _, ivr):
        result = await asterisk.call(AgiCall(callerid="+441234000000"), caller=Caller(["1924#"]))
    assert not [c for c in result.commands if c.startswith("GET DATA")]
    assert ivr.stats.sessions == 0
