"""Desktop messages through a Redis stream, so that a desktop on any instance gets them.

Why a stream, not pub/sub: pub/sub forgets what it sent while an instance was reconnecting
to Redis (those desktops would miss pops), and a new instance could not learn what the
desktops of active calls must be replayed. A stream keeps the last ``maxlen`` messages:
each instance reads it from where it stopped (a brief Redis disconnect loses nothing), and
an instance that starts reads it from the beginning to rebuild the replay state
(``ReplayMirror``) before desktops connect.

The ingesting instance's ``PopHub`` builds each message once (with its unique ``id``) and
hands it to ``RedisFanout.send`` (never awaits: a sender task ``XADD``s in pipelined
batches). Once Redis has a batch, the ingester delivers it to its own desktops
(``PopHub.deliver_local``) and skips it when it reads it back; every other instance reads
the stream and delivers each entry once to its own desktops: a desktop gets each message
exactly once; after a reconnect, to any instance, the replay repeats the same ids, which the
desktop de-duplicates on. Never before Redis has it: an ingester killed between the two
would have shown its desktops a pop no other instance, and no replay, knows of (the next
ingester pops that call again, under another id).

The supervisor console's messages go the same way on a stream of their own (``send_console``,
``{prefix}:console``, kept short: the board is sent whole every few seconds): every instance
applies them to its ``BoardMirror`` (``cti.cluster.board``) and delivers them to its own
consoles, so a console on a standby shows the ingester's board. The instances with consoles
connected say so in ``{prefix}:consoles`` (``consoles_anywhere``): with none anywhere, the
ingester builds no console rows at all, as a single instance does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Protocol

import structlog

from cti.cluster.board import BOARD_STATE, BoardMirror
from cti.cluster.replay import ReplayMirror
from cti.hub import HubMessage

log = structlog.get_logger(__name__)


class StreamRedis(Protocol):
    """The part of ``redis.asyncio.Redis`` the fan-out uses."""

    def xread(
        self, streams: Any, count: int | None = ..., block: int | None = ...
    ) -> Awaitable[Any]: ...

    def eval(self, script: str, numkeys: int, *keys_and_args: Any) -> Awaitable[Any]: ...

    def xrange(
        self, name: str, min: str = ..., max: str = ..., count: int | None = ...
    ) -> Awaitable[Any]: ...

    def pipeline(self, transaction: bool = ...) -> Any: ...


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# ``o`` of a console stream entry: a console message, or the board for the mirrors only.
_CONSOLE, _MIRROR = "c", "b"

_CONSOLES = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
if tonumber(ARGV[2]) > 0 then
  redis.call('ZADD', KEYS[1], ms + tonumber(ARGV[3]), ARGV[1])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 10)
return redis.call('ZCOUNT', KEYS[1], ms, '+inf')
"""


def encode(message: HubMessage, kind: str = "") -> dict[str, str]:
    fields = {
        "i": message.id,
        "y": message.type,
        "c": message.call_id or "",
        "a": message.agent or "",
        "k": message.key or "",
        "t": message.text,
    }
    if kind:
        fields["o"] = kind
    return fields


def decode(fields: dict[Any, Any]) -> HubMessage:
    f = {_text(k): _text(v) for k, v in fields.items()}
    return HubMessage(f["i"], f["y"], f["c"] or None, f["a"] or None, f["t"], f["k"] or None)


class RedisFanout:
    """``PopHub(fanout=...)`` for several instances (see the module docstring)."""

    def __init__(
        self,
        redis: StreamRedis,
        prefix: str,
        *,
        maxlen: int = 100_000,
        block_ms: int = 250,
        console_maxlen: int = 20_000,
        holder: str = "",
    ) -> None:
        self._redis = redis
        self.stream = f"{prefix}:hub"
        self.console_stream = f"{prefix}:console"
        self._consoles_key = f"{prefix}:consoles"
        self._holder = holder or prefix
        self._console_maxlen = console_maxlen
        self._last_console_id = "0-0"
        self._local_consoles: Callable[[], int] = lambda: 0
        self._consoles_anywhere = False
        self._maxlen = maxlen
        self._block_ms = block_ms
        self.mirror = ReplayMirror()
        self.board = BoardMirror()  # the supervisor console's board, on every instance
        self._pending: list[tuple[HubMessage, str]] = []
        self._wake = asyncio.Event()
        self._last_id = "0-0"
        self._deliver: Callable[[HubMessage], None] = lambda _m: None
        self._deliver_console: Callable[[HubMessage], None] = lambda _m: None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._seen: OrderedDict[str, None] = OrderedDict()  # ids a retried XADD may repeat
        # Delivered here on send, not read back yet (at most what the stream keeps).
        self._sent: OrderedDict[str, None] = OrderedDict()
        self._started = False
        self.sent = 0
        self.received = 0
        self.errors = 0

    # --- the hub's side ---
    def send(self, message: HubMessage) -> None:
        self._pending.append((message, ""))
        self._wake.set()

    def send_console(self, message: HubMessage) -> None:
        """A supervisor console message, for every instance's consoles and board mirror
        (``board_state``: for the mirrors only)."""
        self._pending.append((message, _MIRROR if message.type == BOARD_STATE else _CONSOLE))
        self._wake.set()

    def replay(self, agent: str) -> list[HubMessage]:
        return self.mirror.messages(agent)

    def active(self) -> Iterator[tuple[str, str, list[HubMessage]]]:
        return self.mirror.calls()

    # --- lifetime ---
    async def start(
        self,
        deliver: Callable[[HubMessage], None],
        deliver_console: Callable[[HubMessage], None] | None = None,
        local_consoles: Callable[[], int] | None = None,
    ) -> None:
        """Rebuild the replay state from the stream, then follow it; ``deliver`` gets every
        message (for this instance's desktops), ``deliver_console`` every console message
        (for its supervisor consoles, ``local_consoles()`` of them connected now)."""
        self._deliver = deliver
        if deliver_console is not None:
            self._deliver_console = deliver_console
        if local_consoles is not None:
            self._local_consoles = local_consoles
        await self._read_all()
        self._stopping = False
        self._started = True
        self._tasks = [
            asyncio.create_task(self._read_loop(), name="fanout-read"),
            asyncio.create_task(self._send_loop(), name="fanout-send"),
            asyncio.create_task(self._consoles_loop(), name="fanout-consoles"),
        ]

    def consoles_anywhere(self) -> bool:
        """Is a supervisor console connected to any instance (as of the last second)?"""
        return self._consoles_anywhere or self._local_consoles() > 0

    async def stop(self) -> None:
        """Send what is pending, then stop reading. A blocked ``XREAD`` is not cancelled (a
        cancelled blocking read can leave redis-py's connection stuck): it ends within
        ``block_ms`` and the reader sees it is stopping."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                await self._flush()
        self._stopping = True
        reader = self._tasks[0] if self._tasks else None
        for task in self._tasks[1:]:
            task.cancel()
        if reader is not None:
            try:
                async with asyncio.timeout(self._block_ms / 1000 + 2.0):
                    await asyncio.shield(reader)
            except (TimeoutError, Exception):
                reader.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def caught_up(self) -> None:
        """Read what is in the stream now (before this instance starts ingesting: what the
        previous ingester sent is in the replay state)."""
        await self._read_all()

    # --- internals ---
    def _take(self, entries: Any) -> None:
        for entry_id, fields in entries:
            self._last_id = _text(entry_id)
            own = _text(fields.get(b"i", fields.get("i", "")))
            if own in self._sent:  # delivered here once Redis had it
                del self._sent[own]
                self._remember(own)
                continue
            try:
                message = decode(fields)
            except (KeyError, UnicodeDecodeError) as exc:
                self.errors += 1
                log.error("fanout.bad_entry", entry=self._last_id, error=repr(exc))
                continue
            if message.id in self._seen:
                continue
            self._remember(message.id)
            self.received += 1
            self.mirror.apply(message)
            self._deliver(message)

    def _remember(self, message_id: str) -> None:
        self._seen[message_id] = None
        if len(self._seen) > 20_000:
            self._seen.popitem(last=False)

    def _take_console(self, entries: Any) -> None:
        for entry_id, fields in entries:
            self._last_console_id = _text(entry_id)
            try:
                message = decode(fields)
            except (KeyError, UnicodeDecodeError) as exc:
                self.errors += 1
                log.error("fanout.bad_entry", entry=self._last_console_id, error=repr(exc))
                continue
            self.board.apply(message)
            if _text(fields.get(b"o", fields.get("o", ""))) == _CONSOLE:
                self._deliver_console(message)

    async def _read_all(self) -> None:
        for stream, take in ((self.stream, self._take), (self.console_stream, self._take_console)):
            while True:
                last = self._last_id if stream == self.stream else self._last_console_id
                start = "-" if last == "0-0" else f"({last}"
                entries = await self._redis.xrange(stream, min=start, max="+", count=2000)
                if not entries:
                    break
                take(entries)

    async def _read_loop(self) -> None:
        while not self._stopping:
            try:
                reply = await self._redis.xread(
                    {self.stream: self._last_id, self.console_stream: self._last_console_id},
                    count=2000,
                    block=self._block_ms,
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away: read on from where we were
                self.errors += 1
                log.warning("fanout.read_failed", error=repr(exc))
                await asyncio.sleep(0.5)
                continue
            for stream, entries in reply or ():
                if _text(stream) == self.console_stream:
                    self._take_console(entries)
                else:
                    self._take(entries)

    async def _send_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # kept and sent again: nothing is lost while it is down
                self.errors += 1
                log.warning("fanout.send_failed", error=repr(exc), pending=len(self._pending))
                await asyncio.sleep(0.5)
                self._wake.set()

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:1000], self._pending[1000:]
            pipe = self._redis.pipeline(transaction=False)
            for message, kind in batch:
                if kind:
                    stream, maxlen = self.console_stream, self._console_maxlen
                else:
                    stream, maxlen = self.stream, self._maxlen
                pipe.xadd(stream, encode(message, kind), maxlen=maxlen, approximate=True)
            try:
                await pipe.execute()
            except BaseException:
                self._pending[:0] = batch
                raise
            self.sent += len(batch)
            if self._started:
                self._delivered_on_send(m for m, kind in batch if not kind)

    def _delivered_on_send(self, messages: Iterator[HubMessage]) -> None:
        """This instance's desktops get what Redis now has without reading it back."""
        for message in messages:
            if message.id in self._seen:
                continue  # the reader was faster
            self._sent[message.id] = None
            if len(self._sent) > self._maxlen:
                self._sent.popitem(last=False)
            self._remember(message.id)
            self.received += 1
            self.mirror.apply(message)
            self._deliver(message)

    async def _consoles_loop(self, every_s: float = 1.0) -> None:
        """Say whether this instance has consoles; learn whether any instance has."""
        ttl_ms = int(every_s * 3000)
        while True:
            try:
                count = await self._redis.eval(
                    _CONSOLES,
                    1,
                    self._consoles_key,
                    self._holder,
                    int(self._local_consoles()),
                    ttl_ms,
                )
                self._consoles_anywhere = int(count) > 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away: keep what we knew
                log.warning("fanout.consoles_failed", error=repr(exc))
            await asyncio.sleep(every_s)
