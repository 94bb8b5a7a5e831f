"""The rows of an import file: its columns, and each row's values checked against the schema.

``Columns.of(header)`` says which column holds what (and which phone kinds each phone column
stands for); ``parse_row`` returns only what a row sets (a field absent from it stays as
stored) or raises ``InvalidCustomer`` with the reason. No I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from crm_core.customer_batch import FIELDS
from crm_core.errors import CrmError, InvalidCustomer
from crm_core.models import FLAGS, PHONE_KINDS, Customer, PhoneNumber

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
KINDS = {"person": "person", "organisation": "organisation", "organization": "organisation",
         "company": "organisation"}  # fmt: skip
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_NUMBERS_SPLIT = re.compile(r"[;|]")  # several numbers in one cell
# Each text column's size in the schema: a longer value is a rejected row, not a database error.
_LIMITS: dict[str, int] = {
    name: length
    for name in (*FIELDS, "external_id")
    if (length := getattr(Customer.__table__.c[name].type, "length", None))
}
_NUMBER_LIMIT: int = PhoneNumber.__table__.c["number"].type.length  # type: ignore[attr-defined]
ANY_KIND = "*"


class ImportFileError(CrmError):
    """The file as a whole cannot be imported (unreadable, no header, required column missing)."""


@dataclass(frozen=True)
class ImportOptions:
    clear_empty: bool = False  # an empty cell clears the field (otherwise it leaves it)
    clear_do_not_call: bool = False  # a file may clear do_not_call (otherwise it is kept)
    dry_run: bool = False  # report what would change, write nothing


@dataclass(frozen=True)
class PhoneColumn:
    index: int
    header: str
    kind: str  # the kind its numbers are stored with
    scope: str  # the kind it stands for, or ANY_KIND


@dataclass(frozen=True)
class Columns:
    width: int
    index: dict[str, int]  # known column -> position
    phones: list[PhoneColumn]
    covers: dict[str, frozenset[str]]  # phone scope -> the kinds its numbers replace
    unknown: list[str]


@dataclass
class Row:
    """One valid row: only what it sets (a field absent here stays as stored)."""

    line: int
    external_id: str
    fields: dict[str, str | None]
    flags: set[str] | None
    phones: dict[str, list[tuple[PhoneColumn, str]]]  # scope -> (column, number as typed)


def column_key(header: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", header.strip().lower()).strip("_")


def _phone_kind(column: str) -> str:
    for word, kind in (("mobile", "mobile"), ("cell", "mobile"), ("home", "home"),
                       ("work", "work"), ("office", "work")):  # fmt: skip
        if word in column:
            return kind
    return "other"


def _flags(text: str) -> set[str]:
    flags = set()
    for raw in re.split(r"[;,|]", text):
        flag = column_key(raw)
        if not flag:
            continue
        flag = FLAG_ALIASES.get(flag, flag)
        if flag not in FLAGS:
            raise InvalidCustomer(f"unknown flag {raw.strip()!r} (known: {', '.join(FLAGS)})")
        flags.add(flag)
    return flags


def columns_of(headers: list[str], name: str) -> Columns:
    keys = [column_key(h) for h in headers]
    missing = [c for c in REQUIRED_COLUMNS if c not in keys]
    if missing:
        raise ImportFileError(
            f"{name}: missing required column(s) {', '.join(missing)} "
            f"(header: {', '.join(headers) or 'none'})"
        )
    index: dict[str, int] = {}
    phones: list[PhoneColumn] = []
    unknown: list[str] = []
    for i, (header, key) in enumerate(zip(headers, keys, strict=True)):
        if key.startswith("phone"):
            kind = _phone_kind(key)
            typed = kind != "other" or "other" in key
            phones.append(PhoneColumn(i, header, kind, kind if typed else ANY_KIND))
        elif key in KNOWN_COLUMNS:
            if key in index:
                raise ImportFileError(f"{name}: column {header!r} appears twice")
            index[key] = i
        else:
            unknown.append(header)
    typed_kinds = {c.scope for c in phones if c.scope != ANY_KIND}
    covers = {scope: frozenset({scope}) for scope in typed_kinds}
    if any(c.scope == ANY_KIND for c in phones):
        covers[ANY_KIND] = frozenset(PHONE_KINDS) - typed_kinds
    return Columns(len(headers), index, phones, covers, unknown)


_OPTIONAL_FIELDS = ("kind", "organisation", "email", "address", "language")


def parse_row(line: int, cells: list[str], cols: Columns, options: ImportOptions) -> Row:
    """The row's values, validated; raises ``InvalidCustomer`` with the reason."""
    width = len(cells)
    if width > cols.width:
        raise InvalidCustomer(f"more fields than the header's {cols.width}")
    if "\x00" in "".join(cells):
        at = next(i for i, text in enumerate(cells, 1) if "\x00" in text)
        raise InvalidCustomer(f"a NUL character (\\u0000) in column {at}")
    index = cols.index

    def cell(key: str) -> str | None:
        """The stripped cell; None when the column is absent (or the row is short)."""
        i = index.get(key)
        return cells[i].strip() if i is not None and i < width else None

    external_id = cell("external_id")
    if not external_id:
        raise InvalidCustomer("missing external_id")
    name = cell("name")
    if not name:
        raise InvalidCustomer("missing name")
    fields: dict[str, str | None] = {"name": name}
    for key in _OPTIONAL_FIELDS:
        i = index.get(key)
        if i is None or i >= width:
            continue  # the column is absent (or the row is short)
        stripped = cells[i].strip()
        if stripped:
            fields[key] = stripped
        elif options.clear_empty:
            fields[key] = "person" if key == "kind" else None
    for key, value in (*fields.items(), ("external_id", external_id)):
        limit = _LIMITS.get(key)
        if value and limit and len(value) > limit:
            raise InvalidCustomer(f"{key} longer than {limit} characters")
    if fields.get("kind"):
        kind = KINDS.get(str(fields["kind"]).lower())
        if kind is None:
            raise InvalidCustomer(f"kind must be person or organisation, not {fields['kind']!r}")
        fields["kind"] = kind
    email = fields.get("email")
    if email and not _EMAIL.fullmatch(email):
        raise InvalidCustomer(f"invalid email {email!r}")
    flags_cell = cell("flags")
    flags = None
    if flags_cell or (flags_cell is not None and options.clear_empty):
        flags = _flags(flags_cell)
    phones: dict[str, list[tuple[PhoneColumn, str]]] = {}
    present: set[str] = set()
    for column in cols.phones:
        if column.index >= width:
            continue
        present.add(column.scope)
        text = cells[column.index]
        for value in _NUMBERS_SPLIT.split(text) if ";" in text or "|" in text else (text,):
            number = value.strip()
            if not number:
                continue
            if len(number) > _NUMBER_LIMIT:
                raise InvalidCustomer(
                    f"{column.header}: value longer than {_NUMBER_LIMIT} characters"
                )
            phones.setdefault(column.scope, []).append((column, number))
    if options.clear_empty:
        for scope in present:
            phones.setdefault(scope, [])
    return Row(line, external_id, fields, flags, phones)


def external_id_of(cells: list[str], cols: Columns) -> str | None:
    i = cols.index["external_id"]
    value = cells[i].strip() if i < len(cells) else ""
    return value[:64] or None
