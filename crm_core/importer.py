"""CSV import of customers with a data-quality report.

Columns, in any order (header names are case-insensitive): ``external_id`` and ``name``
(required), any number of columns whose names start with ``phone`` (``phone``, ``phone_mobile``,
``Phone (work)``...), ``email``, ``flags`` (``vip;hearing_impaired``), and optionally ``kind``,
``organisation``, ``address``, ``language``. Other columns are reported, not fatal.

Each row is written in its own transaction: a bad row is rejected with its reason and never
aborts the import nor half-writes a customer. Rows are keyed on ``external_id``: importing the
same file again updates the customers instead of duplicating them.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from crm_core.errors import CrmError, InvalidCustomer
from crm_core.models import FLAGS
from crm_core.phone import normalise
from crm_core.store import CrmStore, PhoneInput
from crm_core.types import Candidate

KNOWN_COLUMNS = ("external_id", "name", "email", "flags", "kind", "organisation", "address",
                 "language")  # fmt: skip
REQUIRED_COLUMNS = ("external_id", "name")
FLAG_ALIASES = {
    "hearing": "hearing_impaired",
    "deaf": "hearing_impaired",
    "wheelchair": "wheelchair_user",
    "arrears": "payment_arrears",
    "dnc": "do_not_call",
    "marketing": "marketing_opt_in",
    "opt_in": "marketing_opt_in",
}
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_MAX_NAME = 200


class ImportFileError(CrmError):
    """The file as a whole cannot be imported (unreadable, no header, required column missing)."""


@dataclass(frozen=True)
class RejectedRow:
    line: int
    external_id: str | None
    reason: str


@dataclass(frozen=True)
class InvalidNumber:
    line: int
    external_id: str
    column: str
    value: str


@dataclass(frozen=True)
class SharedNumber:
    e164: str
    customers: tuple[Candidate, ...]


@dataclass
class ImportReport:
    rows: int = 0
    created: int = 0
    updated: int = 0
    rejected: list[RejectedRow] = field(default_factory=list)
    invalid_numbers: list[InvalidNumber] = field(default_factory=list)
    duplicates: list[SharedNumber] = field(default_factory=list)
    unknown_columns: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "rejected": [vars(r) for r in self.rejected],
            "invalid_numbers": [vars(n) for n in self.invalid_numbers],
            "duplicates": [
                {"e164": d.e164, "customers": [c.to_dict() for c in d.customers]}
                for d in self.duplicates
            ],
            "unknown_columns": self.unknown_columns,
        }

    def lines(self) -> Iterator[str]:
        """The report for a person, one line each."""
        yield (
            f"{self.rows} rows: {self.created} customers created, {self.updated} updated, "
            f"{len(self.rejected)} rejected"
        )
        if self.unknown_columns:
            yield f"unknown columns (ignored): {', '.join(self.unknown_columns)}"
        for r in self.rejected:
            yield f"line {r.line}: rejected ({r.external_id or 'no external_id'}): {r.reason}"
        for n in self.invalid_numbers:
            yield (
                f"line {n.line}: {n.external_id}: invalid number in {n.column}: {n.value!r} "
                "(kept as entered, not used for caller ID)"
            )
        for d in self.duplicates:
            who = ", ".join(f"{c.external_id or c.customer_id} ({c.name})" for c in d.customers)
            yield f"duplicate: {d.e164} is shared by {len(d.customers)} customers: {who}"


def _column_key(header: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", header.strip().lower()).strip("_")


def _phone_kind(column: str) -> str:
    for word, kind in (("mobile", "mobile"), ("cell", "mobile"), ("home", "home"),
                       ("work", "work"), ("office", "work")):  # fmt: skip
        if word in column:
            return kind
    return "other"


def _flags(text: str) -> list[str]:
    flags = []
    for raw in re.split(r"[;,|]", text):
        flag = _column_key(raw)
        if not flag:
            continue
        flag = FLAG_ALIASES.get(flag, flag)
        if flag not in FLAGS:
            raise InvalidCustomer(f"unknown flag {raw.strip()!r} (known: {', '.join(FLAGS)})")
        flags.append(flag)
    return flags


def _open(source: str | Path | TextIO) -> TextIO:
    if isinstance(source, str | Path):
        try:
            return open(source, encoding="utf-8-sig", newline="")
        except OSError as exc:
            raise ImportFileError(f"{source}: cannot read: {exc.strerror or exc}") from exc
    return source


def _reader(stream: TextIO, name: str) -> csv.DictReader[str]:
    try:
        sample = stream.read(16384)
    except UnicodeDecodeError as exc:
        raise ImportFileError(f"{name}: not UTF-8 text ({exc.reason})") from exc
    if not sample.strip():
        raise ImportFileError(f"{name}: empty file (a header row is needed)")
    try:
        dialect: Any = csv.Sniffer().sniff(sample.splitlines()[0], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    rest = io.StringIO(sample + stream.read())
    return csv.DictReader(rest, dialect=dialect)


async def import_csv(store: CrmStore, source: str | Path | TextIO) -> ImportReport:
    """Import customers from a CSV file (path or open text stream); see the module doc."""
    name = str(source) if isinstance(source, str | Path) else getattr(source, "name", "<csv>")
    stream = _open(source)
    try:
        reader = _reader(stream, name)
    finally:
        if isinstance(source, str | Path):
            stream.close()
    headers = list(reader.fieldnames or [])
    keys = {header: _column_key(header) for header in headers}
    missing = [c for c in REQUIRED_COLUMNS if c not in keys.values()]
    if missing:
        raise ImportFileError(
            f"{name}: missing required column(s) {', '.join(missing)} "
            f"(header: {', '.join(headers) or 'none'})"
        )
    phone_columns = [h for h in headers if keys[h].startswith("phone")]
    report = ImportReport(
        unknown_columns=[
            h for h in headers if keys[h] not in KNOWN_COLUMNS and h not in phone_columns
        ]
    )
    seen: dict[str, int] = {}
    imported_e164: set[str] = set()
    for record in reader:
        line = reader.line_num
        report.rows += 1
        row = {keys[h]: (v or "").strip() for h, v in record.items() if h in keys}
        external_id = row.get("external_id") or None
        try:
            if None in record:
                raise InvalidCustomer(f"more fields than the header's {len(headers)}")
            if not external_id:
                raise InvalidCustomer("missing external_id")
            if len(external_id) > 64:
                raise InvalidCustomer("external_id longer than 64 characters")
            if external_id in seen:
                raise InvalidCustomer(f"external_id repeated (first on line {seen[external_id]})")
            if not row.get("name"):
                raise InvalidCustomer("missing name")
            if len(row["name"]) > _MAX_NAME:
                raise InvalidCustomer(f"name longer than {_MAX_NAME} characters")
            email = row.get("email") or None
            if email and not _EMAIL.fullmatch(email):
                raise InvalidCustomer(f"invalid email {email!r}")
            flags = _flags(row.get("flags", ""))
            phones: list[PhoneInput] = []
            invalid: list[InvalidNumber] = []
            for column in phone_columns:
                for value in re.split(r"[;|]", record.get(column) or ""):
                    if not value.strip():
                        continue
                    if len(value.strip()) > 64:
                        raise InvalidCustomer(f"{column}: value longer than 64 characters")
                    phones.append(PhoneInput(value.strip(), _phone_kind(keys[column])))
                    number = normalise(value, store.region, store.internal_max_digits)
                    if number.e164 is None:
                        invalid.append(InvalidNumber(line, external_id, column, value.strip()))
                    else:
                        imported_e164.add(number.e164)
            kind = (row.get("kind") or "person").lower()
            result = await store.upsert_customer(
                name=row["name"],
                external_id=external_id,
                phones=phones,
                email=email,
                kind="organisation" if kind in ("organisation", "organization", "company")
                else kind,
                organisation=row.get("organisation") or None,
                address=row.get("address") or None,
                language=row.get("language") or None,
                flags=flags,
            )  # fmt: skip
        except InvalidCustomer as exc:
            report.rejected.append(RejectedRow(line, external_id, str(exc)))
            continue
        seen[external_id] = line
        report.invalid_numbers.extend(invalid)
        if result.created:
            report.created += 1
        else:
            report.updated += 1
    shared = await store.shared_numbers(imported_e164)
    report.duplicates = [SharedNumber(e164, tuple(c)) for e164, c in sorted(shared.items())]
    return report
