"""Record what a real Asterisk 22 sends, for the tests that run without one.

    .venv/bin/python tests/live/record.py PREFIX WHAT [OUT_DIR]

PREFIX is an Asterisk install prefix (``/opt/asterisk22``); WHAT one of the recordings below;
OUT_DIR defaults to tests/recordings/asterisk22 (``queue_log``: Asterisk's queue_log lines
of an answered and an abandoned call, beside their events). Each run starts its own
Asterisk from the shipped docker/asterisk config plus the lab overlay (tests/live/lab.py) in
a temporary directory, on free ports, and stops it at the end.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lab import CTI_SECRET, LAB_SECRET, OLD_SECRET, AsteriskLab, free_port, lab_config
from recorder import AmiConn, RecordingProxy, Transcript

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "tests" / "recordings" / "asterisk22"


async def _doctor_through(
    proxy: RecordingProxy, root: Path, user: str, secret: str, pythonpath: str | None
) -> None:
    conf = root / f"cti-{user}.toml"
    conf.write_text(
        lab_config(
            ami_port=proxy.port,
            agi_port=free_port(),
            http_port=free_port(),
            database_url=f"sqlite:///{root / 'crm.db'}",
            username=user,
            secret=secret,
        )
    )
    env = {**os.environ, **({"PYTHONPATH": pythonpath} if pythonpath else {})}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cti", "doctor", "-c", str(conf), "--skip-db", env=env, cwd=root
    )
    await proc.wait()


async def _doctors(
    transcript: Transcript,
    lab: AsteriskLab,
    root: Path,
    user: str,
    secret: str,
    old_code: str | None,
) -> None:
    async with RecordingProxy(transcript, lab.ami_port) as proxy:
        await _doctor_through(proxy, root, user, secret, None)
        if old_code:
            await _doctor_through(proxy, root, user, secret, old_code)
        await asyncio.sleep(0.2)


def record_doctor(prefix: Path, out: Path, old_code: str | None) -> None:
    """doctor_<case>.ami-session: `cti doctor` (conn A) and, with old_code, the doctor of that
    source tree (conn B), for the shipped user, the pre-issue-12 user and PJSIP members."""
    cases = (
        ("shipped_user", "cti", CTI_SECRET, True),
        ("old_user", "cti-old", OLD_SECRET, True),
        ("pjsip_members", "cti", CTI_SECRET, False),
    )
    for case, user, secret, local in cases:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            lab = AsteriskLab(prefix, root / "asterisk", local_agents=local)
            lab.start()
            try:
                transcript = Transcript(
                    f"cti doctor against Asterisk {version(prefix)}: user {user!r}, "
                    + ("lab agents (Local channels)" if local else "queues.conf as shipped")
                )

                asyncio.run(_doctors(transcript, lab, root, user, secret, old_code))
                transcript.save(out / f"doctor_{case}.ami-session")
            finally:
                lab.stop()


def _early_client(
    transcript: Transcript,
    name: str,
    port: int,
    user: str,
    secret: str,
    events: str,
    stop: threading.Event,
) -> None:
    """Connect as soon as the port accepts, log in, then QueueStatus every 20 ms until one
    succeeds; then listen 2 s more (a late FullyBooted)."""
    conn = AmiConn(transcript, name, port=port)
    while not stop.is_set():
        try:
            conn.sock = socket.create_connection(("127.0.0.1", port), timeout=1)
            transcript.meta(name, f"client connected to 127.0.0.1:{port}")
            break
        except OSError:
            time.sleep(0.005)
    if conn.sock is None:
        return
    conn.read_for(1, until=b"\r\n")
    conn.send(Action="Login", ActionID=f"{name}-login", Username=user, Secret=secret, Events=events)
    conn.read_for(0.02)
    for n in range(1, 500):
        conn.send(Action="QueueStatus", ActionID=f"{name}-qs{n}", Queue="tier1")
        if b"QueueStatusComplete" in conn.read_for(0.02, until=b"QueueStatusComplete"):
            break
    conn.read_for(2.0)
    conn.close()


def record_startup(prefix: Path, out: Path) -> None:
    """asterisk_startup.ami-session: clients that log in while Asterisk is starting, after it
    was killed (SIGKILL) and started again, as a daemon reconnecting at once would."""
    with tempfile.TemporaryDirectory(dir=os.environ.get("LAB_DIR")) as tmp:
        lab = AsteriskLab(prefix, Path(tmp) / "asterisk")
        lab.start()
        transcript = Transcript(
            f"Logins during Asterisk {version(prefix)} start-up, after a SIGKILL: A = user cti "
            "(read system,call,agent) with Events: call,agent,system; B = cti with Events: "
            "call,agent (the service's default mask); C = cti-old (read call,agent)"
        )
        idle = AmiConn(transcript, "L", port=lab.ami_port)
        idle.connect()
        idle.read_for(1, until=b"\r\n")
        idle.send(Action="Login", Username="cti", Secret=CTI_SECRET, Events="call,agent,system")
        idle.read_for(0.5)
        transcript.meta("-", "Asterisk killed (SIGKILL)")
        lab.kill()
        idle.read_for(1)
        idle.close()
        stop = threading.Event()
        clients = [
            threading.Thread(
                target=_early_client, args=(transcript, name, lab.ami_port, *who, stop)
            )
            for name, who in (
                ("A", ("cti", CTI_SECRET, "call,agent,system")),
                ("B", ("cti", CTI_SECRET, "call,agent")),
                ("C", ("cti-old", OLD_SECRET, "call,agent,system")),
            )
        ]
        for client in clients:
            client.start()
        time.sleep(0.3)
        transcript.meta("-", "Asterisk started again (asterisk -f)")
        lab.start(wait=False)
        for client in clients:
            client.join(30)
        stop.set()
        transcript.save(out / "asterisk_startup.ami-session")
        lab.stop()
        if os.environ.get("LAB_DIR"):
            shutil.copytree(tmp, Path(os.environ["LAB_DIR"]) / "last", dirs_exist_ok=True)
        lab.stop()


class _Ami:
    """An asyncio AMI connection whose every chunk goes into a transcript."""

    def __init__(self, transcript: Transcript, name: str, port: int) -> None:
        self.transcript, self.name, self.port = transcript, name, port
        self.received = b""
        self._ids = itertools.count(1)

    async def open(self, events: str, user: str = "lab", secret: str = LAB_SECRET) -> None:
        self.transcript.meta(self.name, f"client connects to 127.0.0.1:{self.port}")
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self._task = asyncio.create_task(self._read())
        await self.send(Action="Login", Username=user, Secret=secret, Events=events)
        await asyncio.sleep(0.2)

    async def _read(self) -> None:
        while data := await self.reader.read(65536):
            self.transcript.chunk("recv", self.name, data)
            self.received += data
        self.transcript.meta(self.name, "EOF from Asterisk")

    async def send(self, **fields: str) -> str:
        aid = fields.pop("ActionID", None) or f"{self.name}-{next(self._ids)}"
        data = "".join(f"{k}: {v}\r\n" for k, v in {**fields, "ActionID": aid}.items())
        self.transcript.chunk("send", self.name, (data + "\r\n").encode())
        self.writer.write((data + "\r\n").encode())
        await self.writer.drain()
        return aid

    async def idle(self, within_s: float = 120.0) -> None:
        """Until Asterisk has no channel left (CoreShowChannels lists none), then 0.5 s."""
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            mark = len(self.received)
            aid = await self.send(Action="CoreShowChannels")
            done = f"ActionID: {aid}\r\nEventList: Complete".encode()
            while done not in self.received[mark:]:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            if b"ListItems: 0\r\n" in self.received[mark:]:
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(0.5)

    async def close(self) -> None:
        self.writer.close()
        await asyncio.gather(self._task, return_exceptions=True)
        self.transcript.meta(self.name, "client closes")

    def events(self, start: int) -> bytes:
        """The event blocks received from offset ``start`` on (at a message boundary), as
        received: the .ami format of the shared traces."""
        blocks = [b for b in self.received[start:].split(b"\r\n\r\n") if b.startswith(b"Event: ")]
        return b"".join(b + b"\r\n\r\n" for b in blocks)


async def _route_to(queue: str, priority: str, port: int) -> asyncio.Server:
    """A FastAGI server that routes every call to ``queue`` (as the service would)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (await reader.readline()).strip():
            pass
        for command in (f"SET VARIABLE CTI_QUEUE {queue}", f"SET VARIABLE CTI_PRIORITY {priority}"):
            writer.write(f"{command}\n".encode())
            await reader.readline()
        writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", port)


CALLS = {
    "click_to_dial_answered": (
        "Click-to-dial as the service places it (async Originate of the agent's phone "
        "Local/1001@agents/n into [lab-internal], exten 02079460000): the agent answers after "
        "1 s, the number after 2 s of ringing, and hangs up 4 s later"
    ),
    "click_to_dial_no_answer": (
        "Click-to-dial: the agent answers after 1 s, the number rings until the Dial timeout "
        "of [lab-internal] (60 s): DialEnd NOANSWER"
    ),
    "click_to_dial_busy": (
        "Click-to-dial: the agent answers after 1 s, the number is busy: DialEnd BUSY"
    ),
    "ringall_tier2_answered": (
        "Inbound call from +447700900456 routed by FastAGI to tier2 (ring-all, Agent 2001 and "
        "Agent 2002): 2001 answers after 2 s, 2002 would after 30 s; the caller hangs up 6 s "
        "after the call was answered by the dialplan"
    ),
}
NUMBER = "02079460000"


async def _record_call(lab: AsteriskLab, name: str, out: Path) -> None:
    transcript = Transcript(f"{CALLS[name]} (Asterisk {version(lab.prefix)})")
    listener = _Ami(transcript, "L", lab.ami_port)
    actions = _Ami(transcript, "A", lab.ami_port)
    await listener.open("on")
    await actions.open("off")
    for family in ("agent", "outside"):
        await actions.send(Action="DBDelTree", Family=family)
    settings = {
        "agent": {"1001/ringdelay": "1", "2001/ringdelay": "2", "2002/ringdelay": "30"},
        "outside": {f"{NUMBER}/ringdelay": "2", f"{NUMBER}/talk": "4"},
    }
    if name == "click_to_dial_no_answer":
        settings["outside"] = {f"{NUMBER}/mode": "noanswer"}
    elif name == "click_to_dial_busy":
        settings["outside"] = {f"{NUMBER}/mode": "busy"}
    for family, values in settings.items():
        for key, value in values.items():
            await actions.send(Action="DBPut", Family=family, Key=key, Val=value)
    await asyncio.sleep(0.3)
    start = len(listener.received)
    transcript.meta("-", f"scenario {name} starts")
    if name.startswith("click_to_dial"):
        await actions.send(  # the fields AmiClient.originate sends
            Action="Originate",
            Channel="Local/1001@agents/n",
            Context="lab-internal",
            Exten=NUMBER,
            Priority="1",
            Variable="CTI_CUSTOMER_ID=42",
            Timeout="30000",
            Async="true",
        )
    else:
        await actions.send(
            Action="Originate",
            Channel="Local/08005550100@from-pstn",
            Context="caller-sim",
            Exten="talk",
            Priority="1",
            CallerID="<+447700900456>",
            Variable="LAB_CALLER_HOLD=6",
            Async="true",
        )
    await asyncio.sleep(1.0)
    await actions.idle()
    transcript.meta("-", f"scenario {name} over: no channel left")
    await listener.close()
    await actions.close()
    transcript.save(out / f"{name}.ami-session")
    (out / f"{name}.ami").write_bytes(listener.events(start))


def record_calls(prefix: Path, out: Path, names: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        lab = AsteriskLab(prefix, Path(tmp) / "asterisk")
        lab.start()

        async def run() -> None:
            agi = await _route_to("tier2", "20", lab.agi_port)
            try:
                for name in names:
                    await _record_call(lab, name, out)
            finally:
                agi.close()

        try:
            asyncio.run(run())
        finally:
            lab.stop()


QUEUE_LOG = {
    "queue_log_answered": (
        "Inbound call from +442071234567 routed by FastAGI to tier1: the agent rung answers "
        "after 2 s and hangs up 5 s later (COMPLETEAGENT)"
    ),
    "queue_log_abandoned": (
        "Inbound call from +442071234567 routed by FastAGI to tier1, no agent answers; the "
        "caller hangs up 6 s after the trunk answered (ABANDON)"
    ),
}


async def _record_queue_log(lab: AsteriskLab, name: str, out: Path) -> None:
    """<name>.ami (every event of the call) and <name>.queue_log (the lines app_queue and
    the shipped dialplan's QueueLog wrote for it)."""
    transcript = Transcript(f"{QUEUE_LOG[name]} (Asterisk {version(lab.prefix)})")
    listener = _Ami(transcript, "L", lab.ami_port)
    actions = _Ami(transcript, "A", lab.ami_port)
    await listener.open("on")
    await actions.open("off")
    await actions.send(Action="DBDelTree", Family="agent")
    for agent in ("1001", "1002", "1003"):
        values = {"ringdelay": "2", "talk": "5"}
        if name == "queue_log_abandoned":
            values = {"mode": "noanswer"}
        for key, value in values.items():
            await actions.send(Action="DBPut", Family="agent", Key=f"{agent}/{key}", Val=value)
    await asyncio.sleep(0.3)
    queue_log = lab.log_dir / "queue_log"
    mark = queue_log.stat().st_size if queue_log.exists() else 0
    start = len(listener.received)
    transcript.meta("-", f"scenario {name} starts")
    await actions.send(
        Action="Originate",
        Channel="Local/08005550100@from-pstn",
        Context="caller-sim",
        Exten="talk",
        Priority="1",
        CallerID="<+442071234567>",
        Variable="LAB_CALLER_HOLD=6" if name == "queue_log_abandoned" else "LAB_CALLER_HOLD=0",
        Async="true",
    )
    await asyncio.sleep(1.0)
    await actions.idle()
    transcript.meta("-", f"scenario {name} over: no channel left")
    await listener.close()
    await actions.close()
    (out / f"{name}.ami").write_bytes(listener.events(start))
    with queue_log.open("rb") as f:
        f.seek(mark)
        (out / f"{name}.queue_log").write_bytes(f.read())


def record_queue_log(prefix: Path, out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        lab = AsteriskLab(prefix, Path(tmp) / "asterisk")
        lab.start()

        async def run() -> None:
            agi = await _route_to("tier1", "0", lab.agi_port)
            try:
                for name in QUEUE_LOG:
                    await _record_queue_log(lab, name, out)
            finally:
                agi.close()

        try:
            asyncio.run(run())
        finally:
            lab.stop()


SUPERVISOR_PHONE = "Local/9000@agents/n"  # the supervisor's phone: a lab phone, answers in 1 s


def _channel(received: bytes, prefix: str) -> str:
    """The name of the last channel starting with ``prefix`` that the listener saw created."""
    names = [
        line.split(b": ", 1)[1].decode()
        for block in received.split(b"\r\n\r\n")
        if block.startswith(b"Event: Newchannel\r\n")
        for line in block.split(b"\r\n")
        if line.startswith(b"Channel: " + prefix.encode())
    ]
    return names[-1]


async def _record_supervise(lab: AsteriskLab, out: Path) -> None:
    """supervise.ami-session / supervise.ami: what the service sends for a supervisor (conn S,
    the shipped ``cti`` user), on a call 2001 answered: ChanSpy listen, whisper and barge
    originated on the supervisor's phone, then MixMonitor and MixMonitorMute on the caller's
    channel; the same MixMonitor as user ``lab`` (conn A, ``write = all``)."""
    transcript = Transcript(
        "Supervisor: ChanSpy listen/whisper/barge and MixMonitor/MixMonitorMute as the service "
        f"sends them, on a tier2 call Agent 2001 answered (Asterisk {version(lab.prefix)})"
    )
    listener = _Ami(transcript, "L", lab.ami_port)
    actions = _Ami(transcript, "A", lab.ami_port)
    service = _Ami(transcript, "S", lab.ami_port)
    await listener.open("on")
    await actions.open("off")
    await service.open("off", user="cti", secret=CTI_SECRET)
    for family in ("agent", "outside"):
        await actions.send(Action="DBDelTree", Family=family)
    for key, value in {
        "2001/ringdelay": "1",
        "2002/mode": "noanswer",
        "9000/ringdelay": "1",
    }.items():
        await actions.send(Action="DBPut", Family="agent", Key=key, Val=value)
    await asyncio.sleep(0.3)
    start = len(listener.received)
    transcript.meta("-", "scenario supervise starts")
    await actions.send(
        Action="Originate",
        Channel="Local/08005550100@from-pstn",
        Context="caller-sim",
        Exten="talk",
        Priority="1",
        CallerID="<+447700900456>",
        Variable="LAB_CALLER_HOLD=40",
        Async="true",
    )
    await asyncio.sleep(4.0)  # queued at +0.5, 2001 answers at ~+1.5
    # the agent's channel as AgentConnect names it (DestChannel), the caller's queue leg
    agent = _channel(listener.received, "Local/2001@agents-").replace(";2", ";1")
    caller = _channel(listener.received, "Local/08005550100@from-pstn-").replace(";1", ";2")
    for mode, options in (("listen", "qE"), ("whisper", "qEw"), ("barge", "qEB")):
        transcript.meta("-", f"{mode}: ChanSpy on {agent}")
        await service.send(  # the fields AmiClient.originate sends for Supervise.spy
            Action="Originate",
            Channel=SUPERVISOR_PHONE,
            Application="ChanSpy",
            Data=f"{agent},{options}",
            CallerID=f'"{mode} Agent 2001" <spy>',
            Timeout="30000",
            Async="true",
        )
        await asyncio.sleep(3.0)
        await actions.send(Action="Hangup", Channel="/^Local/9000@agents-/")
        await asyncio.sleep(1.0)
    path = lab.run_dir / "spool" / "monitor" / "supervise.wav"
    transcript.meta("-", f"MixMonitor on {caller}")
    for conn in (service, actions):
        await conn.send(Action="MixMonitor", Channel=caller, File=str(path), Options="b")
        await asyncio.sleep(1.0)
    transcript.meta("-", "cti doctor's harmless probes: no such channel")
    for conn in (service, actions):
        await conn.send(Action="MixMonitor", Channel="CTIDoctor/none", File=str(path))
        await conn.send(
            Action="MixMonitorMute", Channel="CTIDoctor/none", Direction="both", State="1"
        )
        await asyncio.sleep(0.3)
    for state in ("1", "0"):
        await service.send(Action="MixMonitorMute", Channel=caller, Direction="both", State=state)
        await asyncio.sleep(1.0)
    await actions.send(Action="Hangup", Channel=caller)
    await actions.idle()
    transcript.meta("-", f"scenario supervise over: {path.name} exists: {path.exists()}")
    for conn in (listener, actions, service):
        await conn.close()
    transcript.save(out / "supervise.ami-session")
    (out / "supervise.ami").write_bytes(listener.events(start))


def record_supervise(prefix: Path, out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        lab = AsteriskLab(prefix, Path(tmp) / "asterisk")
        lab.start()

        async def run() -> None:
            agi = await _route_to("tier2", "20", lab.agi_port)
            try:
                await _record_supervise(lab, out)
            finally:
                agi.close()

        try:
            asyncio.run(run())
        finally:
            lab.stop()


def version(prefix: Path) -> str:
    done = subprocess.run(
        [str(prefix / "sbin" / "asterisk"), "-V"], capture_output=True, text=True, check=True
    )
    return done.stdout.strip().removeprefix("Asterisk ")


def main() -> None:
    prefix, what = Path(sys.argv[1]), sys.argv[2]
    out = Path(sys.argv[3]) if len(sys.argv) > 3 else OUT
    out.mkdir(parents=True, exist_ok=True)
    if what in CALLS or what == "calls":
        record_calls(prefix, out, list(CALLS) if what == "calls" else [what])
    elif what == "queue_log":
        record_queue_log(prefix, out)
    elif what == "supervise":
        record_supervise(prefix, out)
    elif what == "startup":
        record_startup(prefix, out)
    elif what == "doctor":
        record_doctor(prefix, out, os.environ.get("OLD_CTI_SOURCE"))
    else:
        raise SystemExit(f"unknown recording {what!r}")


if __name__ == "__main__":
    main()
