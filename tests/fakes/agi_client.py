"""A fake Asterisk 22 FastAGI client, speaking as in ``asterisk22/protocol/agi_*.agi-session``.

It connects, sends the 23-line ``agi_*`` header block (LF only, Asterisk 22's order, in the two
chunks Asterisk wrote), answers each command as Asterisk does (``200 result=1`` for SET VARIABLE,
``200 result=1 (value)`` for GET VARIABLE, ``510``, the multi-line ``520`` usage block, ``511`` on
a dead channel), writes ``HANGUP`` when the caller hangs up and once more when the server closes
its side, and returns the variables the server set.

The caller can type: ``GET DATA``, ``SAY DIGITS``, ``SAY ALPHA`` and ``STREAM FILE`` are
answered as in ``tests/recordings/asterisk22/ivr_*.agi-session`` (``Caller`` says what the
caller types at each GET DATA, and which sound files exist).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field, replace

USAGE_HEAD = b"520-Invalid command syntax.  Proper usage follows:\n"
USAGE_TAIL = b"520 End of proper usage.\n"
USAGE_TEXT = {
    ("set", "variable"): b"Sets a variable to the current channel.\n",
    ("get", "variable"): b"Returns <literal>0</literal> if <replaceable>variablename</replaceable>"
    b" is not set. Returns <literal>1</literal> if <replaceable>variablename</replaceable> is set"
    b" and returns the variable in parentheses.\n"
    b"Example return code: 200 result=1 (testvariable)\n",
}
USAGE_PAUSE_S = 0.044  # the usage text came ~44 ms after the 520- line
INVALID = b"510 Invalid or unknown command\n"
DEAD = b"511 Command Not Permitted on a dead channel or intercept routine\n"
HANGUP = b"HANGUP\n"
# (command words, allowed on a dead channel), a subset of res_agi.c's table
COMMANDS = (
    (("answer",), False),
    (("channel", "status"), False),
    (("get", "variable"), True),
    (("noop",), True),
    (("set", "variable"), True),
    (("stream", "file"), False),
    (("get", "data"), False),
    (("say", "digits"), False),
    (("say", "alpha"), False),
    (("verbose",), True),
    (("hangup",), False),
)


def parse_args(line: str) -> list[str]:
    """res_agi.c parse_args: blanks split, double quotes group, backslash escapes."""
    argv: list[list[str]] = []
    quoted = escaped = False
    blank = True
    for ch in line:
        if ch == '"' and not escaped:
            quoted = not quoted
            if quoted and blank:
                argv.append([])
                blank = False
            continue
        if ch in " \t" and not quoted and not escaped:
            blank = True
            continue
        if ch == "\\" and not escaped:
            escaped = True
            continue
        if blank:
            argv.append([])
            blank = False
        argv[-1].append(ch)
        escaped = False
    return ["".join(a) for a in argv]


@dataclass(frozen=True)
class AgiCall:
    """The call Asterisk runs the AGI for (defaults: agi_route_ok.agi-session)."""

    callerid: str = "+442071234567"
    calleridname: str = "unknown"
    callingpres: int = 0
    dnid: str = "unknown"
    extension: str = "08005550100"
    uniqueid: str = "1795396343.35"
    channel: str = "Local/08005550100@from-pstn-00000011;2"
    script: str = "route"
    threadid: int = 139935215044288

    def withheld(self) -> AgiCall:
        """The same call from a withheld number, as in agi_anonymous.agi-session."""
        return replace(self, callerid="anonymous", calleridname="Anonymous", callingpres=35)


def header_block(call: AgiCall, host: str, port: int) -> tuple[bytes, bytes]:
    """The AGI environment in the two chunks Asterisk wrote (17 lines, then 6 and the blank)."""
    lines = [
        ("agi_network", "yes"),
        ("agi_network_script", call.script),
        ("agi_request", f"agi://{host}:{port}/{call.script}"),
        ("agi_channel", call.channel),
        ("agi_language", "en"),
        ("agi_type", "Local"),
        ("agi_uniqueid", call.uniqueid),
        ("agi_version", "22.10.1"),
        ("agi_callerid", call.callerid),
        ("agi_calleridname", call.calleridname),
        ("agi_callingpres", str(call.callingpres)),
        ("agi_callingani2", "0"),
        ("agi_callington", "0"),
        ("agi_callingtns", "0"),
        ("agi_dnid", call.dnid),
        ("agi_rdnis", "unknown"),
        ("agi_context", "from-pstn"),
        ("agi_extension", call.extension),
        ("agi_priority", "6"),
        ("agi_enhanced", "0.0"),
        ("agi_accountcode", ""),
        ("agi_threadid", str(call.threadid)),
        ("agi_arg_1", call.extension),
    ]
    text = [f"{k}: {v}\n".encode() for k, v in lines]
    return b"".join(text[:17]), b"".join(text[17:]) + b"\n"


HANGS_UP = None  # a Caller key: the caller hangs up during this GET DATA


@dataclass
class Caller:
    """What the caller does at each GET DATA, in order: a string of DTMF (``10042#``: digits
    then ``#``; ``77``: digits then silence; ``#``; ``""``: silence) or ``HANGS_UP``. More GET
    DATA than keys: silence. ``sounds``: the prompts that exist (None: all of them)."""

    keys: list[str | None] = field(default_factory=list)
    sounds: frozenset[str] | None = None
    typing_s: float = 0.0  # how long each GET DATA takes (prompt and typing)

    def has(self, name: str) -> bool:
        return self.sounds is None or name in self.sounds


def get_data_reply(keys: str | None, max_digits: int) -> bytes:
    """res_agi.c handle_getdata over app.c ast_readstring_full, as recorded."""
    if keys is None:
        return b"200 result=-1\n"
    digits = ""
    for key in keys:
        if key == "#":
            return f"200 result={digits}\n".encode()
        digits += key
        if len(digits) >= max_digits:
            return f"200 result={digits}\n".encode()
    return f"200 result={digits} (timeout)\n".encode()


@dataclass
class AgiResult:
    variables: dict[str, str] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)  # reply codes, in order
    closed: bool = False  # the server closed its side (EOF seen)
    ahead: int = 0  # commands that arrived before the reply to the previous one
    hangup_sent: bool = False
    elapsed_s: float = 0.0  # connect to the server's close
    said: list[str] = field(default_factory=list)  # SAY/STREAM FILE the caller heard


class FakeAsterisk:
    """Plays Asterisk against a FastAGI server at ``host:port``."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._caller = Caller()
        self._keys: list[str | None] = []
        self._hangup_pending = False

    async def call(
        self,
        call: AgiCall | None = None,
        *,
        hangup_after: int | None = None,
        usage_first: bool = False,
        reply_delay_s: float = 0.0,
        disconnect_after: int | None = None,
        timeout_s: float = 5.0,
        caller: Caller | None = None,
    ) -> AgiResult:
        """One AGI session. ``hangup_after=K``: the caller hangs up once K commands are answered
        (0: right after the header block); ``usage_first``: the first command gets a 520 usage
        block; ``reply_delay_s``: each reply comes late (to see whether the server waits);
        ``disconnect_after=K``: Asterisk drops the connection after K replies (0: no reply);
        ``caller``: what the caller types at GET DATA (see ``Caller``)."""
        call = call or AgiCall()
        self._caller = caller or Caller()
        self._keys = list(self._caller.keys)
        self._hangup_pending = False
        result = AgiResult()
        values = {"CALLERID(num)": call.callerid, "CHANNEL": call.channel}
        started = time.perf_counter()
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            async with asyncio.timeout(timeout_s):
                head, tail = header_block(call, self.host, self.port)
                writer.write(head)
                await writer.drain()
                writer.write(tail)
                if hangup_after == 0:
                    writer.write(HANGUP)
                    result.hangup_sent = True
                await writer.drain()
                while True:
                    if disconnect_after is not None and len(result.replies) >= disconnect_after:
                        return result  # Asterisk goes away mid-session
                    raw = await reader.readline()
                    if not raw:
                        result.closed = True
                        result.elapsed_s = time.perf_counter() - started
                        writer.write(HANGUP)  # Asterisk's answer to the server's close
                        await writer.drain()
                        return result
                    line = raw.decode().rstrip("\n")
                    result.commands.append(line)
                    if reply_delay_s:
                        await asyncio.sleep(reply_delay_s)
                        if b"\n" in getattr(reader, "_buffer", b""):
                            result.ahead += 1
                    await self._answer(writer, line, result, values, usage_first)
                    if hangup_after is not None and len(result.replies) == hangup_after:
                        writer.write(HANGUP)
                        result.hangup_sent = True
                    await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _answer(
        self,
        writer: asyncio.StreamWriter,
        line: str,
        result: AgiResult,
        values: dict[str, str],
        usage_first: bool,
    ) -> None:
        argv = parse_args(line)
        if self._hangup_pending:  # the caller hung up during a GET DATA: Asterisk says so now
            self._hangup_pending = False
            result.hangup_sent = True
            writer.write(HANGUP)
        low = tuple(a.lower() for a in argv)
        words, dead_ok = next(((w, d) for w, d in COMMANDS if low[: len(w)] == w), ((), True))
        usage: tuple[str, ...] | None = None
        if usage_first and len(result.commands) == 1:
            usage = ("set", "variable")
        elif not words:
            reply = INVALID
        elif result.hangup_sent and not dead_ok:
            reply = DEAD
        elif words == ("set", "variable"):
            if len(argv) != 4:
                usage = words
            else:
                result.variables[argv[2]] = values[argv[2]] = argv[3]
                reply = b"200 result=1\n"
        elif words == ("get", "variable"):
            if len(argv) != 3:
                usage = words
            else:
                value = values.get(argv[2])
                reply = b"200 result=0\n" if value is None else f"200 result=1 ({value})\n".encode()
        elif words == ("get", "data"):
            if len(argv) < 3:
                usage = words
            elif not self._caller.has(argv[2]) and argv[2]:
                reply = b"200 result=-1\n"  # ast_streamfile failed: as a hang-up
            else:
                keys = self._keys.pop(0) if self._keys else ""
                max_digits = int(argv[4]) if len(argv) > 4 else 1024
                if self._caller.typing_s:
                    await asyncio.sleep(self._caller.typing_s)
                reply = get_data_reply(keys, max_digits)
                if keys is HANGS_UP:
                    self._hangup_pending = True
        elif words == ("stream", "file"):
            if len(argv) < 4:
                usage = words
            elif self._caller.has(argv[2]):
                result.said.append(argv[2])
                reply = b"200 result=0 endpos=8000\n"
            else:
                reply = b"200 result=-1 endpos=0\n"
        elif words in (("say", "digits"), ("say", "alpha")):
            if len(argv) < 4:
                usage = words
            else:
                result.said.append(argv[2])
                reply = b"200 result=0\n"
        elif words == ("verbose",) or words == ("hangup",):
            reply = b"200 result=1\n"
        else:
            reply = b"200 result=0\n"
        if usage is not None:
            result.replies.append("520")
            writer.write(USAGE_HEAD)
            await writer.drain()
            await asyncio.sleep(USAGE_PAUSE_S)
            writer.write(USAGE_TEXT.get(usage, b"(usage)\n") + USAGE_TAIL)
        else:
            result.replies.append(reply[:3].decode())
            writer.write(reply)
