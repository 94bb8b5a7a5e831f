"""`cti doctor -c FILE`: is this installation ready to run? One verdict line per check.

AMI: the port answers with an Asterisk banner and the login works; every action the service
sends is tried once and must not be refused (``Permission denied``, which names the write
classes the user lacks); call events arrive (the OriginateResponse of a test Originate) and so
does ``FullyBooted`` (read ``system``: the service waits for it after Asterisk restarts); every
queue named in ``[tiers]`` exists and has a member who can take a call. Database: reachable,
migrations at head, a query works.

Every check is harmless on a live PBX: actions name a channel, bridge or queue that does not
exist (``CTIDoctor/...`` is no channel technology), so Asterisk checks the user's rights and
answers without placing, moving or ending a call; the test Originate fails before any channel
exists, so no call is created and nothing reaches the dialplan (Asterisk logs one WARNING
"No channel type registered for 'CTIDoctor'" for it). (Read ``agent``, the queue
events, cannot be proved without touching a queue: it is not checked.)
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
NO_CHANNEL = "CTIDoctor/none"
NO_QUEUE = "cti-doctor-none"
EVENT_WAIT_S = 3.0
LOGIN_EVENTS = "call,agent,system"


@dataclass(frozen=True)
class Probe:
    """An action the service sends, tried with arguments that touch nothing."""

    action: str
    fields: Mapping[str, str]
    # The write classes Asterisk 22 registers the action with (main/manager.c,
    # main/manager_bridges.c, apps/app_queue.c): the user needs one; "" = any user.
    classes: str
    purpose: str
    as_list: bool = False


PROBES = (
    Probe("CoreShowChannels", {}, "reporting or system", "resync: the calls up", True),
    Probe("Status", {"Channel": NO_CHANNEL}, "call, reporting or system", "resync: a call's state"),
    Probe("QueueStatus", {"Queue": NO_QUEUE}, "", "resync: waiting callers, queue members", True),
    Probe("QueueSummary", {"Queue": NO_QUEUE}, "", "queue figures", True),
    Probe("BridgeList", {}, "", "resync: who talks to whom", True),
    Probe("BridgeInfo", {"BridgeUniqueid": NO_QUEUE}, "", "resync: a bridge's channels"),
    Probe(
        "Getvar",
        {"Channel": NO_CHANNEL, "Variable": "CTI_QUEUE"},
        "call or reporting",
        "resync: a call's routing variables",
    ),
    Probe(
        "Redirect",
        {"Channel": NO_CHANNEL, "Context": "transfer", "Exten": "8001", "Priority": "1"},
        "call",
        "escalations",
    ),
    Probe(
        "BlindTransfer",
        {"Channel": NO_CHANNEL, "Context": "transfer", "Exten": "8001"},
        "call",
        "blind transfers",
    ),
    Probe(
        "Atxfer",
        {"Channel": NO_CHANNEL, "Context": "transfer", "Exten": "8001"},
        "call",
        "attended transfers",
    ),
    Probe(
        "Setvar",
        {"Channel": NO_CHANNEL, "Variable": "CTI_DOCTOR", "Value": "1"},
        "call",
        "escalation reason and priority",
    ),
    Probe("Hangup", {"Channel": NO_CHANNEL}, "call or system", "ending a call"),
    Probe("QueueAdd", {}, "agent", "agent login"),
    Probe("QueueRemove", {}, "agent", "agent logout"),
    Probe("QueuePause", {}, "agent", "agent pause"),
    Probe("Ping", {}, "", "keep-alive"),
)

# Only when [supervisor] record_queues names a queue. app_mixmonitor registers MixMonitor with
# system alone (its Command option runs a shell command), MixMonitorMute with system or call
# (tests/recordings/asterisk22/supervise.ami-session: the shipped user gets Permission denied).
RECORDING_PROBES = (
    Probe("MixMonitor", {"Channel": NO_CHANNEL, "File": "cti-doctor.wav"}, "system", "recording"),
    Probe(
        "MixMonitorMute",
        {"Channel": NO_CHANNEL, "Direction": "both", "State": "1"},
        "call",
        "pausing a recording",
    ),
)

# Originate of an application: the dialplan is not consulted (an Originate to an extension is
# refused at once when the extension does not exist, and then sends no event at all), and
# ChanSpy is what a supervisor's listen-in will originate (allowed with write = originate;
# Exec, System, AGI, MixMonitor... would need system).
ORIGINATE_PROBE = {
    "Action": "Originate",
    "ActionID": "cti-doctor-originate",
    "Channel": PROBE_CHANNEL,
    "Application": "ChanSpy",
    "Data": f"{NO_CHANNEL},q",
    "Async": "true",
}

# QueueMember Status: AST_DEVICE_* of include/asterisk/devicestate.h.
MEMBER_STATUS = {
    "0": "Unknown",
    "1": "Not in use",
    "2": "In use",
    "3": "Busy",
    "4": "Invalid",
    "5": "Unavailable",
    "6": "Ringing",
    "7": "Ringing, in use",
    "8": "On hold",
}
UNREACHABLE = {"4", "5"}  # app_queue never rings these


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
        print(f"{verdict:<5}{what:<25}{detail}", flush=True)

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
        self.events: list[dict[str, str]] = []
        self._arrived = asyncio.Event()
        self.protocol = AmiProtocol(self._on_event, id_prefix="cti-doctor")

    def _on_event(self, event: dict[str, str]) -> None:
        self.events.append(event)
        self._arrived.set()

    async def connect(self, host: str, port: int) -> str:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.timeout):
            await loop.create_connection(lambda: self.protocol, host, port)
            return await self.protocol.banner

    async def action(
        self, fields: Mapping[str, str], as_list: bool = False
    ) -> tuple[dict[str, str], list[dict[str, str]]]:
        pending = self.protocol.send(fields, as_list=as_list)
        async with asyncio.timeout(self.timeout):
            response = await pending.future
        return response.fields, response.items

    async def wait_event(self, name: str, seconds: float, **match: str) -> dict[str, str] | None:
        """The first event ``name`` (with these header values) seen since login, or None."""
        try:
            async with asyncio.timeout(seconds):
                while True:
                    for event in self.events:
                        if event.get("Event") == name and all(
                            event.get(k) == v for k, v in match.items()
                        ):
                            return event
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError:
            return None

    def close(self) -> None:
        self.protocol.abort("doctor done")


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
            login, _ = await ami.action(
                {
                    "Action": "Login",
                    "Username": cfg.username,
                    "Secret": cfg.secret,
                    "Events": LOGIN_EVENTS,
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
        await _check_actions(
            ami, report, RECORDING_PROBES if config.supervisor.record_queues else ()
        )
        await _check_read(ami, report)
        await _check_queues(ami, config, report)
    except (AmiError, TimeoutError) as exc:
        report.fail("ami", f"{where}: {exc!r} → Asterisk stopped answering; see its logs")
    finally:
        ami.close()


def _fix(classes: str) -> str:
    return (
        f"→ add {classes} to write = in the user's manager.conf section, "
        "then `manager reload` (docker/asterisk/manager.conf lists what each action needs)"
    )


async def _check_actions(ami: _Ami, report: Report, extra: tuple[Probe, ...] = ()) -> None:
    """Every action the service sends, tried once: only ``Permission denied`` fails."""
    originate, _ = await ami.action(ORIGINATE_PROBE)
    if _denied(originate) or originate.get("Message", "").startswith("Originate Access Forbidden"):
        report.fail("action Originate", f"{originate.get('Message')} {_fix('originate')}")
    else:
        report.ok("action Originate", "allowed (click-to-dial, supervisor listen-in)")
    for probe in (*PROBES, *extra):
        answer, _ = await ami.action({"Action": probe.action, **probe.fields}, probe.as_list)
        if _denied(answer):
            report.fail(
                f"action {probe.action}",
                f"Permission denied ({probe.purpose}) {_fix(probe.classes)}",
            )
        else:
            report.ok(f"action {probe.action}", f"allowed ({probe.purpose})")


async def _check_read(ami: _Ami, report: Report) -> None:
    reply = await ami.wait_event(
        "OriginateResponse", EVENT_WAIT_S, ActionID=ORIGINATE_PROBE["ActionID"]
    )
    if reply is None:
        report.fail(
            "read call",
            "no call event received (the test Originate's OriginateResponse) → add call to "
            "read = in the user's manager.conf section, and do not log in with Events: off",
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
    # Sent with the login response by a booted Asterisk, a moment later by a starting one.
    if await ami.wait_event("FullyBooted", EVENT_WAIT_S) is None:
        report.fail(
            "read system",
            "no FullyBooted event at login → add system to read = in the user's manager.conf "
            "section: after Asterisk restarts, the service waits for FullyBooted before it "
            "asks for the calls and queues",
        )
    else:
        report.ok("read system", "FullyBooted arrives (Asterisk restarts are seen)")


def _member_state(member: Mapping[str, str]) -> str | None:
    """Why a queue member cannot take a call now (None: it can)."""
    status = member.get("Status", "")
    if status in UNREACHABLE:
        return f"{MEMBER_STATUS[status]} phone"
    if member.get("Paused") == "1":
        reason = member.get("PausedReason")
        return f"paused ({reason})" if reason else "paused"
    return None


async def _check_queues(ami: _Ami, config: Config, report: Report) -> None:
    for tier_name, tier in config.tiers.items():
        what = f"queue {tier.queue}"
        status, items = await ami.action(
            {"Action": "QueueStatus", "Queue": tier.queue}, as_list=True
        )
        if status.get("Response") != "Success":
            report.fail(what, f"QueueStatus: {status.get('Message')}")
            continue
        if not any(i.get("Event") == "QueueParams" for i in items):
            report.fail(
                what,
                f"tier {tier_name!r} names queue {tier.queue!r}, which Asterisk does not have "
                f"→ add [{tier.queue}] to queues.conf and run `queue reload all`, "
                "or fix [tiers] in the config",
            )
            continue
        members = [i for i in items if i.get("Event") == "QueueMember"]
        why_not = {m.get("Name") or m.get("Location", "?"): _member_state(m) for m in members}
        ready = [name for name, why in why_not.items() if why is None]
        if ready:
            report.ok(
                what,
                f"tier {tier_name!r}: {len(ready)} of {len(members)} member(s) can take calls",
            )
            for name, why in why_not.items():
                if why is not None:
                    report.note(what, f"{name}: {why}")
        elif not members:
            report.fail(
                what,
                f"tier {tier_name!r}: no members → add member => lines to [{tier.queue}] in "
                "queues.conf, or have agents log in from their desktop",
            )
        else:
            unready = ", ".join(f"{name}: {why}" for name, why in why_not.items())
            report.fail(
                what,
                f"tier {tier_name!r}: no member can take a call ({unready}) → register the "
                "agents' phones (Asterisk shows them Invalid/Unavailable) or unpause them",
            )


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
