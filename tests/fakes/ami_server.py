"""A fake Asterisk 22 AMI server for tests, faithful to the recorded protocol.

Built from the byte-exact transcripts in ``../shared/ami-traces/asterisk22/protocol``:
same banner (``Asterisk Call Manager/11.0.0``), CRLF framing, header order,
response texts, list framing (``EventList: start`` ... ``EventList: Complete``),
ActionID echoed as the second header, timing of failed logins (1.0 s, then FIN).

Usage::

    async with FakeAmiServer(users={"cti": AmiUser("cti-secret")},
                             queues={"tier1": ["Local/1001@agents/n"]}) as ami:
        ...connect to ami.host, ami.port...
        await ami.play_ami_file(traces / "answered_tier1.ami")   # push recorded events
        ami.state.channels                                   # derived from the events
        await ami.drop_connections()                         # FIN, like Asterisk killed
        assert len(ami.actions_named("Originate")) == 1      # every action received

Test hooks:

* ``play(events)`` / ``play_ami_file(path)``: send events (dicts, or the event
  blocks of an ``.ami`` file) to every logged-in connection whose event mask
  and Filters let them through; the server state (channels, bridges, queue
  callers and members) follows them, so list actions answer from it.
* ``state``: ``FakeAsteriskState``; set channels/bridges/queues directly with
  ``add_channel``, ``add_bridge``, ``add_queue``, ``add_member``, ``add_caller``.
* ``drop_connections()``: close every connection (FIN, no Shutdown event).
* ``refuse_connections(seconds)``: stop listening (ECONNREFUSED) for a while.
* ``go_silent()``: current connections stop answering (a dead link);
  ``go_silent(new_connections=True)`` silences later ones too.
* ``restart(down_s=0.6, loading_s=0.1)``: hang up all channels (``SoftHangupRequest``
  Cause 4, ``Hangup``), ``Shutdown`` event (Restart: True), FIN, refuse for ``down_s``,
  back up; for ``loading_s`` the queue actions are unknown (``Invalid/unknown command``:
  app_queue not loaded yet) and logins get ``FullyBooted`` only when it ends (at least
  38 ms later), with a Timestamp (as after a real restart). ``Command: core restart now``
  does the same.
* Times follow the events played (``state.clock``): ``Duration``, ``Wait``, ``Seconds`` and
  Ping's ``Timestamp`` agree with a recorded trace's own ``Timestamp`` headers.
* ``send_raw(data)``: write raw bytes to every logged-in connection (malformed frames).
* ``delays={"CoreShowChannels": 0.2}``: wait before answering; ``unanswered={"Originate"}``:
  never answer (like ``core restart now``, or a hung PBX).
* ``actions``: every action received, as ``ReceivedAction(conn, name, headers)``;
  ``actions_named("Originate")``.
* ``wait_for_action(name, count=1)``: wait until the fake received it.
* ``wait_for_logins(n)``: wait until ``n`` logins have succeeded in total.
* Users: ``{name: AmiUser(secret, read="all", write="all")}`` (default:
  ``cti``/``cti-secret`` and the read-only ``cti-readonly``/``readonly-secret``).
* ``auth_fail_delay_s`` (1.0 like Asterisk), ``auth_timeout_s`` (30 like Asterisk).
* Originate: an unknown technology, or a channel listed in ``unreachable``, fails
  (sync: ``Originate failed``; async: ``OriginateResponse`` with ``Response: Failure``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import random
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

BANNER = b"Asterisk Call Manager/11.0.0\r\n"
CRLF = "\r\n"

ALL_CLASSES = frozenset(
    [
        "system",
        "call",
        "log",
        "verbose",
        "command",
        "agent",
        "user",
        "config",
        "dtmf",
        "reporting",
        "cdr",
        "dialplan",
        "originate",
        "agi",
        "cc",
        "aoc",
        "test",
        "security",
        "message",
    ]
)

# Write classes of an action, as Asterisk 22.10.1 registers it (ast_manager_register_xml*
# in main/manager.c, main/manager_bridges.c, main/db.c, main/pbx.c, apps/app_queue.c,
# res/res_manager_devicestate.c). Asterisk's process_message runs it when the user's write
# shares a class with these (writeperm & authority), and always when it names none (an
# action absent here, e.g. QueueStatus, QueueSummary, BridgeList, BridgeInfo, Ping, Events).
# The user's read classes play no part: they only filter events.
REQUIRED_WRITE: dict[str, frozenset[str]] = {
    "originate": frozenset({"originate"}),
    "redirect": frozenset({"call"}),
    "blindtransfer": frozenset({"call"}),
    "atxfer": frozenset({"call"}),
    "bridge": frozenset({"call"}),
    "hangup": frozenset({"system", "call"}),
    "setvar": frozenset({"call"}),
    "getvar": frozenset({"call", "reporting"}),
    "extensionstate": frozenset({"call", "reporting"}),
    "devicestatelist": frozenset({"call", "reporting"}),
    "command": frozenset({"command"}),
    "coreshowchannels": frozenset({"system", "reporting"}),
    "corestatus": frozenset({"system", "reporting"}),
    "coresettings": frozenset({"system", "reporting"}),
    "status": frozenset({"system", "call", "reporting"}),
    "showdialplan": frozenset({"config", "reporting"}),
    "queuepause": frozenset({"agent"}),
    "queueadd": frozenset({"agent"}),
    "queueremove": frozenset({"agent"}),
    "queuelog": frozenset({"agent"}),
    "queuepenalty": frozenset({"agent"}),
    "queuememberringinuse": frozenset({"agent"}),
    "modulecheck": frozenset({"system"}),
    # app_mixmonitor registers MixMonitor with system alone (its Command option runs a shell
    # command): a user writing call is refused (tests/recordings/asterisk22/supervise.*)
    "mixmonitor": frozenset({"system"}),
    "mixmonitormute": frozenset({"system", "call"}),
    "filter": frozenset({"system"}),
    "dbget": frozenset({"system", "reporting"}),
    "dbput": frozenset({"system"}),
}

# Originate of these applications (a case-insensitive substring of Application) or with
# these functions in Data (case-sensitive) also needs a write class: originate_app_permissions
# in main/manager.c ("Originate Access Forbidden: app or data blacklisted"). ChanSpy, Wait,
# Dial... need only originate.
ORIGINATE_APP_WRITE = {
    "agi": frozenset({"system"}),
    "dbdeltree": frozenset({"system"}),
    "exec": frozenset({"system"}),
    "externalivr": frozenset({"system"}),
    "mixmonitor": frozenset({"system"}),
    "originate": frozenset({"system"}),
    "reload": frozenset({"system"}),
    "system": frozenset({"system"}),
}
ORIGINATE_DATA_WRITE = {
    name: frozenset({"system"})
    for name in ("CURL", "DB", "EVAL", "FILE", "ODBC", "REALTIME", "SHELL")
}


def originate_forbidden(application: str, data: str, write: frozenset[str]) -> bool:
    """Whether Asterisk refuses an Originate of ``application(data)`` to this write set (the
    first matching entry decides, as in is_originate_app_permitted)."""
    app = application.lower()
    for needle, classes in ORIGINATE_APP_WRITE.items():
        if needle in app:
            return not classes & write
    for needle, classes in ORIGINATE_DATA_WRITE.items():
        if needle in data:
            return not classes & write
    return False


# Actions of modules Asterisk loads late in its start-up: unknown until they are loaded.
MODULE_ACTIONS = frozenset({"queuestatus", "queuesummary", "queueadd", "queueremove", "queuepause"})

SNAPSHOT_KEYS = (
    "Channel",
    "ChannelState",
    "ChannelStateDesc",
    "CallerIDNum",
    "CallerIDName",
    "ConnectedLineNum",
    "ConnectedLineName",
    "Language",
    "AccountCode",
    "Context",
    "Exten",
    "Priority",
    "Uniqueid",
    "Linkedid",
)
MEMBER_KEYS = (
    "MemberName",
    "Interface",
    "StateInterface",
    "Membership",
    "Penalty",
    "CallsTaken",
    "LastCall",
    "LastPause",
    "LoginTime",
    "InCall",
    "Status",
    "Paused",
    "PausedReason",
    "Ringinuse",
    "Wrapuptime",
)
BRIDGE_KEYS = (
    "BridgeUniqueid",
    "BridgeType",
    "BridgeTechnology",
    "BridgeCreator",
    "BridgeName",
    "BridgeNumChannels",
    "BridgeVideoSourceMode",
)
KNOWN_TECH = frozenset({"Local", "PJSIP", "SIP", "IAX2", "DAHDI"})

Headers = list[tuple[str, str]]


class PbxClock:
    """The fake PBX's clock: the wall clock, moved to the ``Timestamp`` of every event played,
    so that a recorded trace played now keeps its own times, and ``Duration``, ``Wait``,
    ``Seconds`` and Ping's ``Timestamp`` agree with them (as on the Asterisk that sent it)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def follow(self, ev: Mapping[str, str]) -> None:
        raw = ev.get("Timestamp")
        if raw:
            with contextlib.suppress(ValueError):
                self.offset = float(raw) - time.time()

    def ts(self) -> str:
        return f"{self():.6f}"


def frame(headers: Iterable[tuple[str, str]]) -> bytes:
    """One AMI message: CRLF lines, a blank line; ``\\n`` in a value repeats the header."""
    out = []
    for name, value in headers:
        for part in str(value).split("\n"):
            out.append(f"{name}: {part}{CRLF}")
    out.append(CRLF)
    return "".join(out).encode()


def parse_blocks(data: bytes) -> list[Headers]:
    """Blocks of ``Name: value`` lines (CRLF or LF), blank-line separated; no banner."""
    blocks: list[Headers] = []
    current: Headers = []
    for raw in data.decode("utf-8", "replace").split("\n"):
        line = raw.rstrip("\r")
        if not line:
            if current:
                blocks.append(current)
                current = []
            continue
        if line.startswith("Asterisk Call Manager/"):
            continue
        name, sep, value = line.partition(":")
        if sep:
            current.append((name.strip(), value.lstrip(" ")))
    if current:
        blocks.append(current)
    return blocks


def read_ami_events(path: str | Path) -> list[dict[str, str]]:
    """The events of an ``.ami`` file (raw wire bytes), in order; responses are skipped."""
    events = []
    for block in parse_blocks(Path(path).read_bytes()):
        event: dict[str, str] = {}
        for name, value in block:
            event[name] = f"{event[name]}\n{value}" if name in event else value
        if "Event" in event:
            events.append(event)
    return events


def _classes(text: str) -> frozenset[str]:
    """Classes named in a user's read/write or an Events mask (``all`` = every class)."""
    names = {c.strip().lower() for c in text.split(",") if c.strip()}
    if "all" in names:
        return ALL_CLASSES
    return frozenset(names & ALL_CLASSES)


def _privilege(text: str) -> frozenset[str]:
    """Classes of an event's ``Privilege`` header (``call,all``: ``all`` is not a class here)."""
    return frozenset(c.strip().lower() for c in text.split(",")) & ALL_CLASSES


@dataclass(frozen=True)
class AmiUser:
    secret: str
    read: str = "all"
    write: str = "all"


@dataclass(frozen=True)
class ReceivedAction:
    conn: int
    name: str
    headers: dict[str, str]  # header names lower-cased, repeated values joined with "\n"


@dataclass
class Bridge:
    uniqueid: str
    type: str = "basic"
    technology: str = "simple_bridge"
    creator: str = "<unknown>"
    name: str = "<unknown>"
    channels: list[str] = field(default_factory=list)

    def fields(self) -> Headers:
        return [
            ("BridgeUniqueid", self.uniqueid),
            ("BridgeType", self.type),
            ("BridgeTechnology", self.technology),
            ("BridgeCreator", self.creator),
            ("BridgeName", self.name),
            ("BridgeNumChannels", str(len(self.channels))),
            ("BridgeVideoSourceMode", "none"),
        ]


@dataclass
class Queue:
    name: str
    strategy: str = "ringall"
    weight: int = 0
    completed: int = 0
    abandoned: int = 0
    members: dict[str, dict[str, str]] = field(default_factory=dict)  # interface -> fields
    callers: list[dict[str, str]] = field(default_factory=list)  # QueueCallerJoin-like


class FakeAsteriskState:
    """What the fake PBX knows: channels, bridges, queues, variables. Events update it."""

    def __init__(self) -> None:
        self.channels: dict[str, dict[str, str]] = {}
        self.bridges: dict[str, Bridge] = {}
        self.queues: dict[str, Queue] = {}
        self.variables: dict[str, dict[str, str]] = {"": {}}  # channel -> vars; "" = globals
        self.clock = PbxClock()
        self._seq = itertools.count(1)

    # --- setting state directly ---
    def add_channel(self, name: str, **fields: str) -> dict[str, str]:
        n = next(self._seq)
        uid = fields.get("Uniqueid", f"{int(time.time())}.{n}")
        chan = {
            "Channel": name,
            "ChannelState": "6",
            "ChannelStateDesc": "Up",
            "CallerIDNum": "<unknown>",
            "CallerIDName": "<unknown>",
            "ConnectedLineNum": "<unknown>",
            "ConnectedLineName": "<unknown>",
            "Language": "en",
            "AccountCode": "",
            "Context": "default",
            "Exten": "s",
            "Priority": "1",
            "Uniqueid": uid,
            "Linkedid": uid,
            "Application": "",
            "ApplicationData": "",
            "BridgeId": "",
        }
        chan.update(fields)
        chan["_created"] = str(self.clock())
        self.channels[name] = chan
        return chan

    def add_bridge(self, uniqueid: str | None = None, channels: Sequence[str] = ()) -> Bridge:
        bridge = Bridge(uniqueid or str(uuid.uuid4()))
        self.bridges[bridge.uniqueid] = bridge
        for name in channels:
            self._enter(bridge, name)
        return bridge

    def add_queue(self, name: str, strategy: str = "ringall", weight: int = 0) -> Queue:
        return self.queues.setdefault(name, Queue(name, strategy, weight))

    def add_member(
        self,
        queue: str,
        interface: str,
        name: str | None = None,
        *,
        paused: bool = False,
        reason: str = "",
        membership: str = "static",
        status: int = 1,
    ) -> dict[str, str]:
        member = {
            "MemberName": name or interface,
            "Interface": interface,
            "StateInterface": interface,
            "Membership": membership,
            "Penalty": "0",
            "CallsTaken": "0",
            "LastCall": "0",
            "LastPause": "0",
            "LoginTime": str(int(time.time())),
            "InCall": "0",
            "Status": str(status),
            "Paused": "1" if paused else "0",
            "PausedReason": reason,
            "Ringinuse": "0",
            "Wrapuptime": "0",
        }
        self.add_queue(queue).members[interface] = member
        return member

    def add_caller(self, queue: str, channel: str, priority: int = 0) -> None:
        chan = self.channels.get(channel) or self.add_channel(channel)
        entry = {k: chan[k] for k in SNAPSHOT_KEYS}
        entry.update(Queue=queue, Priority=str(priority), _joined=str(self.clock()))
        self.add_queue(queue).callers.append(entry)

    # --- following events ---
    def _enter(self, bridge: Bridge, name: str) -> None:
        if name not in bridge.channels:
            bridge.channels.append(name)
        if name in self.channels:
            self.channels[name]["BridgeId"] = bridge.uniqueid

    def _leave(self, name: str) -> None:
        for bridge in self.bridges.values():
            if name in bridge.channels:
                bridge.channels.remove(name)
        if name in self.channels:
            self.channels[name]["BridgeId"] = ""

    def remove_channel(self, name: str) -> None:
        self._leave(name)
        self.channels.pop(name, None)
        self.variables.pop(name, None)
        for queue in self.queues.values():
            queue.callers = [c for c in queue.callers if c["Channel"] != name]

    def apply_event(self, ev: Mapping[str, str]) -> None:
        self.clock.follow(ev)
        name = ev.get("Event", "")
        chan = ev.get("Channel", "")
        if name == "Newchannel":
            self.add_channel(chan, **{k: ev[k] for k in SNAPSHOT_KEYS if k in ev})
            return
        if name == "Hangup":
            self.remove_channel(chan)
            return
        if chan in self.channels:
            self.channels[chan].update({k: ev[k] for k in SNAPSHOT_KEYS if k in ev})
            if name == "Newexten":
                self.channels[chan]["Application"] = ev.get("Application", "")
                self.channels[chan]["ApplicationData"] = ev.get("AppData", "")
            elif name == "VarSet":
                self.variables.setdefault(chan, {})[ev.get("Variable", "")] = ev.get("Value", "")
        if name == "Rename" and chan in self.channels:
            new = ev.get("Newname", chan)
            self.channels[new] = self.channels.pop(chan)
            self.channels[new]["Channel"] = new
        elif name == "BridgeCreate":
            uid = ev.get("BridgeUniqueid", "")
            self.bridges.setdefault(
                uid,
                Bridge(
                    uid,
                    ev.get("BridgeType", "basic"),
                    ev.get("BridgeTechnology", "simple_bridge"),
                    ev.get("BridgeCreator", "<unknown>"),
                    ev.get("BridgeName", "<unknown>"),
                ),
            )
        elif name == "BridgeEnter":
            uid = ev.get("BridgeUniqueid", "")
            self._enter(self.bridges.setdefault(uid, Bridge(uid)), chan)
        elif name == "BridgeLeave":
            self._leave(chan)
        elif name == "BridgeDestroy":
            self.bridges.pop(ev.get("BridgeUniqueid", ""), None)
        elif name == "QueueCallerJoin":
            entry = {k: ev.get(k, "") for k in SNAPSHOT_KEYS}
            entry.update(Queue=ev.get("Queue", ""), Priority="0", _joined=str(self.clock()))
            self.add_queue(ev.get("Queue", "")).callers.append(entry)
        elif name in ("QueueCallerLeave", "QueueCallerAbandon"):
            queue = self.add_queue(ev.get("Queue", ""))
            queue.callers = [c for c in queue.callers if c["Channel"] != chan]
            if name == "QueueCallerAbandon":
                queue.abandoned += 1
        elif name == "QueueMemberRemoved":
            self.add_queue(ev.get("Queue", "")).members.pop(ev.get("Interface", ""), None)
        elif name.startswith("QueueMember"):
            queue = self.add_queue(ev.get("Queue", ""))
            member = queue.members.setdefault(ev.get("Interface", ""), {})
            member.update({k: ev[k] for k in MEMBER_KEYS if k in ev})
        elif name == "AgentComplete":
            self.add_queue(ev.get("Queue", "")).completed += 1


class _Session:
    def __init__(self, conn: int, writer: asyncio.StreamWriter) -> None:
        self.conn = conn
        self.writer = writer
        self.user: str | None = None
        self.mask: frozenset[str] = frozenset()  # event classes this connection receives
        self.filters: list[tuple[bool, re.Pattern[str]]] = []  # (include?, regex)
        self.silent = False
        self.challenge: str | None = None

    def write(self, data: bytes) -> None:
        if not self.silent and not self.writer.is_closing():
            self.writer.write(data)

    def wants(self, privilege: frozenset[str] | None, text: str) -> bool:
        if self.user is None or not self.mask:
            return False
        if privilege is not None and not (privilege & self.mask):
            return False
        includes = [rx for inc, rx in self.filters if inc]
        if includes and not any(rx.search(text) for rx in includes):
            return False
        return not any(rx.search(text) for inc, rx in self.filters if not inc)


class FakeAmiServer:
    """A fake Asterisk 22 AMI on 127.0.0.1, port 0 by default (see the module docstring)."""

    def __init__(
        self,
        *,
        users: Mapping[str, AmiUser] | None = None,
        queues: Mapping[str, Iterable[str]] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        auth_fail_delay_s: float = 1.0,
        auth_timeout_s: float = 30.0,
        unreachable: Iterable[str] = (),
        cli: Mapping[str, Sequence[str]] | None = None,
        challenge: Callable[[], str] | None = None,
        delays: Mapping[str, float] | None = None,
        unanswered: Iterable[str] = (),
    ) -> None:
        self.users = dict(
            users
            or {
                "cti": AmiUser("cti-secret"),
                "cti-readonly": AmiUser("readonly-secret", read="call,agent", write="none"),
            }
        )
        self.host = host
        self.port = port
        self.auth_fail_delay_s = auth_fail_delay_s
        self.auth_timeout_s = auth_timeout_s
        self.unreachable = set(unreachable)
        self.cli: dict[str, list[str]] = {k: list(v) for k, v in (cli or {}).items()}
        self._challenge = challenge or (lambda: str(random.randrange(100_000_000, 999_999_999)))
        self.astdb: dict[tuple[str, str], str] = {}
        # Test knobs: seconds to wait before answering an action; actions never answered.
        self.delays = {k.lower(): v for k, v in (delays or {}).items()}
        self.unanswered = {a.lower() for a in unanswered}
        self.state = FakeAsteriskState()
        for qname, interfaces in (queues or {}).items():
            self.state.add_queue(qname)
            for interface in interfaces:
                self.state.add_member(qname, interface)
        self.actions: list[ReceivedAction] = []
        self.connections_accepted = 0
        self.logins = 0
        self._server: asyncio.Server | None = None
        self._sessions: dict[int, _Session] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._conn_ids = itertools.count(1)
        self._started = time.monotonic()
        self._booting_until = 0.0
        self._silent_new = False
        self._login_event: asyncio.Event | None = None
        self._action_event: asyncio.Event | None = None

    # --- lifetime ---
    async def start(self) -> FakeAmiServer:
        self._login_event = asyncio.Event()
        self._action_event = asyncio.Event()
        await self._listen()
        return self

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, self.host, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _unlisten(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self._server is not None:
            self._server.close()
        await self.drop_connections()
        await self._unlisten()

    async def __aenter__(self) -> FakeAmiServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _spawn(self, coro: Callable[[], object]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro())  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- test hooks ---
    @property
    def sessions(self) -> list[_Session]:
        return [s for s in self._sessions.values() if s.user is not None]

    @property
    def open_connections(self) -> int:
        """TCP connections open now, logged in or not."""
        return len(self._sessions)

    def actions_named(self, name: str) -> list[ReceivedAction]:
        return [a for a in self.actions if a.name.lower() == name.lower()]

    async def wait_for_logins(self, count: int, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        assert self._login_event is not None, "start() the server first"
        async with asyncio.timeout(timeout):
            while self.logins < count:
                self._login_event.clear()
                await self._login_event.wait()

    async def wait_for_action(self, name: str, count: int = 1) -> ReceivedAction:
        """Wait (up to 5 s) until ``count`` actions ``name`` have been received; the last one."""
        assert self._action_event is not None, "start() the server first"
        async with asyncio.timeout(5):
            while len(self.actions_named(name)) < count:
                self._action_event.clear()
                await self._action_event.wait()
        return self.actions_named(name)[count - 1]

    async def play(self, events: Iterable[Mapping[str, str]]) -> None:
        for ev in events:
            self.state.apply_event(ev)
            self._broadcast(list(ev.items()))
        await self._drain()

    async def play_ami_file(self, path: str | Path, limit: int | None = None) -> int:
        events = read_ami_events(path)[:limit]
        await self.play(events)
        return len(events)

    async def send_raw(self, data: bytes) -> None:
        for session in self.sessions:
            session.write(data)
        await self._drain()

    async def drop_connections(self) -> None:
        for session in list(self._sessions.values()):
            session.writer.close()
        for session in list(self._sessions.values()):
            with contextlib.suppress(Exception):
                await session.writer.wait_closed()

    async def refuse_connections(self, seconds: float) -> None:
        """Stop listening now; listen again on the same port after ``seconds`` (background)."""
        await self._unlisten()

        async def reopen() -> None:
            await asyncio.sleep(seconds)
            await self._listen()

        self._spawn(reopen)

    def go_silent(self, *, new_connections: bool = False) -> None:
        for session in self._sessions.values():
            session.silent = True
        self._silent_new = new_connections

    def speak_again(self) -> None:
        self._silent_new = False

    async def restart(self, down_s: float = 0.6, loading_s: float = 0.1) -> None:
        for name in list(self.state.channels):
            self._hangup_channel(name, cause="4")
        self._broadcast(
            [
                ("Event", "Shutdown"),
                ("Privilege", "system,all"),
                ("Timestamp", self.state.clock.ts()),
                ("Shutdown", "Cleanly"),
                ("Restart", "True"),
            ]
        )
        await self._drain()
        await asyncio.sleep(0.014)
        await self._unlisten()
        await self.drop_connections()
        self.state.bridges.clear()
        await asyncio.sleep(down_s)
        self._started = time.monotonic()
        self._booting_until = time.monotonic() + loading_s
        await self._listen()

    # --- delivery ---
    def _broadcast(self, headers: Headers) -> None:
        data = frame(headers)
        text = data.decode()
        priv = next((v for k, v in headers if k == "Privilege"), None)
        privilege = _privilege(priv) if priv is not None else None
        for session in self.sessions:
            if session.wants(privilege, text):
                session.write(data)

    async def _drain(self) -> None:
        for session in list(self._sessions.values()):
            if not session.writer.is_closing():
                with contextlib.suppress(ConnectionError):
                    await session.writer.drain()

    # --- connections ---
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = _Session(next(self._conn_ids), writer)
        session.silent = self._silent_new
        self._sessions[session.conn] = session
        self.connections_accepted += 1
        session.write(BANNER)
        buffer = ""
        deadline = time.monotonic() + self.auth_timeout_s
        try:
            while True:
                if session.user is None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    try:
                        async with asyncio.timeout(remaining):
                            chunk = await reader.read(65536)
                    except TimeoutError:
                        break  # authtimeout: FIN, no bytes
                else:
                    chunk = await reader.read(65536)
                if not chunk:
                    break
                buffer += chunk.decode("utf-8", "replace").replace("\r\n", "\n")
                while "\n\n" in buffer:
                    block, buffer = buffer.split("\n\n", 1)
                    blocks = parse_blocks(block.encode())
                    if not blocks or session.silent:
                        continue
                    keep_open = await self._dispatch(session, blocks[0])
                    await writer.drain()
                    if not keep_open:
                        return
        except ConnectionError:
            pass  # the client went away: like Asterisk, just forget the session
        finally:
            self._sessions.pop(session.conn, None)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _dispatch(self, s: _Session, headers: Headers) -> bool:
        h: dict[str, str] = {}
        for name, value in headers:
            key = name.lower()
            h[key] = f"{h[key]}\n{value}" if key in h else value
        action = h.get("action", "")
        aid = h.get("actionid")
        self.actions.append(ReceivedAction(s.conn, action, h))
        if self._action_event is not None:
            self._action_event.set()

        def reply(response: str, *fields: tuple[str, str]) -> None:
            head = [("Response", response)] + ([("ActionID", aid)] if aid is not None else [])
            s.write(frame(head + list(fields)))

        if not action:
            reply("Error", ("Message", "Missing action in request"))
            return True
        lower = action.lower()
        if lower in self.unanswered:
            return True
        if lower in self.delays:
            await asyncio.sleep(self.delays[lower])
        if s.user is None and lower not in ("login", "challenge", "logoff"):
            reply("Error", ("Message", "Permission denied"))
            return True
        handler = getattr(self, f"_act_{lower}", None)
        if lower in MODULE_ACTIONS and time.monotonic() < self._booting_until:
            handler = None  # its module is not loaded yet (restart_mid_call, issue 12 item 11)
        if handler is None:
            reply(
                "Error",
                (
                    "Message",
                    f"Invalid/unknown command: {action}. "
                    "Use Action: ListCommands to show available commands.",
                ),
            )
            return True
        if s.user is not None:
            write = _classes(self.users[s.user].write)
            required = REQUIRED_WRITE.get(lower, frozenset())
            if required and not required & write:
                reply("Error", ("Message", "Permission denied"))
                return True
        result: bool | None = await handler(s, h, reply)
        return result is not False

    # --- session actions ---
    async def _act_login(self, s: _Session, h: dict[str, str], reply: _Reply) -> bool:
        if s.user is not None:
            reply("Success", ("Message", "Already authenticated"))
            return True
        user = self.users.get(h.get("username", ""))
        if h.get("authtype", "").lower() == "md5":
            expected = (
                hashlib.md5(f"{s.challenge}{user.secret}".encode()).hexdigest()
                if user and s.challenge
                else None
            )
            ok = expected is not None and h.get("key", "").lower() == expected
        else:
            ok = user is not None and h.get("secret", "") == user.secret
        if not ok or user is None:
            await asyncio.sleep(self.auth_fail_delay_s)
            reply("Error", ("Message", "Authentication failed"))
            return False
        s.user = h["username"]
        read = _classes(user.read)
        events = h.get("events")
        if events is None or events.lower() in ("on", "yes", "true", "1"):
            s.mask = read
        elif events.lower() in ("off", "no", "false", "0"):
            s.mask = frozenset()
        else:
            s.mask = _classes(events) & read
        reply("Success", ("Message", "Authentication accepted"))
        booting = time.monotonic() < self._booting_until
        if "system" in s.mask and not booting:
            uptime = str(int(time.monotonic() - self._started))
            s.write(
                frame(
                    [
                        ("Event", "FullyBooted"),
                        ("Privilege", "system,all"),
                        ("Uptime", uptime),
                        ("LastReload", uptime),
                        ("Status", "Fully Booted"),
                    ]
                )
            )
        self.logins += 1
        if self._login_event is not None:
            self._login_event.set()
        self._broadcast(
            [
                ("Event", "SuccessfulAuth"),
                ("Privilege", "security,all"),
                ("Timestamp", self.state.clock.ts()),
                ("Severity", "Informational"),
                ("Service", "AMI"),
                ("EventVersion", "1"),
                ("AccountID", s.user),
                ("SessionID", f"0x{id(s):x}"),
                ("LocalAddress", f"IPV4/TCP/127.0.0.1/{self.port}"),
                ("RemoteAddress", "IPV4/TCP/127.0.0.1/0"),
                ("UsingPassword", "0"),
            ]
        )
        if booting and "system" in s.mask:
            # Sent when the modules are loaded; meanwhile the session answers other actions.
            self._spawn(lambda: self._fully_booted_later(s))
        return True

    async def _fully_booted_later(self, s: _Session) -> None:
        await asyncio.sleep(max(0.038, self._booting_until - time.monotonic()))
        s.write(
            frame(
                [
                    ("Event", "FullyBooted"),
                    ("Privilege", "system,all"),
                    ("Timestamp", self.state.clock.ts()),
                    ("Status", "Fully Booted"),
                    ("Uptime", "0"),
                    ("LastReload", "0"),
                ]
            )
        )

    async def _act_challenge(self, s: _Session, h: dict[str, str], reply: _Reply) -> None:
        if h.get("authtype", "").lower() != "md5":
            reply("Error", ("Message", "Must specify AuthType"))
            return
        s.challenge = self._challenge()
        reply("Success", ("Challenge", s.challenge))

    async def _act_logoff(self, s: _Session, h: dict[str, str], reply: _Reply) -> bool:
        reply("Goodbye", ("Message", "Thanks for all the fish."))
        return False

    async def _act_ping(self, s: _Session, h: dict[str, str], reply: _Reply) -> None:
        reply("Success", ("Ping", "Pong"), ("Timestamp", self.state.clock.ts()))

    async def _act_events(self, s: _Session, h: dict[str, str], reply: _Reply) -> None:
        mask = h.get("eventmask", "")
        assert s.user is not None
        read = _classes(self.users[s.user].read)
        if mask.lower() in ("on", "yes", "true", "1"):
            s.mask = read
        elif mask.lower() in ("off", "no", "false", "0"):
            s.mask = frozenset()
        else:
            s.mask = _classes(mask) & read
        reply("Success", ("Events", "On" if s.mask else "Off"))

    async def _act_filter(self, s: _Session, h: dict[str, str], reply: _Reply) -> None:
        text = h.get("filter", "")
        include = not text.startswith("!")
        try:
            regex = re.compile(text if include else text[1:])
        except re.error:
            reply("Error", ("Message", "Filter Not Added"))
            return
        s.filters.append((include, regex))
        reply("Success", ("Message", "Success"))

    async def _act_corestatus(self, s: _Session, h: dict[str, str], reply: _Reply) -> None:
        day, clock = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()).split()
        reply(
            "Success",
            ("CoreStartupDate", day),
            ("CoreStartupTime", clock),
            ("CoreReloadDate", day),
            ("CoreReloadTime", clock),
            ("CoreCurrentCalls", str(len(self.state.channels))),
            ("CoreProcessedCalls", "0"),
        )

    async def _act_dbput(self, s: _Session, h: dict[str, str], reply: _Reply) -> None:
        self.astdb[(h.get("family", ""), h.get("key", ""))] = h.get("val", "")
        reply("Success", ("Message", "Updated database successfully"))

    async def _act_dbget(self, s: _Session, h: dict[str, str], reply: _Reply) -> None:
        family, key = h.get("family", ""), h.get("key", "")
        if (family, key) not in self.astdb:
            reply("Error", ("Message", "Database entry not found"))
            return
        aid = h.get("actionid")
        fields = [("Family", family), ("Key", key), ("Val", self.astdb[(family, key)])]
        item = self._item("DBGetResponse", aid, fields, id_first=False)
        self._send_list(s, aid, "Result will follow", [item], "DBGetComplete")

    # --- lists ---
    def _send_list(
        self,
        s: _Session,
        aid: str | None,
        message: str,
        items: list[Headers],
        complete: str,
        extra: Headers = (),  # type: ignore[assignment]
    ) -> None:
        idh = [("ActionID", aid)] if aid is not None else []
        out = [frame([("Response", "Success"), *idh, ("EventList", "start"), ("Message", message)])]
        out += [frame(item) for item in items]
        out.append(
            frame(
                [
                    ("Event", complete),
                    *idh,
                    ("EventList", "Complete"),
                    ("ListItems", str(len(items))),
                    *extra,
                ]
            )
        )
        s.write(b"".join(out))

    @staticmethod
    def _item(event: str, aid: str | None, fields: Headers, *, id_first: bool) -> Headers:
        idh = [("ActionID", aid)] if aid is not None else []
        return [("Event", event), *idh, *fields] if id_first else [("Event", event), *fields, *idh]

    def _snapshot(self, chan: Mapping[str, str]) -> Headers:
        return [(k, chan.get(k, "")) for k in SNAPSHOT_KEYS]

    def _age(self, thing: Mapping[str, str], key: str) -> int:
        now = self.state.clock()
        return max(0, int(now - float(thing.get(key, now))))

    async def _act_coreshowchannels(self, s: _Session, h: dict[str, str], reply: _Reply) -> None:
        aid = h.get("actionid")
        items = []
        for chan in self.state.channels.values():
            secs = self._age(chan, "_created")
            fields = [
                *self._snapshot(chan),
                ("Application", chan.get("Application", "")),
                ("ApplicationData", chan.get("ApplicationData", "")),
                ("Duration", f"{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}"),
                ("BridgeId", chan.get("BridgeId", "")),
            ]
            items.append(self._item("CoreShowChannel", aid, fields, id_first=True))
        self._send_list(s, aid, "Channels will follow", items, "CoreShowChannelsComplete")

    async def _act_queuestatus(self, s: _Session, h: dict[str, str], reply: _Reply) -> None:
        aid = h.get("actionid")
        wanted, member_filter = h.get("queue"), h.get("member")
        items: list[Headers] = []
        for queue in self.state.queues.values():
            if wanted and queue.name != wanted:
                continue
            params = [
                ("Queue", queue.name),
                ("Max", "0"),
                ("Strategy", queue.strategy),
                ("Calls", str(len(queue.callers))),
                ("Holdtime", "0"),
                ("TalkTime", "0"),
                ("Completed", str(queue.completed)),
                ("Abandoned", str(queue.abandoned)),
                ("ServiceLevel", "20"),
                ("ServicelevelPerf", "0.0"),
                ("ServicelevelPerf2", "0.0"),
                ("Weight", str(queue.weight)),
            ]
            items.append(self._item("QueueParams", aid, params, id_first=False))
            for m in queue.members.values():
                if member_filter and member_filter not in (m.get("Interface"), m.get("MemberName")):
                    continue
                fields = [
                    ("Queue", queue.name),
                    ("Name", m.get("MemberName", "")),
                    ("Location", m.get("Interface", "")),
                    *[(k, m.get(k, "")) for k in MEMBER_KEYS[2:] if k != "Ringinuse"],
                ]
                items.append(self._item("QueueMember", aid, fields, id_first=False))
            for pos, c in enumerate(queue.callers, 1):
                chan = self.state.channels.get(c["Channel"], c)
                name = chan.get("CallerIDName", "")
                cname = chan.get("ConnectedLineName", "")
                fields = [
                    ("Queue", queue.name),
                    ("Position", str(pos)),
                    ("Channel", c["Channel"]),
                    ("Uniqueid", chan.get("Uniqueid", "")),
                    ("CallerIDNum", chan.get("CallerIDNum", "")),
                    ("CallerIDName", "unknown" if name in ("", "<unknown>") else name),
                    ("ConnectedLineNum", chan.get("ConnectedLineNum", "")),
                    ("ConnectedLineName", "unknown" if cname in ("", "<unknown>") else cname),
                    ("Wait", str(self._age(c, "_joined"))),
                    ("Priority", c.get("Priority", "0")),
                ]
                items.append(self._item("QueueEntry", aid, fields, id_first=False))
        self._send_list(s, aid, "Queue status will follow", items, "QueueStatusComplete")

    async def _act_queuesummary(self, s: _Session, h: dict[str, str], reply: _Reply) -> None:
        aid = h.get("actionid")
        items = []
        for queue in self.state.queues.values():
            if h.get("queue") and queue.name != h["queue"]:
                continue
            members = queue.members.values()
            fields = [
                ("Queue", queue.name),
                ("LoggedIn", str(len(members))),
                ("Available", str(sum(m.get("Paused") != "1" for m in members))),
                ("Callers", str(len(queue.callers))),
                ("HoldTime", "0"),
                ("TalkTime", "0"),
                (
                    "LongestHoldTime",
                    str(max((self._age(c, "_joined") for c in queue.callers), default=0)),
                ),
            ]
            items.append(self._item("QueueSummary", aid, fields, id_first=False))
        self._send_list(s, aid, "Queue summary will follow", items, "QueueSummaryComplete")

    async def _act_bridgelist(self, s: _Session, h: dict[str, str], reply: _Reply) -> None:
        aid = h.get("actionid")
        items = [
            self._item("BridgeListItem", aid, b.fields(), id_first=True)
            for b in self.state.bridges.values()
        ]
        self._send_list(s, aid, "Bridge listing will follow", items, "BridgeListComplete")

    async def _act_bridgeinfo(self, s: _Session, h: dict[str, str], reply: _Reply) -> None:
        aid = h.get("actionid")
        bridge = self.state.bridges.get(h.get("bridgeuniqueid", ""))
        if bridge is None:
            reply("Error", ("Message", "Specified BridgeUniqueid not found"))
            return
        items = [
            self._item(
                "BridgeInfoChannel", aid, self._snapshot(self.state.channels[n]), id_first=True
            )
            for n in bridge.channels
            if n in self.state.channels
        ]
        self._send_list(
            s,
            aid,
            "Bridge channel listing will follow",
            items,
            "BridgeInfoComplete",
            bridge.fields(),
        )

    async def _act_status(self, s: _Session, h: dict[str, str], reply: _Reply) -> None:
        aid = h.get("actionid")
        name = h.get("channel")
        if name and name not in self.state.channels:
            reply("Error", ("Message", "No such channel"))
            return
        chans = [self.state.channels[name]] if name else list(self.state.channels.values())
        wanted_vars = [v for v in h.get("variables", "").split(",") if v]
        items = []
        for chan in chans:
            cvars = self.state.variables.get(chan["Channel"], {})
            fields = [
                ("Privilege", "Call"),
                *self._snapshot(chan),
                ("Type", chan["Channel"].split("/", 1)[0]),
                ("DNID", ""),
                ("EffectiveConnectedLineNum", chan.get("ConnectedLineNum", "")),
                ("EffectiveConnectedLineName", chan.get("ConnectedLineName", "")),
                ("TimeToHangup", "0"),
                ("BridgeID", chan.get("BridgeId", "")),
                ("Application", chan.get("Application", "")),
                ("Data", chan.get("ApplicationData", "")),
                ("Nativeformats", "(slin)"),
                ("Readformat", "slin"),
                ("Readtrans", ""),
                ("Writeformat", "slin"),
                ("Writetrans", ""),
                ("Callgroup", "0"),
                ("Pickupgroup", "0"),
                ("Seconds", str(self._age(chan, "_created"))),
                *[("Variable", f"{v}={cvars.get(v, '')}") for v in wanted_vars],
            ]
            items.append(self._item("Status", aid, fields, id_first=False))
        self._send_list(
            s,
            aid,
            "Channel status will follow",
            items,
            "StatusComplete",
            [("Items", str(len(items)))],
        )

    # --- call control ---
    def _call_event(self, name: str, *fields: tuple[str, str]) -> None:
        self._broadcast(
            [
                ("Event", name),
                ("Privilege", "call,all"),
                ("Timestamp", self.state.clock.ts()),
                *fields,
            ]
        )

    def _hangup_channel(self, name: str, cause: str) -> None:
        chan = self.state.channels.get(name)
        if chan is None:
            return
        snap = self._snapshot(chan)
        self._call_event("SoftHangupRequest", *snap, ("Cause", cause))
        if chan.get("BridgeId"):
            bridge = self.state.bridges.get(chan["BridgeId"])
            self.state._leave(name)
            if bridge is not None:
                self._call_event("BridgeLeave", *bridge.fields(), *snap)
        self.state.remove_channel(name)
        self._call_event("Hangup", *snap, ("Cause", cause), ("Cause-txt", "Normal Clearing"))

    async def _act_originate(self, s: _Session, h: dict[str, str], reply: _Reply) -> None:
        channel = h.get("channel", "")
        if not channel:
            reply("Error", ("Message", "Channel not specified"))
            return
        tech = channel.split("/", 1)[0]
        fails = tech not in KNOWN_TECH or channel in self.unreachable
        is_async = h.get("async", "").lower() in ("true", "yes", "1")
        user = self.users.get(s.user or "")
        if h.get("application") and originate_forbidden(
            h["application"], h.get("data", ""), _classes(user.write if user else "")
        ):
            reply("Error", ("Message", "Originate Access Forbidden: app or data blacklisted"))
            return
        if fails and not is_async:
            reply("Error", ("Message", "Originate failed"))
            return
        reply("Success", ("Message", "Originate successfully queued"))
        if not is_async:
            self._create_originated(channel, h)
            return
        await s.writer.drain()
        aid = h.get("actionid")
        idh = [("ActionID", aid)] if aid is not None else []
        if fails:
            self._call_event(
                "OriginateResponse",
                *idh,
                ("Response", "Failure"),
                ("Channel", channel),
                ("Context", h.get("context", "")),
                ("Exten", h.get("exten", "")),
                ("Reason", "0"),
                ("Uniqueid", "<unknown>"),
                ("CallerIDNum", "<unknown>"),
                ("CallerIDName", "<unknown>"),
            )
            return
        chan = self._create_originated(channel, h)
        self._call_event(
            "OriginateResponse",
            *idh,
            ("Response", "Success"),
            ("Channel", chan["Channel"]),
            ("Context", h.get("context", "")),
            ("Exten", h.get("exten", "")),
            ("Reason", "4"),
            ("Uniqueid", chan["Uniqueid"]),
            ("CallerIDNum", chan["CallerIDNum"]),
            ("CallerIDName", chan["CallerIDName"]),
        )

    def _create_originated(self, channel: str, h: dict[str, str]) -> dict[str, str]:
        seq = next(self.state._seq)
        name = f"{channel}-{seq:08x}" + (";1" if channel.startswith("Local/") else "")
        match = re.search(r"<([^>]*)>", h.get("callerid", ""))
        num = match.group(1) if match and match.group(1) else "<unknown>"
        return self.state.add_channel(
            name,
            CallerIDNum=num,
            ConnectedLineNum=num,
            Context=h.get("context", "default"),
            Exten=h.get("exten", "s"),
        )

    async def _act_redirect(self, s: _Session, h: dict[str, str], reply: _Reply) -> None:
        name = h.get("channel", "")
        for key, label in (
            ("channel", "Channel"),
            ("context", "Context"),
            ("exten", "Exten"),
            ("priority", "Priority"),
        ):
            if not h.get(key):
                reply("Error", ("Message", f"{label} not specified"))
                return
        if name not in self.state.channels:
            reply("Error", ("Message", f"Channel does not exist: {name}"))
            return
        self.state._leave(name)
        chan = self.state.channels[name]
        chan.update(Context=h["context"], Exten=h["exten"], Priority=h["priority"])
        reply("Success", ("Message", "Redirect successful"))

    def _transfer_checks(self, h: dict[str, str], reply: _Reply) -> dict[str, str] | None:
        if not h.get("channel"):
            reply("Error", ("Message", "No channel specified"))
            return None
        if not h.get("exten"):
            reply("Error", ("Message", "No extension specified"))
            return None
        chan = self.state.channels.get(h["channel"])
        if chan is None:
            reply("Error", ("Message", "Channel specified does not exist"))
        return chan

    async def _act_blindtransfer(self, s: _Session, h: dict[str, str], reply: _Reply) -> None:
        chan = self._transfer_checks(h, reply)
        if chan is None:
            return
        transferer = [(f"Transferer{k}", v) for k, v in self._snapshot(chan)]
        transferer[0] = ("TransfererChannel", chan["Channel"])
        tail = [
            ("IsExternal", "Yes"),
            ("Context", h.get("context", "")),
            ("Extension", h["exten"]),
        ]
        bridge = self.state.bridges.get(chan.get("BridgeId", ""))
        if bridge is None:
            reply("Error", ("Message", "Transfer invalid"))
            self._call_event("BlindTransfer", ("Result", "Invalid"), *transferer, *tail)
            return
        reply("Success", ("Message", "Transfer succeeded"))
        others = [self.state.channels[n] for n in bridge.channels if n != chan["Channel"]]
        transferee = [(f"Transferee{k}", v) for k, v in self._snapshot(others[0])] if others else []
        self._call_event(
            "BlindTransfer",
            ("Result", "Success"),
            *transferer,
            *transferee,
            *bridge.fields(),
            *tail,
        )

    async def _act_atxfer(self, s: _Session, h: dict[str, str], reply: _Reply) -> None:
        if self._transfer_checks(h, reply) is not None:
            reply("Success", ("Message", "Atxfer successfully queued"))

    async def _act_hangup(self, s: _Session, h: dict[str, str], reply: _Reply) -> None:
        name = h.get("channel", "")
        if not name:
            reply("Error", ("Message", "No channel specified"))
            return
        cause = h.get("cause", "16")
        if len(name) > 2 and name.startswith("/") and name.endswith("/"):
            regex = re.compile(name[1:-1])
            aid = h.get("actionid")
            matched = [n for n in self.state.channels if regex.search(n)]
            items = [[("Event", "ChannelHungup"), ("Channel", n)] for n in matched]
            if aid is not None:
                items = [[*item, ("ActionID", aid)] for item in items]
            self._send_list(
                s, aid, "Channels hung up will follow", items, "ChannelsHungupListComplete"
            )
            for n in matched:
                self._hangup_channel(n, cause)
            return
        if name not in self.state.channels:
            reply("Error", ("Message", "No such channel"))
            return
        reply("Success", ("Message", "Channel Hungup"))
        self._hangup_channel(name, cause)

    async def _act_setvar(self, s: _Session, h: dict[str, str], reply: _Reply) -> None:
        if not h.get("variable"):
            reply("Error", ("Message", "No variable specified"))
            return
        name = h.get("channel", "")
        if name and name not in self.state.channels:
            reply("Error", ("Message", "No such channel"))
            return
        self.state.variables.setdefault(name, {})[h["variable"]] = h.get("value", "")
        reply("Success", ("Message", "Variable Set"))

    async def _act_mixmonitor(self, s: _Session, h: dict[str, str], reply: _Reply) -> None:
        # app_mixmonitor's manager action: the file is the channel's until it hangs up.
        name = h.get("channel", "")
        if not name:
            reply("Error", ("Message", "No channel specified"))
            return
        if name not in self.state.channels:
            reply("Error", ("Message", "No such channel"))
            return
        reply("Success")  # Asterisk 22.10.1 says no more (recordings/asterisk22/supervise.*)

    async def _act_mixmonitormute(self, s: _Session, h: dict[str, str], reply: _Reply) -> None:
        name, direction = h.get("channel", ""), h.get("direction", "")
        if not name:
            reply("Error", ("Message", "No channel specified"))
        elif not direction:
            reply("Error", ("Message", "No direction specified"))
        elif direction not in ("read", "write", "both"):
            reply("Error", ("Message", "Invalid direction specified"))
        elif name not in self.state.channels:
            reply("Error", ("Message", "No such channel"))
        else:
            reply("Success")

    async def _act_getvar(self, s: _Session, h: dict[str, str], reply: _Reply) -> None:
        var = h.get("variable", "")
        if not var:
            reply("Error", ("Message", "No variable specified"))
            return
        name = h.get("channel", "")
        if name and name not in self.state.channels:
            reply("Error", ("Message", "No such channel"))
            return
        value = self.state.variables.get(name, {}).get(var, "")
        if name and var == "CALLERID(num)":
            value = self.state.channels[name]["CallerIDNum"]
        reply("Success", ("Variable", var), ("Value", value))

    async def _act_command(self, s: _Session, h: dict[str, str], reply: _Reply) -> None:
        command = h.get("command", "").strip()
        if command.startswith("core restart"):
            self._spawn(self.restart)
            return  # Asterisk never answers this one
        uptime = int(time.monotonic() - self._started)
        lines = self.cli.get(command)
        if lines is None and command == "core show uptime":
            lines = [f"System uptime: {uptime} seconds", f"Last reload: {uptime} seconds"]
        if lines is None:
            hint = " ".join(command.split()[:2])
            reply(
                "Error",
                ("Message", "Command output follows"),
                (
                    "Output",
                    f"No such command '{command}' "
                    f"(type 'core show help {hint}' for other possible commands)",
                ),
            )
            return
        reply("Success", ("Message", "Command output follows"), *[("Output", x) for x in lines])

    # --- queues ---
    def _member_event(self, name: str, queue: str, member: Mapping[str, str]) -> None:
        self._broadcast(
            [
                ("Event", name),
                ("Privilege", "agent,all"),
                ("Timestamp", self.state.clock.ts()),
                ("Queue", queue),
                *[(k, member.get(k, "")) for k in MEMBER_KEYS],
            ]
        )

    async def _act_queueadd(self, s: _Session, h: dict[str, str], reply: _Reply) -> None:
        qname, interface = h.get("queue", ""), h.get("interface", "")
        if not qname or not interface:
            reply("Error", ("Message", "'Queue' and 'Interface' not specified."))
            return
        queue = self.state.queues.get(qname)
        if queue is None:
            reply("Error", ("Message", "Unable to add interface to queue: No such queue"))
            return
        if interface in queue.members:
            reply("Error", ("Message", "Unable to add interface: Already there"))
            return
        paused = h.get("paused", "").lower() in ("true", "yes", "1")
        member = self.state.add_member(
            qname,
            interface,
            h.get("membername") or interface,
            paused=paused,
            reason=h.get("reason", ""),
            membership="dynamic",
        )
        member["StateInterface"] = h.get("stateinterface") or interface
        member["Penalty"] = h.get("penalty") or "0"
        reply("Success", ("Message", "Added interface to queue"))
        self._member_event("QueueMemberAdded", qname, member)

    async def _act_queueremove(self, s: _Session, h: dict[str, str], reply: _Reply) -> None:
        queue = self.state.queues.get(h.get("queue", ""))
        if queue is None:
            reply("Error", ("Message", "Unable to remove interface from queue: No such queue"))
            return
        member = queue.members.get(h.get("interface", ""))
        if member is None:
            reply("Error", ("Message", "Unable to remove interface: Not there"))
            return
        if member.get("Membership") != "dynamic":
            reply("Error", ("Message", "Member not dynamic"))
            return
        del queue.members[h["interface"]]
        reply("Success", ("Message", "Removed interface from queue"))
        self._member_event("QueueMemberRemoved", queue.name, member)

    async def _act_queuepause(self, s: _Session, h: dict[str, str], reply: _Reply) -> None:
        interface, paused = h.get("interface"), h.get("paused")
        if not interface or not paused:
            reply("Error", ("Message", "Need 'Interface' and 'Paused' parameters."))
            return
        pause = paused.lower() in ("true", "yes", "1")
        hits = [
            (q.name, q.members[interface])
            for q in self.state.queues.values()
            if interface in q.members and (not h.get("queue") or q.name == h["queue"])
        ]
        if not hits:
            reply("Error", ("Message", "Interface not found"))
            return
        word = "paused" if pause else "unpaused"
        reply("Success", ("Message", f"Interface {word} successfully"))
        for qname, member in hits:
            member["Paused"] = "1" if pause else "0"
            member["PausedReason"] = h.get("reason", "") if pause else ""
            if pause:
                member["LastPause"] = str(int(time.time()))
            self._member_event("QueueMemberPause", qname, member)


_Reply = Callable[..., None]
