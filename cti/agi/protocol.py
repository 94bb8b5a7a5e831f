"""The FastAGI wire, as Asterisk 22 speaks it (see the agi_*.agi-session recordings).

Asterisk sends ``agi_key: value`` lines (LF only; CRLF tolerated here) up to an empty line, then
answers each command line with one reply line: ``200 result=1``, ``200 result=1 (value)``,
``510 Invalid or unknown command``, ``511 Command Not Permitted on a dead channel...``, or a
multi-line usage block from ``520-...`` to a line starting ``520 ``. When the caller hangs up it
writes ``HANGUP`` unprompted, between replies, and again after the server closes its side.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

MAX_LINES = 200  # header lines, or lines of one reply: more is not Asterisk
MAX_VALUE = 900  # bytes: even fully escaped, a command stays within Asterisk's 2048-byte buffer
_REPLY = re.compile(r"^(\d{3})(?: (.*))?$")
_RESULT = re.compile(r"result=(-?\d+)(?: \((.*)\))?")
# GET DATA (res_agi.c handle_getdata): "result=<digits>", "result=<digits> (timeout)",
# "result=" ('#' alone), "result=-1" (hang-up, or a prompt that does not exist).
_GET_DATA = re.compile(r"^result=(-1|[0-9*#A-D]*)( \(timeout\))?$")


class AgiError(Exception):
    """The peer is not speaking AGI (garbage header, unreadable reply)."""


class AgiClosed(AgiError):
    """The peer closed the connection (EOF), possibly mid-line."""


@dataclass(frozen=True)
class Reply:
    code: int
    text: str  # the last line after the code, e.g. "result=1 (value)"
    usage: tuple[str, ...] = ()  # the lines of a 520 usage block

    @property
    def ok(self) -> bool:
        return self.code == 200

    @property
    def result(self) -> str | None:
        match = _RESULT.match(self.text)
        return match.group(1) if match else None

    @property
    def value(self) -> str | None:
        """The value in parentheses of ``200 result=1 (value)``."""
        match = _RESULT.match(self.text)
        return match.group(2) if match else None


@dataclass(frozen=True)
class Typed:
    """What the caller typed at a GET DATA: ``failed`` is ``result=-1`` (hung up, or the prompt
    could not be played: the reply is the same, see ivr_missing.agi-session)."""

    digits: str
    timed_out: bool = False
    failed: bool = False

    @classmethod
    def of(cls, reply: Reply) -> Typed:
        match = _GET_DATA.match(reply.text) if reply.code == 200 else None
        if match is None or match.group(1) == "-1":
            return cls("", failed=True)
        return cls(match.group(1), timed_out=bool(match.group(2)))


async def _line(reader: asyncio.StreamReader) -> str:
    try:
        raw = await reader.readline()
    except ValueError as exc:  # over the stream's line limit
        raise AgiError("line too long") from exc
    if not raw.endswith(b"\n"):
        raise AgiClosed("connection closed" + (" mid-line" if raw else ""))
    return raw.decode("utf-8", "replace").rstrip("\r\n")


async def read_environment(reader: asyncio.StreamReader) -> dict[str, str]:
    """The ``agi_*`` header block; ``AgiClosed`` on EOF (bare connect), ``AgiError`` on garbage."""
    env: dict[str, str] = {}
    for _ in range(MAX_LINES):
        line = await _line(reader)
        if not line:
            if not env:
                raise AgiError("empty header block")
            return env
        key, sep, value = line.partition(":")
        if not sep or not key.startswith("agi_") or not key.isprintable() or " " in key:
            raise AgiError(f"not an AGI header line: {line[:40]!r}")
        env[key] = value.strip()
    raise AgiError(f"header block longer than {MAX_LINES} lines")


def quote(value: str) -> str:
    """One AGI argument: bare when safe, else double-quoted with ``\\`` escapes (as parse_args)."""
    value = value.replace("\r", " ").replace("\n", " ")
    if value and not any(c in value for c in ' \t"\\'):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def set_variable(name: str, value: str) -> bytes:
    """``SET VARIABLE name value``; the value is cut so that the line fits Asterisk's buffer."""
    value = value.encode()[:MAX_VALUE].decode("utf-8", "ignore")
    return f"SET VARIABLE {name} {quote(value)}\n".encode()


def get_data(prompt: str, timeout_ms: int, max_digits: int) -> bytes:
    """``GET DATA prompt timeout max``: play the prompt, collect digits up to ``#``, ``max`` or
    a pause of ``timeout`` ms (before the first digit and between digits alike)."""
    return f"GET DATA {quote(prompt)} {timeout_ms} {max_digits}\n".encode()


def say_alpha(text: str) -> bytes:
    """``SAY ALPHA text ""``: spelt with Asterisk's core ``letters/`` and ``digits/`` sounds."""
    return f'SAY ALPHA {quote(text)} ""\n'.encode()


def say_digits(digits: str) -> bytes:
    return f'SAY DIGITS {quote(digits)} ""\n'.encode()


def stream_file(name: str) -> bytes:
    return f'STREAM FILE {quote(name)} ""\n'.encode()


class AgiChannel:
    """Commands and their replies over one FastAGI connection; notes HANGUP notices."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self.hung_up = False  # Asterisk said HANGUP: the caller is gone (dead-channel mode)
        self.dead = False  # a command got 511

    async def command(self, line: bytes) -> Reply:
        # No drain: one short line at a time, each answered before the next, never fills the
        # transport's buffer (the reply read is the flow control).
        self._writer.write(line)
        return await self.read_reply()

    async def read_reply(self) -> Reply:
        """The next reply, skipping HANGUP notices; a 520 usage block is read to its end."""
        for _ in range(MAX_LINES):
            line = await _line(self._reader)
            if line == "HANGUP":
                self.hung_up = True
                continue
            if line.startswith("520-"):
                usage = [line[4:]]
                for _ in range(MAX_LINES):
                    line = await _line(self._reader)
                    if line.startswith("520 "):
                        return Reply(520, line[4:], tuple(usage))
                    usage.append(line)
                raise AgiError("520 usage block without its end line")
            match = _REPLY.match(line)
            if not match:
                raise AgiError(f"not an AGI reply: {line[:40]!r}")
            code = int(match.group(1))
            if code == 511:
                self.dead = True
            return Reply(code, match.group(2) or "")
        raise AgiError("too many HANGUP lines")
