# ruff: noqa: ASYNC220, ASYNC221  (a tool run by hand: blocking on the CLI is what it wants)
"""Record FastAGI GET DATA / SAY DIGITS / SAY ALPHA / STREAM FILE exchanges with a real Asterisk 22.

Not a test: run by hand (``python tests/recordings/asterisk22/record_ivr.py /opt/asterisk22 OUT``)
to (re)make ``ivr_*.agi-session``. It starts its own short-lived Asterisk with its own config,
run directory and control socket, no AMI and no SIP (only the modules named below), and a FastAGI
recorder on a free port. Each call is ``channel originate Local/100@ivr-agi/n extension
MODE@ivr-caller``: the ``;2`` half answers and runs the AGI (no caller ID: ``unknown``), the
``;1`` half is the caller, who sends DTMF with ``SendDTMF`` (or hangs up) as the mode says.
The prompts are one-second silent ``.sln`` files in the recorder's own data directory.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path

MODULES = (
    "pbx_config.so",
    "res_agi.so",
    "res_speech.so",
    "app_senddtmf.so",
    "format_sln.so",
    "app_playback.so",
    "res_clioriginate.so",
    "func_callerid.so",
    "func_channel.so",
    "res_musiconhold.so",
)
ASTERISK_CONF = """[directories]
astetcdir => {root}/etc
astmoddir => {prefix}/lib/asterisk/modules
astvarlibdir => {root}/lib
astdbdir => {root}/lib
astkeydir => {root}/lib
astdatadir => {root}/data
astagidir => {root}/data/agi-bin
astspooldir => {root}/spool
astrundir => {root}/run
astlogdir => {root}/log
astsbindir => {prefix}/sbin
astcachedir => {root}/cache
[options]
verbose = 3
timestamp = yes
"""
EXTENSIONS = """[general]
static = yes
writeprotect = yes
autofallthrough = yes
[ivr-agi]
exten => 100,1,Answer()
 same => n,AGI(agi://127.0.0.1:{agi_port}/route,100)
 same => n,Hangup()
; The caller (;1): digits then '#', digits then silence, '#' alone, nothing, a hang-up.
[ivr-caller]
exten => account,1,Wait(1.5)
 same => n,SendDTMF(10042#,150)
 same => n,Wait(8)
exten => slow,1,Wait(1.5)
 same => n,SendDTMF(77,150)
 same => n,Wait(8)
exten => hash,1,Wait(1.5)
 same => n,SendDTMF(#)
 same => n,Wait(8)
exten => silent,1,Wait(10)
exten => maxlen,1,Wait(1.5)
 same => n,SendDTMF(123456789,150)
 same => n,Wait(8)
exten => hangup,1,Wait(1.5)
 same => n,SendDTMF(12,150)
 same => n,Hangup()
"""
# What the recorder sends in each mode, after the header block.
SCRIPTS: dict[str, list[str]] = {
    "account": [
        "GET DATA cti-ivr-account 3000 12",
        'SAY DIGITS 10042 ""',
        'STREAM FILE cti-ivr-thanks ""',
    ],
    "slow": ["GET DATA cti-ivr-account 2000 12"],
    "hash": ["GET DATA cti-ivr-account 2000 12"],
    "silent": ["GET DATA cti-ivr-account 2000 12", 'GET DATA "" 1000 12'],
    "maxlen": ["GET DATA cti-ivr-account 3000 4", 'SAY ALPHA "in transit" ""'],
    "hangup": [
        "GET DATA cti-ivr-account 5000 12",
        'SAY DIGITS 12 ""',
        "SET VARIABLE CTI_QUEUE tier1",
    ],
    "missing": [
        "GET DATA no-such-prompt 2000 12",
        'STREAM FILE no-such-prompt ""',
        'SAY ALPHA "zz" ""',
    ],
}
MODE_CALLER = {"missing": "silent"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Transcript:
    def __init__(self, name: str, note: str) -> None:
        self.t0 = time.monotonic()
        self.wall0 = time.time()
        self.lines = [
            f"# {name}: {note}",
            f"# t = seconds since the start of this recording (monotonic clock); t=0 is wall clock"
            f" {self.wall0:.6f} ({time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(self.wall0))}).",
            "# '>>> SEND' = bytes sent to Asterisk, '<<< RECV' = bytes sent by Asterisk; the header"
            " line is followed by exactly len bytes",
            "# (a '\\n' is appended only where a chunk does not end in one). '=== META' lines are"
            " recorder notes, not wire bytes.",
        ]

    def t(self) -> str:
        return f"{time.monotonic() - self.t0:.6f}"

    def meta(self, text: str) -> None:
        self.lines.append(f"=== META t={self.t()} conn=agi1 {text}")

    def data(self, arrow: str, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace")
        self.lines.append(f"{arrow} t={self.t()} conn=agi1 len={len(raw)}")
        self.lines.append(text if text.endswith("\n") else text + "\n")

    def text(self) -> str:
        out: list[str] = []
        for line in self.lines:
            out.append(line if line.endswith("\n") else line + "\n")
        return "".join(out)


async def record(prefix: Path, root: Path, out: Path) -> None:
    agi_port = free_port()
    for sub in (
        "etc",
        "lib",
        "spool",
        "run",
        "log",
        "cache",
        "data/sounds/en/digits",
        "data/sounds/en/letters",
    ):
        (root / sub).mkdir(parents=True, exist_ok=True)
    docs = root / "data" / "documentation"  # stasis refuses to start without its XML docs
    if not docs.exists():
        docs.symlink_to(prefix / "var/lib/asterisk/documentation")
    silence = b"\0" * 16000  # one second of 8 kHz signed linear
    sounds = root / "data/sounds/en"
    for name in ("cti-ivr-account", "cti-ivr-thanks"):
        (sounds / f"{name}.sln").write_bytes(silence)
    for d in "0123456789":
        (sounds / "digits" / f"{d}.sln").write_bytes(silence[:1600])
    for c in "abcdefghijklmnopqrstuvwxyz":
        (sounds / "letters" / f"{c}.sln").write_bytes(silence[:1600])
    (sounds / "letters" / "space.sln").write_bytes(silence[:1600])
    etc = root / "etc"
    (etc / "asterisk.conf").write_text(ASTERISK_CONF.format(root=root, prefix=prefix))
    (etc / "modules.conf").write_text(
        "[modules]\nautoload = no\n" + "".join(f"load => {m}\n" for m in MODULES)
    )
    (etc / "logger.conf").write_text("[logfiles]\nfull => notice,warning,error,verbose\n")
    (etc / "manager.conf").write_text("[general]\nenabled = no\n")
    (etc / "musiconhold.conf").write_text("[general]\n")
    (etc / "extensions.conf").write_text(EXTENSIONS.format(agi_port=agi_port))
    conf = str(etc / "asterisk.conf")
    binary = str(prefix / "sbin" / "asterisk")

    pending: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

    async def accept(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await pending.put((r, w))
        await asyncio.sleep(60)

    server = await asyncio.start_server(accept, "127.0.0.1", agi_port)
    log = (root / "console.log").open("ab")
    proc = subprocess.Popen(
        [binary, "-C", conf, "-f"],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        for _ in range(100):
            ok = subprocess.run(
                [binary, "-C", conf, "-rx", "core waitfullybooted"], capture_output=True, timeout=20
            )
            if ok.returncode == 0:
                break
            await asyncio.sleep(0.3)
        for mode, commands in SCRIPTS.items():
            caller = MODE_CALLER.get(mode, mode)
            tr = Transcript(f"ivr_{mode}", f"caller mode {caller!r}; commands {commands!r}")
            subprocess.run(
                [
                    binary,
                    "-C",
                    conf,
                    "-rx",
                    f"channel originate Local/100@ivr-agi/n extension {caller}@ivr-caller",
                ],
                capture_output=True,
                timeout=20,
            )
            tr.meta(f"call placed: Local/100@ivr-agi/n, caller side {caller}@ivr-caller")
            reader, writer = await asyncio.wait_for(pending.get(), 10)
            tr.meta("Asterisk connected")
            head = b""
            while not head.endswith(b"\n\n"):
                chunk = await reader.read(4096)
                if not chunk:
                    break
                tr.data("<<< RECV", chunk)
                head += chunk
            for command in commands:
                line = (command + "\n").encode()
                writer.write(line)
                tr.data(">>> SEND", line)
                await writer.drain()
                got = b""
                while True:
                    try:
                        chunk = await asyncio.wait_for(reader.read(4096), 15)
                    except TimeoutError:
                        tr.meta("no reply within 15 s")
                        break
                    if not chunk:
                        tr.meta("EOF from Asterisk")
                        break
                    tr.data("<<< RECV", chunk)
                    got += chunk
                    lines = [x for x in got.split(b"\n") if x]
                    if got.endswith(b"\n") and any(x[:1] in (b"2", b"5") for x in lines):
                        break
            tr.meta("server half-closes the connection (shutdown SHUT_WR)")
            writer.write_eof()
            while True:
                try:
                    chunk = await asyncio.wait_for(reader.read(4096), 5)
                except TimeoutError:
                    break
                if not chunk:
                    tr.meta("EOF from Asterisk (it closed its side)")
                    break
                tr.data("<<< RECV", chunk)
            writer.close()
            (out / f"ivr_{mode}.agi-session").write_text(tr.text())
            await asyncio.sleep(1)
    finally:
        subprocess.run(
            [binary, "-C", conf, "-rx", "core stop now"], capture_output=True, timeout=20
        )
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        server.close()


if __name__ == "__main__":
    asyncio.run(record(Path(sys.argv[1]), Path(sys.argv[2]).resolve(), Path(sys.argv[3])))
