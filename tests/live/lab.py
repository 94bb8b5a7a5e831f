"""A real Asterisk 22 for live tests: the shipped docker/asterisk config plus a lab overlay.

The overlay only adds what a machine without SIP phones needs: agent phones are Local channels
(``Local/1001@agents/n``) whose behaviour (answer, no answer, busy, ring delay, talk time) is
read from AstDB, callers are Local channels into ``[from-pstn]``, and the called party of a
click-to-dial is ``[outside]``. The shipped files are used as they are, except:

* ``manager.conf``: AMI on 127.0.0.1 and a free port, the AGI URL on this host; two extra
  users, ``lab`` (everything, for the test driver) and ``cti-old`` (the classes the service
  shipped with before issue 12: ``read = call,agent``, ``write = call,originate,agent``);
* ``queues.conf``: members ``PJSIP/NNNN`` become ``Local/NNNN@agents/n`` with the state
  interface ``Custom:agentNNNN``, which the ``[agents]`` dialplan keeps up to date.

Usage::

    lab = AsteriskLab(Path("/opt/asterisk22"), tmp_path)
    lab.start()            # returns once AMI answers and Asterisk is fully booted
    ...
    lab.kill()             # SIGKILL; lab.start() again restarts it on the same port
    lab.stop()
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

DOCKER_ASTERISK = Path(__file__).resolve().parents[2] / "docker" / "asterisk"
LAB_SECRET = "lab-secret"
CTI_SECRET = "change-me-cti-ami-secret"  # docker/asterisk/manager.conf [cti]
OLD_SECRET = "cti-old-secret"
REC_SECRET = "cti-rec-secret"
SUPERVISOR_PHONE = "Local/9000@agents/n"  # the supervisor's phone in the lab: [agents]
AGENTS = ("1001", "1002", "1003", "2001", "2002", "3001")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


OVERLAY_DIALPLAN = r"""
; ============================ lab overlay (tests/live/lab.py) ============================
[globals](+)
CTI_AGI_URL = agi://127.0.0.1:{agi_port}/route

; Simulated agent phones: Local/NNNN@agents/n. AstDB agent/NNNN/mode = answer (default) |
; noanswer | busy; agent/NNNN/ringdelay (s, default 2); agent/NNNN/talk (s after answer at
; which the agent hangs up; unset: stays until the other side hangs up).
[agents]
exten => _XXXX,1,Set(AGENT_ID=${{EXTEN}})
 same => n,Set(AGENT_MODE=${{DB(agent/${{EXTEN}}/mode)}})
 same => n,Set(AGENT_RING=${{DB(agent/${{EXTEN}}/ringdelay)}})
 same => n,Set(AGENT_TALK=${{DB(agent/${{EXTEN}}/talk)}})
 same => n,GotoIf($["${{AGENT_MODE}}" = "busy"]?busy)
 same => n,Set(DEVICE_STATE(Custom:agent${{AGENT_ID}})=RINGING)
 same => n,Ringing()
 same => n,GotoIf($["${{AGENT_MODE}}" = "noanswer"]?ringing)
 same => n,Wait(${{IF($["${{AGENT_RING}}" = ""]?2:${{AGENT_RING}})}})
 same => n,Answer()
 same => n,Set(DEVICE_STATE(Custom:agent${{AGENT_ID}})=INUSE)
 same => n,Wait(${{IF($[0${{AGENT_TALK}} > 0]?${{AGENT_TALK}}:7200)}})
 same => n,Hangup(16)
 same => n(ringing),Wait(7200)
 same => n,Hangup()
 same => n(busy),Busy(3)
 same => n,Hangup()
exten => h,1,ExecIf($["${{AGENT_ID}}" != ""]?Set(DEVICE_STATE(Custom:agent${{AGENT_ID}})=NOT_INUSE))

; The caller's own handset (the ;1 half of Local/<DID>@from-pstn): Originate Context=caller-sim
; Exten=talk. LAB_CALLER_HOLD = seconds after which the caller hangs up (unset: never).
[caller-sim]
exten => talk,1,Wait(${{IF($[0${{LAB_CALLER_HOLD}} > 0]?${{LAB_CALLER_HOLD}}:7200)}})
 same => n,Hangup(16)

; Click-to-dial in the lab: outside numbers go to [outside] instead of the SIP trunk.
[lab-internal]
include => from-internal
exten => _0X.,1,Dial(Local/${{EXTEN}}@outside/n,60,T)
 same => n,Hangup()
exten => _+X.,1,Dial(Local/${{EXTEN}}@outside/n,60,T)
 same => n,Hangup()

; The called party: AstDB outside/<number>/mode = answer (default) | noanswer | busy,
; outside/<number>/ringdelay (default 2), outside/<number>/talk (default: stays).
[outside]
exten => _[+0-9].,1,Set(OUT_MODE=${{DB(outside/${{EXTEN}}/mode)}})
 same => n,Set(OUT_RING=${{DB(outside/${{EXTEN}}/ringdelay)}})
 same => n,Set(OUT_TALK=${{DB(outside/${{EXTEN}}/talk)}})
 same => n,GotoIf($["${{OUT_MODE}}" = "busy"]?busy)
 same => n,Ringing()
 same => n,GotoIf($["${{OUT_MODE}}" = "noanswer"]?ringing)
 same => n,Wait(${{IF($["${{OUT_RING}}" = ""]?2:${{OUT_RING}})}})
 same => n,Answer()
 same => n,Wait(${{IF($[0${{OUT_TALK}} > 0]?${{OUT_TALK}}:7200)}})
 same => n,Hangup(16)
 same => n(ringing),Wait(7200)
 same => n,Hangup()
 same => n(busy),Busy(3)
 same => n,Hangup()
"""

OVERLAY_MANAGER = """
; ============================ lab overlay (tests/live/lab.py) ============================
[general](+)
bindaddr = 127.0.0.1
port = {ami_port}

[lab]
secret = {lab_secret}
deny = 0.0.0.0/0.0.0.0
permit = 127.0.0.1/255.255.255.255
read = all
write = all

; the shipped [cti] classes plus write = system: what recording calls (MixMonitor) needs
[cti-rec]
secret = {rec_secret}
deny = 0.0.0.0/0.0.0.0
permit = 127.0.0.1/255.255.255.255
read = system,call,agent
write = system,call,originate,agent,reporting

[cti-old]
secret = {old_secret}
deny = 0.0.0.0/0.0.0.0
permit = 127.0.0.1/255.255.255.255
read = call,agent
write = call,originate,agent
"""

ASTERISK_CONF = """[directories]
astetcdir => {etc}
astmoddir => {prefix}/lib/asterisk/modules
astvarlibdir => {run}/lib
astdbdir => {run}/lib
astkeydir => {run}/lib
astdatadir => {prefix}/var/lib/asterisk
astagidir => {prefix}/var/lib/asterisk/agi-bin
astspooldir => {run}/spool
astrundir => {run}/run
astlogdir => {run}/log
astsbindir => {prefix}/sbin
astcachedir => {run}/cache

[options]
verbose = 3
debug = 0
timestamp = yes
dumpcore = no
"""

OTHER_FILES = {
    "modules.conf": (
        "[modules]\nautoload = yes\nnoload => cdr_manager.so\nnoload => cel_manager.so\n"
    ),
    "logger.conf": (
        "[general]\ndateformat = %F %T.%3q\nqueue_log = yes\n"
        "[logfiles]\nmessages.log => notice,warning,error\n"
        "full => notice,warning,error,verbose\n"
    ),
    "cdr.conf": "[general]\nenable = yes\nunanswered = yes\n[csv]\nusegmtime = yes\n",
    "cel.conf": "[general]\nenable = no\n",
    "indications.conf": (
        "[general]\ncountry = uk\n[uk]\ndescription = United Kingdom\n"
        "ringcadence = 400,200,400,2000\ndial = 350+440\nbusy = 400/375,0/375\n"
        "congestion = 400/400,0/350,400/225,0/525\nring = 400+450/400,0/200,400+450/400,0/2000\n"
    ),
    "features.conf": "[general]\ntransferdigittimeout => 3\n[featuremap]\n",
    "musiconhold.conf": "[general]\n[default]\nmode = files\ndirectory = {run}/data/moh\n",
    "ccss.conf": "[general]\n",
    "acl.conf": "",
    "udptl.conf": "[general]\n",
    "res_parking.conf": "[general]\n[default]\nparkext => 700\nparkpos => 701-720\n"
    "context => parkedcalls\n",
}


def lab_queues(text: str) -> str:
    """queues.conf with its PJSIP phones replaced by the lab's Local-channel phones."""
    return re.sub(
        r"^member => PJSIP/(\d+),(\d+),([^,\n]+),PJSIP/\1$",
        r"member => Local/\1@agents/n,\2,\3,Custom:agent\1",
        text,
        flags=re.M,
    )


@dataclass
class AsteriskLab:
    prefix: Path
    root: Path
    ami_port: int = field(default_factory=free_port)
    agi_port: int = field(default_factory=free_port)
    # False: queues.conf exactly as shipped (PJSIP phones, which this build cannot reach)
    local_agents: bool = True
    proc: subprocess.Popen[bytes] | None = None

    @property
    def etc(self) -> Path:
        return self.root / "etc"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def log_dir(self) -> Path:
        return self.run_dir / "log"

    def write_config(self) -> None:
        etc, run = self.etc, self.run_dir
        for sub in ("lib", "data/agi-bin", "data/moh", "spool", "run", "log", "cache"):
            (run / sub).mkdir(parents=True, exist_ok=True)
        etc.mkdir(parents=True, exist_ok=True)
        # one second of signed-linear silence: the hold music of the queues
        (run / "data" / "moh" / "silence.sln").write_bytes(b"\0" * 16000)
        values = {"etc": etc, "run": run, "prefix": self.prefix}
        (etc / "asterisk.conf").write_text(ASTERISK_CONF.format(**values))
        for name, text in OTHER_FILES.items():
            (etc / name).write_text(text.format(**values))
        shipped = {n: (DOCKER_ASTERISK / n).read_text() for n in ("manager.conf", "queues.conf")}
        (etc / "manager.conf").write_text(
            shipped["manager.conf"]
            + OVERLAY_MANAGER.format(
                ami_port=self.ami_port,
                lab_secret=LAB_SECRET,
                old_secret=OLD_SECRET,
                rec_secret=REC_SECRET,
            )
        )
        queues = shipped["queues.conf"]
        (etc / "queues.conf").write_text(lab_queues(queues) if self.local_agents else queues)
        (etc / "extensions.conf").write_text(
            (DOCKER_ASTERISK / "extensions.conf").read_text()
            + OVERLAY_DIALPLAN.format(agi_port=self.agi_port)
        )

    def start(self, *, wait: bool = True, timeout: float = 60.0) -> None:
        if not (self.etc / "asterisk.conf").exists():
            self.write_config()
        log = (self.root / "console.log").open("ab")
        self.proc = subprocess.Popen(
            [str(self.prefix / "sbin" / "asterisk"), "-C", str(self.etc / "asterisk.conf"), "-f"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        if wait:
            self.wait_booted(timeout)

    def wait_booted(self, timeout: float = 60.0) -> None:
        """Until a login with system events sees FullyBooted (the modules are all loaded)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"Asterisk exited with {self.proc.returncode}: {self.tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.ami_port), timeout=2) as s:
                    s.settimeout(2)
                    s.sendall(
                        f"Action: Login\r\nUsername: lab\r\nSecret: {LAB_SECRET}\r\n"
                        "Events: system\r\n\r\n".encode()
                    )
                    data = b""
                    end = time.monotonic() + 3
                    while b"FullyBooted" not in data and time.monotonic() < end:
                        chunk = s.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                    if b"FullyBooted" in data:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"Asterisk not fully booted after {timeout} s: {self.tail()}")

    def kill(self) -> None:
        """SIGKILL, as a crash: no Shutdown event, the AMI links just close."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, lines: int = 20) -> str:
        path = self.root / "console.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def messages(self) -> str:
        path = self.log_dir / "messages.log"
        return path.read_text(errors="replace") if path.exists() else ""


def lab_config(
    *,
    ami_port: int,
    agi_port: int,
    http_port: int,
    database_url: str,
    username: str = "cti",
    secret: str = CTI_SECRET,
) -> str:
    """docker/cti.toml for the lab: the same tiers, routing and agents on this host, the
    agents' phones the lab's Local channels, click-to-dial through [lab-internal]."""
    text = (DOCKER_ASTERISK.parent / "cti.toml").read_text()
    for line, new in (
        ('host = "asterisk"', 'host = "127.0.0.1"'),
        ("port = 5038", f"port = {ami_port}"),
        ('username = "cti"', f'username = "{username}"'),
        ('secret = ""', f'secret = "{secret}"'),
        ('host = "0.0.0.0"', 'host = "127.0.0.1"'),  # [agi]
        ("port = 4573", f"port = {agi_port}"),
        ('host = "0.0.0.0"', 'host = "127.0.0.1"'),  # [http]
        ("port = 8080", f"port = {http_port}"),
        ('originate_context = "from-internal"', 'originate_context = "lab-internal"'),
        ('url = ""', f'url = "{database_url}"'),
        ('redis_url = "redis://redis:6379/0"', 'redis_url = ""'),  # one instance in the lab
    ):
        text = re.sub(rf"^{re.escape(line)}( .*)?$", new, text, count=1, flags=re.M)
    return re.sub(
        r'^interface = "PJSIP/(\d+)"', r'interface = "Local/\1@agents/n"', text, flags=re.M
    )
