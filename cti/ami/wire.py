"""The AMI wire format: an incremental parser for raw bytes and the action serialiser.

AMI messages are blocks of ``Header: value`` lines separated by an empty line. Asterisk sends
CRLF, but LF-only peers exist, so line ends are normalised to LF before splitting. The parser
works on whole lines only, so a UTF-8 character split across two reads is decoded once both
halves have arrived. It never raises on what it is fed.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from itertools import repeat

BANNER_PREFIX = b"Asterisk Call Manager/"
MALFORMED_KEY = "__malformed__"
_SEP = repeat(": ")
_ONE = repeat(1)


class AmiParser:
    """Feed it bytes as they arrive; it returns the complete messages, in order.

    Repeated headers (``Output:``, ``Variable:``) keep every value, joined with ``"\\n"``
    (a header value cannot contain a newline, so this loses nothing). A line without a colon is
    kept under ``"__malformed__"`` and counted in ``malformed``.

    ``skip_events`` names events dropped unparsed (e.g. ``{"VarSet", "Newexten"}``, two thirds
    of a busy PBX's traffic, when the AMI filter could not be set); ``skipped`` counts them.
    """

    __slots__ = ("_buf", "_raw", "_skip", "_start", "banner", "malformed", "skipped")

    def __init__(self, *, skip_events: Collection[str] = ()) -> None:
        self._skip = frozenset(skip_events)
        self.skipped = 0
        self._raw = b""  # bytes after the last LF seen: a partial line, never decoded yet
        self._buf = b""  # complete lines (LF-only) of the message not finished yet
        self._start = True  # nothing but possibly the banner seen so far
        self.banner: str | None = None
        self.malformed = 0

    def feed(self, data: bytes) -> list[dict[str, str]]:
        raw = self._raw + data if self._raw else data
        cut = raw.rfind(b"\n")
        if cut < 0:
            self._raw = raw
            return []
        self._raw = raw[cut + 1 :]
        lines = raw[: cut + 1]
        if b"\r" in lines:
            lines = lines.replace(b"\r\n", b"\n")
        buf = self._buf + lines if self._buf else lines
        if self._start:
            buf = self._take_banner(buf)
        end = buf.rfind(b"\n\n")
        if end < 0:
            self._buf = buf
            return []
        self._buf = buf[end + 2 :]
        out: list[dict[str, str]] = []
        append = out.append
        split = str.split
        skip = self._skip
        for block in buf[:end].decode("utf-8", "replace").split("\n\n"):
            if not block:
                continue
            if skip and block.startswith("Event: "):
                nl = block.find("\n")
                if (block[7:nl] if nl > 0 else block[7:]) in skip:
                    self.skipped += 1
                    continue
            lines_ = block.split("\n")
            try:
                # Fast path, all in C: every line "Key: value", no header repeated.
                msg = dict(map(split, lines_, _SEP, _ONE))
            except ValueError:
                msg = self._parse_lines(lines_)
            else:
                if len(msg) != len(lines_):
                    msg = self._parse_lines(lines_)
            if msg:
                append(msg)
        return out

    def _take_banner(self, buf: bytes) -> bytes:
        stripped = buf.lstrip(b"\n")
        if not stripped:
            return buf
        if stripped.startswith(BANNER_PREFIX):
            line, nl, rest = stripped.partition(b"\n")
            if not nl:
                return buf  # the banner line is not complete yet
            self.banner = line.decode("utf-8", "replace").strip()
            stripped = rest
        self._start = False
        return stripped

    def _parse_lines(self, lines: list[str]) -> dict[str, str]:
        msg: dict[str, str] = {}
        for line in lines:
            key, sep, value = line.partition(": ")
            if not sep:
                if line.endswith(":") and " " not in line:  # "Key:" with an empty value
                    key, value = line[:-1], ""
                elif not line.strip():
                    continue
                else:
                    self.malformed += 1
                    key, value = MALFORMED_KEY, line
            if key in msg:
                msg[key] = f"{msg[key]}\n{value}"
            else:
                msg[key] = value
        return msg

    @property
    def pending(self) -> int:
        """Bytes held for a message not yet complete."""
        return len(self._raw) + len(self._buf)


def serialise_action(fields: Mapping[str, str]) -> bytes:
    """One AMI action as wire bytes.

    A value with ``"\\n"`` in it becomes one header per line (``Variable: a=1`` then
    ``Variable: b=2``), the inverse of how the parser joins repeated headers. A carriage return
    anywhere, or a line break or colon in a name, would let a value inject headers: refused.
    """
    parts = []
    for key, value in fields.items():
        text = str(value)
        if not key or "\n" in key or "\r" in key or ":" in key or "\r" in text:
            raise ValueError(f"AMI action field {key!r}: line breaks and colons are not allowed")
        for line in text.split("\n"):
            parts.append(f"{key}: {line}\r\n")
    parts.append("\r\n")
    return "".join(parts).encode("utf-8")
