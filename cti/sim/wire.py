"""AMI framing: ``Header: value`` lines ending in CRLF, a blank line after each message."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

Headers = list[tuple[str, str]]

BANNER = b"Asterisk Call Manager/11.0.0\r\n"
MAX_MESSAGE_BYTES = 64 * 1024


def encode(headers: Headers) -> bytes:
    """One AMI message; values never contain line breaks (they are replaced by spaces)."""
    body = "\r\n".join([f"{name}: {value}" for name, value in headers])
    breaks = len(headers) - 1
    if body.count("\n") != breaks or body.count("\r") != breaks:  # a value has a line break
        body = "\r\n".join([f"{name}: {_one_line(value)}" for name, value in headers])
    return f"{body}\r\n\r\n".encode()


def _one_line(value: str) -> str:
    return value.replace("\r", " ").replace("\n", " ")


@dataclass
class Action:
    """An action read from a client. Header names are matched case-insensitively."""

    headers: Headers = field(default_factory=list)

    def get(self, name: str, default: str = "") -> str:
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        wanted = name.lower()
        return [value for key, value in self.headers if key.lower() == wanted]

    @property
    def name(self) -> str:
        return self.get("Action")

    @property
    def action_id(self) -> str:
        return self.get("ActionID")


class FramingError(Exception):
    """The peer sent something that is not AMI (e.g. a message larger than allowed)."""


async def read_action(reader: asyncio.StreamReader) -> Action | None:
    """Read one message (LF or CRLF line ends); ``None`` at EOF."""
    headers: Headers = []
    size = 0
    while True:
        line = await reader.readline()
        if not line:
            return None
        size += len(line)
        if size > MAX_MESSAGE_BYTES:
            raise FramingError("message too large")
        text = line.decode("utf-8", "replace").rstrip("\r\n")
        if not text:
            if headers:
                return Action(headers)
            continue  # stray blank lines between messages
        name, sep, value = text.partition(":")
        if sep:
            headers.append((name.strip(), value.strip()))
