"""The simulator's AMI server: Asterisk 22's login, framing and event delivery over TCP.

Login (plain and MD5 challenge), ``Events``, ``Filter``, ``Logoff`` and the pre-login and
bad-secret behaviour follow ``../shared/ami-traces/asterisk22/protocol/login_*.ami-session``;
events reach a connection when the user may read their class and the connection asked for them
(``Events: on|off|call,agent``), in the order the PBX emitted them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import re
from dataclasses import dataclass, field

import structlog

from cti.sim.actions import Actions, AmiUser, error, response, success
from cti.sim.pbx import Event, Pbx
from cti.sim.wire import BANNER, Action, FramingError, encode, read_action

log = structlog.get_logger(__name__)

AUTH_FAIL_DELAY_S = 1.0
MAX_BACKLOG = 200_000  # messages queued for a reader that does not keep up


@dataclass
class _Session:
    writer: asyncio.StreamWriter
    out: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    user: AmiUser | None = None
    username: str = ""
    mask: frozenset[str] | None = None  # None: everything the user may read
    events_on: bool = True
    challenge: str = ""
    filters: list[tuple[bool, re.Pattern[str]]] = field(default_factory=list)
    overflowed: bool = False
    pump: asyncio.Task[None] | None = None

    def send(self, data: bytes) -> None:
        if self.out.qsize() >= MAX_BACKLOG:
            self.overflowed = True
            return
        self.out.put_nowait(data)

    def wants(self, event: Event) -> bool:
        if self.user is None or not self.events_on or not self.user.may_read(event.cls):
            return False
        if self.mask is not None and "all" not in self.mask and event.cls not in self.mask:
            return False
        if self.filters:
            text = encode(event.message()).decode()
            allow = [p for keep, p in self.filters if keep]
            deny = [p for keep, p in self.filters if not keep]
            if allow and not any(p.search(text) for p in allow):
                return False
            if any(p.search(text) for p in deny):
                return False
        return True


def _mask(value: str) -> tuple[bool, frozenset[str] | None]:
    """``Events:`` header: (events on?, classes or None for all)."""
    text = value.strip().lower()
    if text in {"off", "no", "false", "0"}:
        return False, None
    if text in {"", "on", "yes", "true", "1"}:
        return True, None
    classes = frozenset(c.strip() for c in text.split(",") if c.strip())
    known = {"call", "agent", "system", "dialplan", "agi", "user", "security", "reporting", "all"}
    if not classes & known:
        return False, None
    return True, classes


class AmiServer:
    """Serves AMI on ``host:port`` (port 0 picks a free one, see ``port`` after ``start``)."""

    def __init__(
        self,
        pbx: Pbx,
        actions: Actions,
        users: dict[str, AmiUser],
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.pbx = pbx
        self.actions = actions
        self.users = users
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self.logins = 0
        self.logged_in: asyncio.Event | None = None  # set at the first successful login
        self._tasks: dict[asyncio.Task[None], _Session] = {}

    async def start(self) -> None:
        self.logged_in = asyncio.Event()
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("sim.ami_listening", host=self.host, port=self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        # Like Asterisk: a Shutdown event, everything queued is written, then FIN; closing
        # the sockets ends each session's read loop. Cancel only what is left after that.
        self.pbx.emit("Shutdown", "system", [("Shutdown", "Cleanly"), ("Restart", "False")])
        sessions = list(self._tasks.values())
        for session in sessions:
            session.out.put_nowait(None)
        pumps = [s.pump for s in sessions if s.pump is not None]
        if pumps:
            await asyncio.wait(pumps, timeout=2.0)
        for session in sessions:
            session.writer.close()
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=2.0)
            for task in pending:
                task.cancel()
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        session = _Session(writer)
        self._tasks[task] = session
        unsubscribe = self.pbx.subscribe(
            lambda e: session.send(encode(e.message())) if session.wants(e) else None
        )
        pump = session.pump = asyncio.create_task(self._pump(session))
        try:
            session.send(BANNER)
            while not session.overflowed:
                try:
                    action = await read_action(reader)
                except FramingError:
                    break
                if action is None or not await self._handle(session, action):
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            unsubscribe()
            session.out.put_nowait(None)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pump, 2.0)
            pump.cancel()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            self._tasks.pop(task, None)

    async def _pump(self, session: _Session) -> None:
        writer = session.writer
        while (data := await session.out.get()) is not None:
            writer.write(data)
            if session.out.empty():
                try:
                    await writer.drain()
                except ConnectionError:
                    return
        with contextlib.suppress(ConnectionError):
            await writer.drain()

    async def _handle(self, session: _Session, action: Action) -> bool:
        """Answer one action; False closes the connection."""
        name = action.name.lower()
        if not action.name:
            session.send(encode(error(action, "Missing action in request")[0]))
            return True
        if name == "login":
            return await self._login(session, action)
        if name == "challenge":
            if action.get("AuthType").lower() != "md5":
                session.send(encode(error(action, "Must specify AuthType")[0]))
            else:
                session.challenge = str(random.randrange(100_000_000, 999_999_999))
                session.send(encode(response(action, "Success", ("Challenge", session.challenge))))
            return True
        if name == "logoff":
            session.send(
                encode(response(action, "Goodbye", ("Message", "Thanks for all the fish.")))
            )
            return False
        if session.user is None:
            session.send(encode(error(action, "Permission denied")[0]))
            return True
        if name == "events":
            on, mask = _mask(action.get("EventMask"))
            session.events_on, session.mask = on, mask
            session.send(encode(response(action, "Success", ("Events", "On" if on else "Off"))))
            return True
        if name == "filter":
            text = action.get("Filter")
            keep = not text.startswith("!")
            try:
                session.filters.append((keep, re.compile(text if keep else text[1:])))
            except re.error:
                session.send(encode(error(action, "Filter Not Added")[0]))
                return True
            session.send(encode(success(action, "Success")[0]))
            return True
        for message in self.actions.handle(action, session.user):
            session.send(encode(message))
        return True

    async def _login(self, session: _Session, action: Action) -> bool:
        if session.user is not None:
            session.send(encode(success(action, "Already authenticated")[0]))
            return True
        username = action.get("Username")
        user = self.users.get(username)
        if action.get("AuthType").lower() == "md5":
            expected = hashlib.md5(
                f"{session.challenge}{user.secret if user else ''}".encode()
            ).hexdigest()
            ok = (
                user is not None
                and bool(session.challenge)
                and action.get("Key").lower() == expected
            )
        else:
            ok = user is not None and action.get("Secret") == user.secret
        if not ok or user is None:
            await asyncio.sleep(AUTH_FAIL_DELAY_S)
            session.send(encode(error(action, "Authentication failed")[0]))
            log.info("sim.ami_login_failed", username=username)
            return False
        session.user, session.username = user, username
        self.logins += 1
        if self.logged_in is not None:
            self.logged_in.set()
        session.events_on, session.mask = _mask(action.get("Events"))
        session.send(encode(success(action, "Authentication accepted")[0]))
        if session.events_on and user.may_read("system"):
            session.send(
                encode(
                    [
                        ("Event", "FullyBooted"),
                        ("Privilege", "system,all"),
                        ("Uptime", "1"),
                        ("LastReload", "1"),
                        ("Status", "Fully Booted"),
                    ]
                )
            )
        return True
