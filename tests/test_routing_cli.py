"""`cti route-test` and `cti check-config` on the routing rules.

Run in-process through the CLI's own parser, with log lines captured, rather than through
``cti.cli.main``: that configures structlog for the whole process, bound to the stderr of the
moment, which would outlive pytest's capture of it (and a subprocess costs seconds)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import structlog
from fakes.routing import ROUTING_TOML

from crm_core import CrmStore
from cti.cli import build_parser
from cti.commands import check_config, route_test
from cti.config import ConfigError, load_config


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
    code, text, _ = route(config, "--caller", "07700 900456", "--at", at, capsys=capsys)
    assert code == 0
    assert "queue     vip" in text and "rule      vip" in text
    assert f"customer  {customer_id}" in text
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
    at = ("--at", "2026-11-23T10:00")  # open hours: a closed centre routes without the CRM
    code, out, err = route(config, "--caller", "+447700900456", "--json", *at, capsys=capsys)
    assert code == 0
    assert json.loads(out)["reason"] == "fallback" and "CRM unavailable" in err


def test_check_config_refuses_a_rule_naming_an_unknown_tier(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write_config(tmp_path)
    parsed = build_parser().parse_args(["check-config", "-c", str(good)])
    assert check_config.run(parsed, load_config(good, env={})) == 0
    assert "OK (9 tiers" in capsys.readouterr().out
    bad = write_config(
        tmp_path,
        '\n[[routing.rules]]\nname = "gold-members"\nwhen = { flag = "vip" }\n'
        'then = { tier = "gold" }\n',
    )
    with pytest.raises(ConfigError, match="'gold-members': unknown tier 'gold'"):
        check_config.run(parsed, load_config(bad, env={}))
