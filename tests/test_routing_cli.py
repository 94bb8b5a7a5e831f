"""`cti route-test` and `cti check-config` on the routing rules."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from fakes.routing import ROUTING_TOML

from crm_core import CrmStore
from cti.cli import main


def write_config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "cti.toml"
    db = tmp_path / "crm.db"
    path.write_text(f'[database]\nurl = "sqlite:///{db}"\n' + ROUTING_TOML + extra)
    return path


async def add_vip(config: Path) -> int:
    from cti.config import load_config

    async with await CrmStore.from_config(load_config(config, env={})) as store:
        created = await store.upsert_customer(
            name="Victor Ashby", phones=["+447700900456"], flags=["vip"]
        )
    return created.customer_id


def test_route_test_prints_the_decision_and_the_rule_that_made_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    customer_id = asyncio.run(add_vip(config))
    at = "2026-11-23T10:00"
    assert main(["route-test", "-c", str(config), "--caller", "07700 900456", "--at", at]) == 0
    text = capsys.readouterr().out
    assert "queue     vip" in text and "rule      vip" in text and str(customer_id) in text
    assert main(["route-test", "-c", str(config), "--caller", "+447700900456", "--json",
                 "--at", at]) == 0  # fmt: skip
    decision = json.loads(capsys.readouterr().out)
    assert {
        k: decision[k] for k in ("queue", "priority", "tier", "customer_id", "reason", "rule")
    } == {
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
    config = str(write_config(tmp_path))
    args = ["route-test", "-c", config, "--caller", "+442079460999", "--json"]
    assert main([*args, "--at", "2026-11-23T21:30"]) == 0  # local London time: closed
    assert json.loads(capsys.readouterr().out)["rule"] == "closed"
    assert main([*args, "--at", "2026-11-23T10:00", "--dnid", "08005550199"]) == 0
    assert json.loads(capsys.readouterr().out)["queue"] == "sales"
    assert main([*args, "--at", "yesterday"]) == 2
    assert "not an ISO time" in capsys.readouterr().err


def test_route_test_with_the_database_down_shows_the_fallback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "cti.toml"
    config.write_text('[database]\nurl = "postgresql://nobody@127.0.0.1:1/none"\n' + ROUTING_TOML)
    code = main(["route-test", "-c", str(config), "--caller", "+447700900456", "--json",
                 "--at", "2026-11-23T10:00"])  # fmt: skip
    out = capsys.readouterr()
    assert code == 0
    assert json.loads(out.out)["reason"] == "fallback" and "CRM unavailable" in out.err


def test_check_config_refuses_a_rule_naming_an_unknown_tier(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write_config(tmp_path)
    assert main(["check-config", "-c", str(good)]) == 0
    bad = write_config(
        tmp_path,
        '\n[[routing.rules]]\nname = "gold-members"\nwhen = { flag = "vip" }\n'
        'then = { tier = "gold" }\n',
    )
    assert main(["check-config", "-c", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "'gold-members': unknown tier 'gold'" in err
