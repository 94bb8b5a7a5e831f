"""`cti doctor` against a fake Asterisk 22 AMI: what an administrator sees, line by line."""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

import pytest
from fakes.ami_server import AmiUser, FakeAmiServer

from crm_core.store import CrmStore
from cti.commands.doctor import Report, diagnose
from cti.config import Config, parse_config

TIERS = {"tier1": ["Local/1001@agents/n"], "tier2": ["Local/2001@agents/n"], "tier3": []}


def _config(port: int, db: Path, *, user: str = "cti", secret: str = "cti-secret") -> Config:
    text = f"""
[ami]
host = "127.0.0.1"
port = {port}
username = "{user}"
secret = "{secret}"
action_timeout_s = 2.0

[database]
url = "sqlite:///{db}"

[tiers.tier1]
queue = "tier1"
exten = "8001"
[tiers.tier2]
queue = "tier2"
exten = "8002"
[tiers.tier3]
queue = "tier3"
exten = "8003"
"""
    return parse_config(text, "doctor-test.toml", env={})


async def _migrated_db(tmp_path: Path) -> Path:
    path = tmp_path / "crm.db"
    store = await CrmStore.open(f"sqlite+aiosqlite:///{path}")
    await store.close()
    return path


def _verdicts(report: Report) -> dict[str, str]:
    return {what: verdict for verdict, what, _ in report.lines}


def _detail(report: Report, what: str) -> str:
    return next(detail for _, name, detail in report.lines if name == what)


async def test_a_healthy_installation_passes_every_check(tmp_path: Path) -> None:
    db = await _migrated_db(tmp_path)
    async with FakeAmiServer(queues=TIERS) as ami:
        report = await diagnose(_config(ami.port, db))
    verdicts = _verdicts(report)
    assert report.failures == 0, report.lines
    for check in (
        "ami connect",
        "ami login",
        "write originate",
        "read call",
        "timestamps",
        "write call",
        "write agent",
        "queue tier1",
        "queue tier2",
        "queue tier3",
        "database",
        "migrations",
        "query",
    ):
        assert verdicts[check] == "OK", (check, report.lines)
    assert "1 member" in _detail(report, "queue tier1")


async def test_checks_place_no_call_and_move_no_caller(tmp_path: Path) -> None:
    db = await _migrated_db(tmp_path)
    async with FakeAmiServer(queues=TIERS) as ami:
        await diagnose(_config(ami.port, db))
        assert ami.state.channels == {}
        sent = {a.name.lower() for a in ami.actions}
    assert not sent & {"hangup", "blindtransfer", "queueadd", "queueremove", "setvar"}


async def test_a_wrong_secret_fails_the_login_and_says_where_to_look(tmp_path: Path) -> None:
    db = await _migrated_db(tmp_path)
    async with FakeAmiServer(queues=TIERS, auth_fail_delay_s=0.05) as ami:
        report = await diagnose(_config(ami.port, db, secret="wrong"))
    assert _verdicts(report)["ami login"] == "FAIL"
    assert "Authentication failed" in _detail(report, "ami login")
    assert "manager.conf" in _detail(report, "ami login")
    assert _verdicts(report)["ami checks"] == "SKIP"
    assert report.failures == 1


async def test_a_read_only_user_is_told_which_write_classes_are_missing(tmp_path: Path) -> None:
    db = await _migrated_db(tmp_path)
    users = {"cti": AmiUser("cti-secret", read="call,agent", write="none")}
    async with FakeAmiServer(users=users, queues=TIERS) as ami:
        report = await diagnose(_config(ami.port, db))
    verdicts = _verdicts(report)
    assert verdicts["write originate"] == "FAIL"
    assert verdicts["write call"] == "FAIL"
    assert verdicts["write agent"] == "FAIL"
    assert "Permission denied" in _detail(report, "write call")
    assert verdicts["queue tier1"] == "OK"  # QueueStatus needs no write class


async def test_a_user_that_cannot_read_call_events_is_caught(tmp_path: Path) -> None:
    db = await _migrated_db(tmp_path)
    users = {"cti": AmiUser("cti-secret", read="agent", write="all")}
    async with FakeAmiServer(users=users, queues=TIERS) as ami:
        report = await diagnose(_config(ami.port, db))
    assert _verdicts(report)["read call"] == "FAIL"
    assert "read = call,agent" in _detail(report, "read call")


async def test_a_queue_missing_in_asterisk_fails_with_the_tier_that_names_it(
    tmp_path: Path,
) -> None:
    db = await _migrated_db(tmp_path)
    async with FakeAmiServer(queues={"tier1": [], "tier2": []}) as ami:
        report = await diagnose(_config(ami.port, db))
    verdicts = _verdicts(report)
    assert verdicts["queue tier1"] == "OK"
    assert verdicts["queue tier3"] == "FAIL"
    assert "queues.conf" in _detail(report, "queue tier3")
    assert report.failures == 1


async def test_nothing_listening_on_the_ami_port_is_a_clear_failure(tmp_path: Path) -> None:
    db = await _migrated_db(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    report = await diagnose(_config(port, db))
    assert _verdicts(report)["ami connect"] == "FAIL"
    assert "is Asterisk running" in _detail(report, "ami connect")
    assert _verdicts(report)["database"] == "OK"


async def test_a_database_that_was_never_migrated_is_reported(tmp_path: Path) -> None:
    async with FakeAmiServer(queues=TIERS) as ami:
        report = await diagnose(_config(ami.port, tmp_path / "absent.db"))
    assert _verdicts(report)["database"] == "FAIL"
    assert "cti migrate" in _detail(report, "database")
    assert not (tmp_path / "absent.db").exists()


@pytest.mark.slow
async def test_cli_prints_a_verdict_per_line_and_exits_non_zero_on_failure(
    tmp_path: Path,
) -> None:
    db = await _migrated_db(tmp_path)
    async with FakeAmiServer(queues={"tier1": [], "tier2": []}) as ami:
        config = tmp_path / "cti.toml"
        text = (
            f'[ami]\nport = {ami.port}\nsecret = "cti-secret"\n[database]\nurl = "sqlite:///{db}"\n'
        )
        config.write_text(text)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cti",
            "doctor",
            "-c",
            str(config),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    lines = out.decode().splitlines()
    assert proc.returncode == 1, (out, err)
    assert any(line.startswith("OK   ami login") for line in lines), lines
    assert any(line.startswith("FAIL queue tier3") for line in lines), lines
    assert lines[-1] == "cti doctor: 1 of 13 checks FAILED (see above)"
