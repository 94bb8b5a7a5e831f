"""The AMI wire format: an incremental parser for raw bytes and the action serialiser.

AMI messages are blocks of ``Header: value`` lines separated by an empty line. Asterisk sends
CRLF, but LF-only peers exist, so line ends are normalised to LF before splitting. The parser
works on whole lines only, so a UTF-8 character split across two reads is decoded once both
halves have arrived. It never raises on what it is fed.

What it holds is bounded, whatever the peer sends: a line longer than ``max_line`` bytes is cut
there (the rest, up to its end, is dropped unread: a 1 MB caller ID is kept as its first 4 KB,
never buffered whole), and a block that grows past ``max_block`` bytes without its blank line
is dropped. Both are counted in ``stats()``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, fields
from itertools import repeat

BANNER_PREFIX = b"Asterisk Call Manager/"
MALFORMED_KEY = "__malformed__"
_SEP = repeat(": ")
_ONE = repeat(1)
# Asterisk's longest real lines are Dial strings and channel variables, well under 4 KB.
MAX_LINE = 4096
MAX_BLOCK = 1 << 20


@dataclass
class WireStats:
    """What was refused or repaired on the wire (``/metrics``: ``cti_ami_malformed_total``)."""

    malformed_lines: int = 0  # no "Key: value" (kept under ``__malformed__``)
    lines_cut: int = 0  # longer than ``max_line``: cut
    blocks_dropped: int = 0  # longer than ``max_block`` without an end: dropped
    unroutable: int = 0  # neither Event nor Response, nor an answer awaited (the protocol)

    def __add__(self, other: WireStats) -> WireStats:
        return WireStats(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


class AmiParser:
    """Feed it bytes as they arrive; it returns the complete messages, in order.

    Repeated headers (``Output:``, ``Variable:``) keep every value, joined with ``"\\n"``
    (a header value cannot contain a newline, so this loses nothing). A line without a colon is
    kept under ``"__malformed__"`` and counted in ``malformed``.

    ``skip_events`` names events dropped unparsed (e.g. ``{"VarSet", "Newexten"}``, two thirds
    of a busy PBX's traffic, when the AMI filter could not be set); ``skipped`` counts them.
    """

    __slots__ = (
        "_buf",
        "_discarding",
        "_half",
        "_max_block",
        "_max_line",
        "_raw",
        "_skip",
        "_start",
        "banner",
        "blocks_dropped",
        "lines_cut",
        "malformed",
        "skipped",
    )

    def __init__(
        self,
        *,
        skip_events: Collection[str] = (),
        max_line: int = MAX_LINE,
        max_block: int = MAX_BLOCK,
    ) -> None:
        self._skip = frozenset(skip_events)
        self._max_line = max(16, max_line)
        self._half = self._max_line // 2
        self._max_block = max(self._max_line, max_block)
        self._discarding = False  # dropping the rest of a line already cut
        self.lines_cut = 0
        self.blocks_dropped = 0
        self.skipped = 0
        self._raw = b""  # bytes after the last LF seen: a partial line, never decoded yet
        self._buf = b""  # complete lines (LF-only) of the message not finished yet
        self._start = True  # nothing but possibly the banner seen so far
        self.banner: str | None = None
        self.malformed = 0

    def feed(self, data: bytes) -> list[dict[str, str]]:
        if self._discarding:
            nl = data.find(b"\n")
            if nl < 0:
                return []
            self._discarding = False
            data = data[nl:]
        raw = self._raw + data if self._raw else data
        cut = raw.rfind(b"\n")
        if cut < 0:
            self._raw = self._bounded_tail(raw)
            return []
        self._raw = self._bounded_tail(raw[cut + 1 :])
        lines = raw[: cut + 1]
        if len(lines) > self._max_line and self._has_long_line(lines):
            lines = self._cut_lines(lines)
        if b"\r" in lines:
            lines = lines.replace(b"\r\n", b"\n")
        buf = self._buf + lines if self._buf else lines
        if self._start:
            buf = self._take_banner(buf)
        end = buf.rfind(b"\n\n")
        if end < 0:
            if len(buf) > self._max_block:
                self.blocks_dropped += 1
                buf = b""
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

    def _bounded_tail(self, tail: bytes) -> bytes:
        """The unfinished line, cut at ``max_line`` (its rest is then dropped as it arrives)."""
        if len(tail) <= self._max_line:
            return tail
        self.lines_cut += 1
        self._discarding = True
        return tail[: self._max_line]

    def _has_long_line(self, chunk: bytes) -> bool:
        """Whether a line of ``chunk`` is longer than ``max_line``: a line that long covers a
        whole aligned window of ``max_line // 2`` bytes, so a newline in every such window
        proves there is none (a few ``find`` calls per read instead of one per line)."""
        half, find = self._half, chunk.find
        for start in range(0, len(chunk) - half + 1, half):
            if find(b"\n", start, start + half) < 0:
                return True
        return False

    def _cut_lines(self, chunk: bytes) -> bytes:
        limit = self._max_line
        out = []
        for line in chunk.split(b"\n"):
            if len(line) > limit:
                self.lines_cut += 1
                cr = line.endswith(b"\r")
                line = line[:limit] + (b"\r" if cr else b"")
            out.append(line)
        return b"\n".join(out)

    def stats(self) -> WireStats:
        return WireStats(self.malformed, self.lines_cut, self.blocks_dropped)

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
