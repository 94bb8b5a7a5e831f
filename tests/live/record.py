"""Record what a real Asterisk 22 sends, for the tests that run without one.

    .venv/bin/python tests/live/record.py PREFIX WHAT [OUT_DIR]

PREFIX is an Asterisk install prefix (``/opt/asterisk22``); WHAT one of the recordings below;
OUT_DIR defaults to tests/recordings/asterisk22. Each run starts its own Asterisk from the
shipped docker/asterisk config plus the lab overlay (tests/live/lab.py) in a temporary
directory, on free ports, and stops it at the end.
"""

from __future__ import annotations

import asyncio
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

from lab import CTI_SECRET, OLD_SECRET, AsteriskLab, free_port, lab_config
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


def version(prefix: Path) -> str:
    done = subprocess.run(
        [str(prefix / "sbin" / "asterisk"), "-V"], capture_output=True, text=True, check=True
    )
    return done.stdout.strip().removeprefix("Asterisk ")


def main() -> None:
    prefix, what = Path(sys.argv[1]), sys.argv[2]
    out = Path(sys.argv[3]) if len(sys.argv) > 3 else OUT
    out.mkdir(parents=True, exist_ok=True)
    if what == "startup":
        record_startup(prefix, out)
    elif what == "doctor":
        record_doctor(prefix, out, os.environ.get("OLD_CTI_SOURCE"))
    else:
        raise SystemExit(f"unknown recording {what!r}")


if __name__ == "__main__":
    main()
