"""`cti route-test` and `cti check-config` on the routing rules.

Once each as the user runs them, in a subprocess (``cti.cli.main`` configures structlog for the
whole process, bound to the stderr of the moment, which would outlive pytest's capture); the
variations in-process through the same parser, with the log lines captured."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
import structlog
from fakes.routing import ROUTING_TOML

from crm_core import CrmStore
from cti.cli import build_parser
from cti.commands import route_test
from cti.config import load_config

CTI = Path(sys.executable).with_name("cti")


def cti(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CTI), *args], capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"}
    )


def write_config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "cti.toml"
    db = tmp_path / "crm.db"
    path.write_text(f'[database]\nurl = "sqlite:///{db}"\n' + ROUTING_TOML + extra)
    return path


async def add_vip(config: Path) -> int:
    async with await CrmStore.from_config(load_config(config, env={})) as store:
        created = await store.upsert_customer(
            name="Victor Ashby", phones=["+447700900456"], flags=["vip"]
        )
    return created.customer_id


def route(config: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``cti route-test -c CONFIG ARGS`` in-process: exit code, stdout, stderr."""
    parsed = build_parser().parse_args(["route-test", "-c", str(config), *args])
    capsys.readouterr()  # what came before is not this command's
    with structlog.testing.capture_logs():
        code = route_test.run(parsed, load_config(config, env={}))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_route_test_prints_the_decision_and_the_rule_that_made_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    customer_id = asyncio.run(add_vip(config))
    at = "2026-11-23T10:00"
    text = cti("route-test", "-c", str(config), "--caller", "07700 900456", "--at", at)
    assert text.returncode == 0, text.stderr
    assert "queue     vip" in text.stdout and "rule      vip" in text.stdout
    assert f"customer  {customer_id}" in text.stdout
    code, out, _ = route(config, "--caller", "+447700900456", "--json", "--at", at, capsys=capsys)
    decision = json.loads(out)
    keys = ("queue", "priority", "tier", "customer_id", "reason", "rule")
    assert code == 0 and {k: decision[k] for k in keys} == {
        "queue": "vip",
        "priority": 20,
        "tier": "vip",
        "customer_id": customer_id,
        "reason": "VIP customer",
        "rule": "vip",
    }


def test_route_test_takes_the_time_and_the_dialled_number(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    args = ("--caller", "+442079460999", "--json")
    _, closed, _ = route(config, *args, "--at", "2026-11-23T21:30", capsys=capsys)  # London
    assert json.loads(closed)["rule"] == "closed"
    _, sales, _ = route(
        config, *args, "--at", "2026-11-23T10", "--dnid", "08005550199", capsys=capsys
    )
    assert json.loads(sales)["queue"] == "sales"
    code, _, err = route(config, *args, "--at", "yesterday", capsys=capsys)
    assert code == 2 and "not an ISO time" in err


def test_route_test_with_the_database_down_shows_the_fallback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "cti.toml"
    config.write_text('[database]\nurl = "postgresql://nobody@127.0.0.1:1/none"\n' + ROUTING_TOML)
    code, out, err = route(config, "--caller", "+447700900456", "--json", capsys=capsys)
    assert code == 0
    assert json.loads(out)["reason"] == "fallback" and "CRM unavailable" in err


def test_check_config_refuses_a_rule_naming_an_unknown_tier(tmp_path: Path) -> None:
    bad = write_config(
        tmp_path,
        '\n[[routing.rules]]\nname = "gold-members"\nwhen = { flag = "vip" }\n'
        'then = { tier = "gold" }\n',
    )
    refused = cti("check-config", "-c", str(bad))
    assert refused.returncode == 2
    assert "'gold-members': unknown tier 'gold'" in refused.stderr
