"""`cti doctor -c FILE`: is this installation ready to run? One verdict line per check.

AMI: the port answers with an Asterisk banner, the login works, the user may write what the
service sends (Originate, Redirect, queue actions) and read call events, and every queue named
in ``[tiers]`` exists. Database: reachable, migrations at head, a query works. Every check is
harmless: actions name a channel technology or channel that does not exist, so Asterisk
answers (or refuses with ``Permission denied``) without placing or moving a call.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cti.config import Config

HELP = "Check AMI, permissions, queues and the database, line by line"

PROBE_CHANNEL = "CTIDoctor/permission-check"  # an unknown technology: nothing is dialled
EVENT_WAIT_S = 3.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per AMI step")
    parser.add_argument("--skip-db", action="store_true", help="do not check the database")


@dataclass
class Report:
    lines: list[tuple[str, str, str]] = field(default_factory=list)

    def ok(self, what: str, detail: str) -> None:
        self._add("OK", what, detail)

    def fail(self, what: str, detail: str) -> None:
        self._add("FAIL", what, detail)

    def note(self, what: str, detail: str) -> None:
        self._add("INFO", what, detail)

    def skip(self, what: str, detail: str) -> None:
        self._add("SKIP", what, detail)

    def _add(self, verdict: str, what: str, detail: str) -> None:
        self.lines.append((verdict, what, detail))
        print(f"{verdict:<5}{what:<22}{detail}", flush=True)

    @property
    def failures(self) -> int:
        return sum(1 for verdict, _, _ in self.lines if verdict == "FAIL")


def run(args: argparse.Namespace, config: Config) -> int:
    if not args.config:
        print("cti doctor: no config file given; checking the built-in defaults (use -c FILE)")
    report = asyncio.run(diagnose(config, step_s=args.timeout, database=not args.skip_db))
    checked = sum(1 for verdict, _, _ in report.lines if verdict in {"OK", "FAIL"})
    if report.failures:
        print(f"cti doctor: {report.failures} of {checked} checks FAILED (see above)")
        return 1
    print(f"cti doctor: all {checked} checks passed")
    return 0


async def diagnose(config: Config, *, step_s: float = 5.0, database: bool = True) -> Report:
    """Run every check, printing each verdict as it is known; the lines are in the report."""
    report = Report()
    if config.ami.enabled:
        await check_ami(config, report, step_s)
    else:
        report.skip("ami", "[ami] enabled = false: no call tracking, pops or escalations")
    if database:
        await check_database(config, report)
    return report


class _Ami:
    """A short-lived AMI connection on the service's own wire protocol."""

    def __init__(self, timeout: float) -> None:
        from cti.ami.protocol import AmiProtocol

        self.timeout = timeout
        self.events: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        self.protocol = AmiProtocol(self.events.put_nowait, id_prefix="cti-doctor")

    async def connect(self, host: str, port: int) -> str:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.timeout):
            await loop.create_connection(lambda: self.protocol, host, port)
            return await self.protocol.banner

    async def action(self, fields: Mapping[str, str], as_list: bool = False) -> dict[str, str]:
        pending = self.protocol.send(fields, as_list=as_list)
        async with asyncio.timeout(self.timeout):
            response = await pending.future
        if as_list:
            return {**response.fields, "_items": str(len(response.items)), **_kinds(response.items)}
        return response.fields

    async def wait_event(self, name: str, action_id: str, seconds: float) -> dict[str, str] | None:
        try:
            async with asyncio.timeout(seconds):
                while True:
                    event = await self.events.get()
                    if event.get("Event") == name and event.get("ActionID") == action_id:
                        return event
        except TimeoutError:
            return None

    def close(self) -> None:
        self.protocol.abort("doctor done")


def _kinds(items: list[dict[str, str]]) -> dict[str, str]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item.get("Event", "")] = counts.get(item.get("Event", ""), 0) + 1
    return {f"_count_{k}": str(v) for k, v in counts.items()}


def _denied(fields: Mapping[str, str]) -> bool:
    return fields.get("Response") == "Error" and fields.get("Message") == "Permission denied"


async def check_ami(config: Config, report: Report, step_s: float) -> None:
    from cti.ami.errors import AmiError

    cfg = config.ami
    where = f"{cfg.host}:{cfg.port}"
    ami = _Ami(step_s)
    try:
        try:
            banner = await ami.connect(cfg.host, cfg.port)
        except (OSError, TimeoutError) as exc:
            report.fail(
                "ami connect",
                f"{where}: {exc.strerror if isinstance(exc, OSError) and exc.strerror else exc!r}"
                " → is Asterisk running? check [ami] host/port and manager.conf "
                "(enabled = yes, port, bindaddr, permit)",
            )
            report.skip("ami checks", "not connected")
            return
        if not banner.startswith("Asterisk Call Manager"):
            report.fail("ami connect", f"{where} answered {banner!r}: not an Asterisk AMI port")
            return
        report.ok("ami connect", f"{where} ({banner})")

        try:
            login = await ami.action(
                {
                    "Action": "Login",
                    "Username": cfg.username,
                    "Secret": cfg.secret,
                    "Events": "call,agent",
                }
            )
        except (AmiError, TimeoutError) as exc:
            login = {"Response": "Error", "Message": f"no answer ({exc!r})"}
        if login.get("Response") != "Success":
            report.fail(
                "ami login",
                f"user {cfg.username!r}: {login.get('Message') or 'refused'} → the user and "
                "secret must match a [section] of manager.conf (secret: [ami] secret or "
                "$CTI_AMI_SECRET), and the host must be allowed by its permit=",
            )
            report.skip("ami checks", "not logged in")
            return
        report.ok("ami login", f"user {cfg.username!r}")
        await _check_permissions(ami, report)
        await _check_queues(ami, config, report)
    except (AmiError, TimeoutError) as exc:
        report.fail("ami", f"{where}: {exc!r} → Asterisk stopped answering; see its logs")
    finally:
        ami.close()


async def _check_permissions(ami: _Ami, report: Report) -> None:
    fix = "→ add it to write = in the user's manager.conf section, then `manager reload`"
    originate = await ami.action(
        {
            "Action": "Originate",
            "ActionID": "cti-doctor-originate",
            "Channel": PROBE_CHANNEL,
            "Context": "cti-doctor",
            "Exten": "s",
            "Priority": "1",
            "Async": "true",
        }
    )
    if _denied(originate):
        report.fail("write originate", f"Originate: Permission denied {fix} (click-to-dial)")
    else:
        report.ok("write originate", "Originate allowed (click-to-dial)")
        reply = await ami.wait_event("OriginateResponse", "cti-doctor-originate", EVENT_WAIT_S)
        if reply is None:
            report.fail(
                "read call",
                "no call event received → add call to read = in the user's manager.conf "
                "section (read = call,agent), and do not log in with Events: off",
            )
        else:
            report.ok("read call", "call events arrive (OriginateResponse)")
            if "Timestamp" in reply:
                report.ok("timestamps", "events carry Asterisk's Timestamp")
            else:
                report.note(
                    "timestamps",
                    "events have no Timestamp: wait/talk times use this host's clock; "
                    "set timestampevents = yes in manager.conf [general]",
                )
    redirect = await ami.action(
        {
            "Action": "Redirect",
            "Channel": f"{PROBE_CHANNEL}-0",
            "Context": "cti-doctor",
            "Exten": "s",
            "Priority": "1",
        }
    )
    if _denied(redirect):
        report.fail("write call", f"Redirect: Permission denied {fix} (escalations, transfers)")
    else:
        report.ok("write call", "Redirect/BlindTransfer/Setvar allowed (escalations)")
    pause = await ami.action({"Action": "QueuePause"})
    if _denied(pause):
        report.fail("write agent", f"QueuePause: Permission denied {fix} (agent login/pause)")
    else:
        report.ok("write agent", "QueueAdd/QueueRemove/QueuePause allowed (agent state)")
    report.note(
        "read agent",
        "queue events (AgentCalled, AgentConnect...) need read = call,agent; "
        "they cannot be checked without touching a queue",
    )


async def _check_queues(ami: _Ami, config: Config, report: Report) -> None:
    for tier_name, tier in config.tiers.items():
        what = f"queue {tier.queue}"
        status = await ami.action({"Action": "QueueStatus", "Queue": tier.queue}, as_list=True)
        if status.get("Response") != "Success":
            report.fail(what, f"QueueStatus: {status.get('Message')}")
        elif status.get("_count_QueueParams", "0") == "0":
            report.fail(
                what,
                f"tier {tier_name!r} names queue {tier.queue!r}, which Asterisk does not have "
                f"→ add [{tier.queue}] to queues.conf and run `queue reload all`, "
                "or fix [tiers] in the config",
            )
        else:
            members = int(status.get("_count_QueueMember", "0"))
            report.ok(what, f"tier {tier_name!r}, {members} member(s) logged in")


async def check_database(config: Config, report: Report) -> None:
    from crm_core import schema
    from crm_core.store import CrmStore

    try:
        url = config.database_url
    except Exception as exc:
        report.fail("database", f"{exc}")
        return
    shown = url.split("@")[-1] if "@" in url else url
    if url.startswith("sqlite"):
        path = Path(url.split(":///", 1)[-1])
        if not await asyncio.to_thread(path.is_file):
            report.fail("database", f"{path} does not exist → run `cti migrate -c FILE` (or seed)")
            return
    try:
        store = await CrmStore.open(
            url, region=config.phone.default_region, migrate=False, cache_size=0
        )
    except Exception as exc:
        report.fail("database", f"{shown}: {exc} → check [database] url / $CTI_DATABASE_URL")
        return
    try:
        report.ok("database", f"{shown} reachable")
        current = await schema.current_revision(store.engine)
        head = schema.head_revision()
        if current != head:
            report.fail(
                "migrations",
                f"schema at {current or 'empty'}, code expects {head} → run `cti migrate -c FILE`",
            )
            return
        report.ok("migrations", f"at head ({head})")
        try:
            customers = await store.count_customers()
        except Exception as exc:
            report.fail("query", f"counting customers failed: {exc}")
        else:
            report.ok("query", f"{customers} customers")
    finally:
        await store.close()
