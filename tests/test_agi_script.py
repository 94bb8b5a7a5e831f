"""``cti-agi``, run as Asterisk runs a classic AGI script, and ``POST /api/route`` behind it."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
import tomllib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from fakes.agi_client import parse_args
from fakes.crm_directory import MemoryDirectory, customer
from fakes.routing import OPEN, ROUTING_TOML, routing_rules

from cti.agi_script import DEFAULT_DEADLINE_MS, DEFAULT_HTTP_URL, fallback_variables
from cti.config import AgiConfig, parse_config
from cti.http.app import error_middleware
from cti.http.auth import AgentDirectory, auth_middleware
from cti.routing.decisions import DecisionLog
from cti.routing.http import route_handler
from cti.routing.router import Router, fallback_decision
from cti.routing.rules import load_rules

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(sys.executable).with_name("cti-agi")
CRM = MemoryDirectory({"+442071234567": customer(42, case_tiers=("tier2",))})
TOKEN = "s3cret-agi-token"


def classic_env(callerid: str = "+442071234567") -> bytes:
    """The environment Asterisk 22 writes to a classic AGI script's stdin for AGI(cti-agi,route)."""
    lines = [
        ("agi_request", "cti-agi"),
        ("agi_channel", "Local/08005550100@from-pstn-00000011;2"),
        ("agi_language", "en"),
        ("agi_type", "Local"),
        ("agi_uniqueid", "1795396343.35"),
        ("agi_version", "22.10.1"),
        ("agi_callerid", callerid),
        ("agi_calleridname", "unknown"),
        ("agi_callingpres", "0"),
        ("agi_callingani2", "0"),
        ("agi_callington", "0"),
        ("agi_callingtns", "0"),
        ("agi_dnid", "unknown"),
        ("agi_rdnis", "unknown"),
        ("agi_context", "from-pstn"),
        ("agi_extension", "08005550100"),
        ("agi_priority", "6"),
        ("agi_enhanced", "0.0"),
        ("agi_accountcode", ""),
        ("agi_threadid", "139935215044288"),
        ("agi_arg_1", "route"),
    ]
    return b"".join(f"{k}: {v}\n".encode() for k, v in lines) + b"\n"


@dataclass
class ScriptRun:
    variables: dict[str, str] = field(default_factory=dict)
    stderr: bytes = b""
    returncode: int | None = None
    elapsed_s: float = 0.0


async def run_script(config: Path, callerid: str = "+442071234567") -> ScriptRun:
    """Play Asterisk: environment on stdin, then answer each command line with 200 result=1."""
    run = ScriptRun()
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        str(SCRIPT),
        "route",
        env={"CTI_CONFIG": str(config), "PATH": "/usr/bin:/bin"},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdin and proc.stdout and proc.stderr
    proc.stdin.write(classic_env(callerid))
    async with asyncio.timeout(10):
        while line := await proc.stdout.readline():
            argv = parse_args(line.decode().rstrip("\n"))
            assert [a.upper() for a in argv[:2]] == ["SET", "VARIABLE"] and len(argv) == 4
            run.variables[argv[2]] = argv[3]
            proc.stdin.write(b"200 result=1\n")
        run.stderr = await proc.stderr.read()
        run.returncode = await proc.wait()
    run.elapsed_s = time.perf_counter() - started
    return run


@asynccontextmanager
async def daemon(delay_s: float = 0.0) -> AsyncIterator[tuple[str, DecisionLog]]:
    """The daemon's /api/route on a free port."""
    decisions = DecisionLog()
    router = Router(CRM, routing_rules(), deadline_s=0.25, clock=lambda: OPEN)
    handler = route_handler(router, decisions)

    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(delay_s)
        return await handler(request)

    # The API's own middlewares: errors as JSON, and the [agi] http_token check.
    app = web.Application(
        middlewares=[error_middleware, auth_middleware(AgentDirectory([]), TOKEN)]
    )
    app.router.add_post("/api/route", slow if delay_s else handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/api/route", decisions
    finally:
        await runner.cleanup()


def write_config(tmp_path: Path, url: str, deadline_ms: int = 300, token: str = TOKEN) -> Path:
    path = tmp_path / "cti.toml"
    path.write_text(
        f'[agi]\nhttp_url = "{url}"\ndeadline_ms = {deadline_ms}\nhttp_token = "{token}"\n'
        + ROUTING_TOML
    )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_cti_agi_sets_the_daemons_decision_and_the_daemon_remembers_it(
    tmp_path: Path,
) -> None:
    async with daemon() as (url, decisions):
        run = await run_script(write_config(tmp_path, url))
    assert run.returncode == 0
    assert run.variables == {
        "CTI_QUEUE": "tier2",
        "CTI_PRIORITY": "5",
        "CTI_TIER": "tier2",
        "CTI_CUSTOMER_ID": "42",
        "CTI_REASON": "open case returns to its tier",
    }
    assert run.stderr == b""  # pyst2's debug output is silenced
    logged = decisions.get("1795396343.35")
    assert logged is not None and logged.customer_id == 42


async def test_cti_agi_sets_the_fallback_route_when_the_daemon_is_unreachable(
    tmp_path: Path,
) -> None:
    run = await run_script(write_config(tmp_path, f"http://127.0.0.1:{free_port()}/api/route"))
    assert run.returncode == 0
    assert run.variables == {
        "CTI_QUEUE": "tier1",
        "CTI_PRIORITY": "0",
        "CTI_TIER": "tier1",
        "CTI_CUSTOMER_ID": "",
        "CTI_REASON": "fallback",
    }


async def test_cti_agi_gives_up_on_a_slow_daemon_at_the_deadline(tmp_path: Path) -> None:
    async with daemon(delay_s=4.0) as (url, _):
        run = await run_script(write_config(tmp_path, url, deadline_ms=400))
    assert run.variables["CTI_REASON"] == "fallback"
    # Interpreter start-up on a loaded machine included; still before the daemon answers at 4 s.
    assert run.elapsed_s < 3.0


FALLBACK_TIER1 = {
    "CTI_QUEUE": "tier1",
    "CTI_PRIORITY": "0",
    "CTI_TIER": "tier1",
    "CTI_CUSTOMER_ID": "",
    "CTI_REASON": "fallback",
}


@pytest.mark.parametrize(
    ("text", "variables"),
    [
        ("[agi\nthis is not toml", FALLBACK_TIER1),  # unreadable: the built-in defaults
        ('[routing.default]\ntier = "nope"', {"CTI_REASON": "fallback"}),  # dialplan's default
    ],
)
async def test_cti_agi_with_a_broken_config_still_answers(
    tmp_path: Path, text: str, variables: dict[str, str]
) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text(text)
    run = await run_script(broken)
    assert run.returncode == 0 and run.variables == variables


def test_cti_agi_reads_the_same_defaults_as_the_config() -> None:
    assert AgiConfig().http_url == DEFAULT_HTTP_URL
    assert AgiConfig().deadline_ms == DEFAULT_DEADLINE_MS


@pytest.mark.parametrize(
    "text",
    [
        "",
        ROUTING_TOML,
        (ROOT / "config" / "cti.example.toml").read_text(),
        '[tiers.a]\nqueue = "qa"\npriority = 3\n[tiers.b]\nqueue = "qb"\n'
        '[routing.default]\nqueue = "qb"\npriority = 7\nset = { CTI_X = "y$language" }',
    ],
)
def test_cti_agi_falls_back_to_the_same_route_as_the_router(text: str) -> None:
    expected = fallback_decision(load_rules(parse_config(text, "t.toml", env={})))
    assert fallback_variables(tomllib.loads(text)) == expected.dialplan_variables()


async def test_cti_agi_without_the_right_token_is_refused_and_takes_the_fallback(
    tmp_path: Path,
) -> None:
    async with daemon() as (url, decisions):
        run = await run_script(write_config(tmp_path, url, token="guessed"))
        assert run.variables == FALLBACK_TIER1
        assert decisions.get("1795396343.35") is None  # the daemon told it nothing
        async with aiohttp.ClientSession() as http:
            for auth in ({}, {"Authorization": "Bearer guessed"}, {"Authorization": TOKEN}):
                async with http.post(url, json={"caller": "+442071234567"}, headers=auth) as r:
                    assert r.status == 401, auth
                    assert (await r.json())["error"].startswith("token:")


async def test_post_api_route_answers_the_decision_and_refuses_bad_bodies() -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with daemon() as (url, _), aiohttp.ClientSession(headers=auth) as http:
        async with http.post(url, json={"caller": "+442071234567", "dnid": "unknown"}) as ok:
            assert ok.status == 200
            body = await ok.json()
        async with http.post(url, data=b"not json") as bad:
            assert bad.status == 400
            assert "JSON" in (await bad.json())["error"]
        async with http.post(url, json={"caller": 44}) as wrong:
            assert wrong.status == 400
            assert (await wrong.json())["error"].startswith("caller:")
        async with http.post(url, json={"caller": "sip:" + "9" * 120}) as spoofed:
            assert spoofed.status == 200  # routed (to no customer), not refused
        async with http.post(url, json={"caller": "+44\r\n"}) as injected:
            assert injected.status == 400
    assert {k: body[k] for k in ("queue", "priority", "tier", "customer_id", "rule")} == {
        "queue": "tier2",
        "priority": 5,
        "tier": "tier2",
        "customer_id": 42,
        "rule": "open-case",
    }
    assert body["dialplan"]["CTI_CUSTOMER_ID"] == "42"
