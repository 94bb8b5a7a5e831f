"""Reading a CSV file as spreadsheets write it (RFC 4180), one bad row at a time.

The whole file is decoded at once: UTF-8 (a byte-order mark is dropped), or, when any byte is
not UTF-8, Windows-1252 for the whole file (Latin-1 when even that fails) with a warning, so
that one stray byte never stops an import half-way. Records are parsed by the ``csv`` module's
standard dialect (``"`` quotes, ``""`` for a quote inside a field, fields may span lines); the
only thing detected is the delimiter, from the header: the first of ``,`` ``;`` and tab under
which the header names every required column (Excel in many European locales writes ``;``).
A record the parser refuses (a field over ``MAX_FIELD`` characters...) comes out as a
``BadRecord`` with its line and the reason, and reading goes on with the next line.
"""

from __future__ import annotations

import csv
import io
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


def decode(data: bytes) -> Decoded:
    """The file's text: UTF-8 (with or without BOM), else cp1252/Latin-1 with a warning."""
    try:
        return Decoded(data.decode("utf-8-sig"), "utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        where = f"byte 0x{data[exc.start]:02x} on line {line}"
    for encoding in ("cp1252", "latin-1"):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        warning = f"not UTF-8 ({where}): the whole file was read as {encoding}"
        return Decoded(text, encoding, warning)
    raise AssertionError("latin-1 decodes every byte")  # pragma: no cover


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


def records(text: str, delimiter: str) -> Iterator[Record | BadRecord]:
    """Every record after parsing (the header included, on line 1); blank lines are skipped."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=False)
    done = 0  # physical lines consumed so far
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield BadRecord(done + 1, f"unreadable CSV: {exc}")
            done = reader.line_num
            continue
        start, done = done + 1, reader.line_num
        if cells:
            yield Record(start, cells)
