"""Reading a CSV file as spreadsheets write it (RFC 4180), one bad row at a time.

The whole file is decoded at once: UTF-8 (a byte-order mark is dropped); a byte that is not
UTF-8 is read as Windows-1252 (Latin-1 for the five bytes it leaves undefined), with a warning
naming its line, so that one stray byte never stops an import half-way, and one row pasted in
from an old Windows file does not turn the UTF-8 names of every other row into mojibake. A
file with no UTF-8 beyond ASCII is thus read as Windows-1252 as a whole.

Records are parsed by the ``csv`` module's standard dialect (``"`` quotes, ``""`` for a quote
inside a field, fields may span lines); the only thing detected is the delimiter, from the
header: the first of ``,`` ``;`` and tab under which the header names every required column
(Excel in many European locales writes ``;``).
A record the parser refuses (a field over ``MAX_FIELD`` characters...) comes out as a
``BadRecord`` with its line and the reason, and reading goes on with the next line; so does a
record whose quoted field is never closed (the parser would put the rest of the file in it),
and the lines after it are read as records of their own.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

# The csv module's own limit (131,072 characters); a longer field is a bad row, not a crash.
MAX_FIELD = csv.field_size_limit()
DELIMITERS = (",", ";", "\t")


class CsvFileError(Exception):
    """The file cannot be read at all (missing, unreadable, empty)."""


@dataclass(frozen=True)
class Decoded:
    text: str
    encoding: str
    warning: str | None = None


@dataclass(frozen=True)
class Record:
    line: int  # the physical line the record starts on (1 is the header)
    cells: list[str]


@dataclass(frozen=True)
class BadRecord:
    line: int
    reason: str


def _byte_as_cp1252(byte: int) -> str:
    try:
        return bytes([byte]).decode("cp1252")
    except UnicodeDecodeError:
        return chr(byte)  # Latin-1: 0x81, 0x8d, 0x8f, 0x90, 0x9d


# "surrogateescape" keeps each byte that is not UTF-8 as U+DC80..U+DCFF: back to cp1252.
_ESCAPED = re.compile(r"[\udc80-\udcff]")
_AS_CP1252 = {0xDC00 + byte: _byte_as_cp1252(byte) for byte in range(0x80, 0x100)}


def decode(data: bytes) -> Decoded:
    """The file's text: UTF-8 (with or without BOM), each byte that is not UTF-8 read as
    cp1252 (Latin-1 where cp1252 has none), with a warning."""
    try:
        return Decoded(data.decode("utf-8-sig"), "utf-8")
    except UnicodeDecodeError:
        pass
    text = data.decode("utf-8-sig", errors="surrogateescape")
    bad = [m.start() for m in _ESCAPED.finditer(text)]
    lines: list[int] = []  # the lines of the bad bytes, counted in one pass
    line, counted_to = 1, 0
    for at in bad:
        line += text.count("\n", counted_to, at)
        counted_to = at
        if not lines or lines[-1] != line:
            lines.append(line)
    first = f"byte 0x{ord(text[bad[0]]) - 0xDC00:02x} on line {lines[0]}"
    no_utf8 = len(text) - len(text.encode("ascii", "ignore")) == len(bad)  # beyond ASCII
    text = text.translate(_AS_CP1252)
    if no_utf8:
        return Decoded(text, "cp1252", f"not UTF-8 ({first}): the whole file was read as cp1252")
    shown = ", ".join(map(str, lines[:10])) + (", ..." if len(lines) > 10 else "")
    warning = (
        f"not all UTF-8 ({first}): {len(bad)} byte(s) on line(s) {shown} were read as "
        "cp1252, the rest of the file as UTF-8"
    )
    return Decoded(text, "utf-8", warning)


def read_text(source: str | Path | TextIO) -> Decoded:
    if isinstance(source, str | Path):
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise CsvFileError(f"{source}: cannot read: {exc.strerror or exc}") from exc
        return decode(data)
    try:
        text = source.read()
    except UnicodeDecodeError as exc:
        raise CsvFileError(f"not {exc.encoding} text ({exc.reason})") from exc
    return Decoded(text.removeprefix("\ufeff"), getattr(source, "encoding", None) or "text")


def _fields(line: str, delimiter: str) -> list[str]:
    try:
        return next(csv.reader([line], delimiter=delimiter), [])
    except csv.Error:
        return []


def detect_delimiter(header: str, required: Sequence[str], key: Callable[[str], str]) -> str:
    """The delimiter under which ``header`` names all ``required`` columns (as ``key`` spells
    a column name), ``,`` when none does."""
    for delimiter in DELIMITERS:
        names = {key(f) for f in _fields(header, delimiter)}
        if all(r in names for r in required):
            return delimiter
    return ","


_END = "\x00cti:end-of-file\x00"  # after the text: a field still open at the end takes it in


def records(text: str, delimiter: str, first_line: int = 1) -> Iterator[Record | BadRecord]:
    """Every record after parsing (the header included, on line 1); blank lines are skipped."""
    source = io.StringIO(text + "\n" + _END, newline="")
    end = len(text) + 1 + len(_END)  # a record read to here took the end in, or is it
    reader = csv.reader(source, delimiter=delimiter, strict=False)
    done = first_line - 1  # physical lines consumed so far
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield BadRecord(done + 1, f"unreadable CSV: {exc}")
            done = first_line - 1 + reader.line_num
            continue
        start, done = done + 1, first_line - 1 + reader.line_num
        if source.tell() == end and cells and cells[-1].endswith(_END):
            if cells == [_END]:
                return
            rest = io.StringIO(text, newline="").readlines()[start - first_line + 1 :]
            yield BadRecord(
                start,
                "a quoted field is never closed (its quote would take in the rest of the "
                f"file); the {len(rest)} line(s) after it are read on their own",
            )
            yield from records("".join(rest), delimiter, start + 1)
            return
        if cells:
            yield Record(start, cells)
