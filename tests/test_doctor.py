"""`cti doctor`: what an administrator sees, line by line.

Against what a real Asterisk 22.10.1 answered (tests/recordings/asterisk22/doctor_*, replayed
by ``RecordedAmi``), and against the fake AMI server for the cases no recording holds.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

import pytest
from fakes.ami_server import AmiUser, FakeAmiServer
from live.lab import CTI_SECRET, OLD_SECRET, lab_config
from live.recorder import RecordedAmi

from crm_core.store import CrmStore
from cti.commands.doctor import Report, diagnose
from cti.config import Config, parse_config

TIERS = {
    "tier1": ["Local/1001@agents/n"],
    "tier2": ["Local/2001@agents/n"],
    "tier3": ["Local/3001@agents/n"],
}
RECORDINGS = Path(__file__).parent / "recordings" / "asterisk22"
# Every action the service sends, as `cti doctor` names its line.
ACTIONS = [
    "Originate",
    "CoreShowChannels",
    "Status",
    "QueueStatus",
    "QueueSummary",
    "BridgeList",
    "BridgeInfo",
    "Getvar",
    "Redirect",
    "BlindTransfer",
    "Atxfer",
    "Setvar",
    "Hangup",
    "QueueAdd",
    "QueueRemove",
    "QueuePause",
    "Ping",
]


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
        *(f"action {a}" for a in ACTIONS),
        "read call",
        "timestamps",
        "read system",
        "queue tier1",
        "queue tier2",
        "queue tier3",
        "database",
        "migrations",
        "query",
    ):
        assert verdicts[check] == "OK", (check, report.lines)
    assert "1 of 1 member(s) can take calls" in _detail(report, "queue tier1")


async def test_checks_place_no_call_and_move_no_caller(tmp_path: Path) -> None:
    db = await _migrated_db(tmp_path)
    async with FakeAmiServer(queues=TIERS) as ami:
        await diagnose(_config(ami.port, db))
        assert ami.state.channels == {}
        sent = {a.name.lower() for a in ami.actions}
    # Every action the service sends is tried, on a channel/queue/bridge that does not exist.
    assert {a.lower() for a in ACTIONS} <= sent


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
    for action in ("Originate", "Redirect", "Setvar", "Hangup", "QueuePause", "CoreShowChannels"):
        assert verdicts[f"action {action}"] == "FAIL", action
    assert "Permission denied" in _detail(report, "action Redirect")
    assert "add call to write =" in _detail(report, "action Redirect")
    assert "add reporting or system to write =" in _detail(report, "action CoreShowChannels")
    for action in ("QueueStatus", "QueueSummary", "BridgeList", "BridgeInfo", "Ping"):
        assert verdicts[f"action {action}"] == "OK", action  # any logged-in user
    assert verdicts["queue tier1"] == "OK"


async def test_a_user_that_cannot_read_call_events_is_caught(tmp_path: Path) -> None:
    db = await _migrated_db(tmp_path)
    users = {"cti": AmiUser("cti-secret", read="agent", write="all")}
    async with FakeAmiServer(users=users, queues=TIERS) as ami:
        report = await diagnose(_config(ami.port, db))
    assert _verdicts(report)["read call"] == "FAIL"
    assert "add call to read =" in _detail(report, "read call")
    assert _verdicts(report)["read system"] == "FAIL"


async def test_a_queue_missing_in_asterisk_fails_with_the_tier_that_names_it(
    tmp_path: Path,
) -> None:
    db = await _migrated_db(tmp_path)
    async with FakeAmiServer(queues={"tier1": TIERS["tier1"], "tier2": TIERS["tier2"]}) as ami:
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
    async with FakeAmiServer(queues={"tier1": TIERS["tier1"], "tier2": TIERS["tier2"]}) as ami:
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
    assert lines[-1] == "cti doctor: 1 of 28 checks FAILED (see above)"


def _lab_config(port: int, db: Path, user: str, secret: str) -> Config:
    """The config the recordings were made with (tests/live/record.py doctor)."""
    text = lab_config(
        ami_port=port,
        agi_port=4573,
        http_port=8080,
        database_url=f"sqlite:///{db}",
        username=user,
        secret=secret,
    )
    return parse_config(text, "lab.toml", env={})


async def _against_recording(name: str, tmp_path: Path, user: str, secret: str) -> Report:
    db = await _migrated_db(tmp_path)
    async with RecordedAmi(RECORDINGS / f"doctor_{name}.ami-session") as asterisk:
        report = await diagnose(_lab_config(asterisk.port, db, user, secret), step_s=3.0)
    assert not asterisk.unanswered, (
        f"doctor sent actions the recording lacks: {asterisk.unanswered}"
    )
    return report


async def test_the_shipped_ami_user_passes_every_check_on_asterisk_22(tmp_path: Path) -> None:
    report = await _against_recording("shipped_user", tmp_path, "cti", CTI_SECRET)
    assert report.failures == 0, report.lines
    assert {verdict for verdict, _, _ in report.lines} == {"OK"}, report.lines
    verdicts = _verdicts(report)
    for action in ACTIONS:
        assert verdicts[f"action {action}"] == "OK", action
    assert verdicts["read call"] == verdicts["read system"] == "OK"
    assert "3 of 3 member(s) can take calls" in _detail(report, "queue tier1")


async def test_the_pre_issue_12_user_fails_the_resync_and_restart_checks_on_asterisk_22(
    tmp_path: Path,
) -> None:
    # read = call,agent / write = call,originate,agent: Asterisk 22 refuses CoreShowChannels
    # and sends no FullyBooted; everything else the service does is allowed.
    report = await _against_recording("old_user", tmp_path, "cti-old", OLD_SECRET)
    failed = {what for verdict, what, _ in report.lines if verdict == "FAIL"}
    assert failed == {"action CoreShowChannels", "read system"}, report.lines
    assert "add reporting or system to write =" in _detail(report, "action CoreShowChannels")
    assert "add system to read =" in _detail(report, "read system")


async def test_queue_members_asterisk_shows_invalid_cannot_take_calls(tmp_path: Path) -> None:
    # queues.conf as shipped, on an Asterisk whose PJSIP phones are not there: every member
    # is Status 4 (Invalid) in QueueStatus, and no call in these queues can be answered.
    report = await _against_recording("pjsip_members", tmp_path, "cti", CTI_SECRET)
    queues = {what: verdict for verdict, what, _ in report.lines if what.startswith("queue ")}
    assert set(queues.values()) == {"FAIL"}, report.lines
    assert "Agent 1001: Invalid phone" in _detail(report, "queue tier1")
    assert "no member can take a call" in _detail(report, "queue tier1")


async def test_a_paused_or_unreachable_member_is_named_while_others_take_calls(
    tmp_path: Path,
) -> None:
    db = await _migrated_db(tmp_path)
    async with FakeAmiServer(queues=TIERS) as ami:
        ami.state.add_member("tier1", "Local/1002@agents/n", "Agent 1002", status=5)
        ami.state.add_member("tier2", "Local/2002@agents/n", "Agent 2002", paused=True)
        ami.state.queues["tier3"].members["Local/3001@agents/n"]["Status"] = "4"
        report = await diagnose(_config(ami.port, db))
    assert "1 of 2 member(s) can take calls" in _detail(report, "queue tier1")
    notes = [d for v, what, d in report.lines if v == "INFO" and what.startswith("queue")]
    assert "Agent 1002: Unavailable phone" in notes
    assert any(
        n.startswith("Local/2002@agents/n: paused") or "Agent 2002: paused" in n for n in notes
    )
    assert _verdicts(report)["queue tier3"] == "FAIL"
    assert "Invalid phone" in _detail(report, "queue tier3")


@pytest.mark.parametrize(
    ("recording", "user"),
    [
        (
            "shipped_user",
            AmiUser(CTI_SECRET, read="system,call,agent", write="call,originate,agent,reporting"),
        ),
        ("old_user", AmiUser(OLD_SECRET, read="call,agent", write="call,originate,agent")),
    ],
)
async def test_the_fake_ami_server_refuses_what_asterisk_22_refused(
    recording: str, user: AmiUser, tmp_path: Path
) -> None:
    name = "cti" if recording == "shipped_user" else "cti-old"
    real = await _against_recording(recording, tmp_path, name, user.secret)
    db = await _migrated_db(tmp_path / "fake")
    async with FakeAmiServer(users={name: user}, queues=TIERS) as ami:
        fake = await diagnose(_lab_config(ami.port, db, name, user.secret))
    checks = [f"action {a}" for a in ACTIONS] + ["read call", "read system"]
    assert {c: _verdicts(fake)[c] for c in checks} == {c: _verdicts(real)[c] for c in checks}


async def test_the_fake_refuses_an_originate_of_exec_but_not_of_chanspy_without_system() -> None:
    # Asterisk's originate_app_permissions: a supervisor's ChanSpy needs write = originate
    # only; Exec (or System, AGI, MixMonitor...) needs system as well.
    users = {"cti": AmiUser("cti-secret", read="call,agent", write="originate")}
    async with FakeAmiServer(users=users, queues=TIERS) as ami:
        reader, writer = await asyncio.open_connection("127.0.0.1", ami.port)
        await reader.readline()
        answers = []
        for action in (
            "Action: Login\r\nUsername: cti\r\nSecret: cti-secret\r\nEvents: off\r\n",
            "Action: Originate\r\nChannel: Local/1001@agents/n\r\nApplication: Exec\r\n"
            "Data: System(true)\r\n",
            "Action: Originate\r\nChannel: Local/1001@agents/n\r\nApplication: ChanSpy\r\n"
            "Data: Local/2001@agents,q\r\nAsync: true\r\n",
        ):
            writer.write(f"{action}\r\n".encode())
            answers.append(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5))
        writer.close()
    assert b"Authentication accepted" in answers[0]
    assert b"Message: Originate Access Forbidden: app or data blacklisted" in answers[1]
    assert b"Message: Originate successfully queued" in answers[2]


async def test_recording_calls_with_the_shipped_user_fails_and_says_it_needs_write_system(
    tmp_path: Path,
) -> None:
    # Asterisk 22.10.1 refused the shipped user's MixMonitor (recordings/asterisk22/supervise.*)
    db = await _migrated_db(tmp_path)
    users = {
        "cti": AmiUser(
            "cti-secret", read="system,call,agent", write="call,originate,agent,reporting"
        )
    }
    async with FakeAmiServer(users=users, queues=TIERS) as ami:
        off = _config(ami.port, db)
        supervisor = off.supervisor.model_copy(update={"record_queues": ["tier1"]})
        recording = _verdicts(await diagnose(off.model_copy(update={"supervisor": supervisor})))
        off_verdicts = _verdicts(await diagnose(off))
    assert recording["action MixMonitor"] == "FAIL"
    assert recording["action MixMonitorMute"] == "OK"
    assert "action MixMonitor" not in off_verdicts  # recording off: not needed, not checked
