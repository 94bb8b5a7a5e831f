"""CSV import of customers with a data-quality report.

Columns, in any order (header names are case-insensitive): ``external_id`` and ``name``
(required), any number of columns whose names start with ``phone`` (``phone``, ``phone_mobile``,
``Phone (work)``...), ``email``, ``flags`` (``vip;hearing_impaired``), and optionally ``kind``,
``organisation``, ``address``, ``language``. Other columns are reported, not fatal. The file is
read as spreadsheets write it (see ``crm_core.csvfile``).

Rows are keyed on ``external_id``: importing the same file again updates the customers instead
of duplicating them, and changes only what the file says:

- a column the file does not have leaves that field as it is; an empty cell too, unless
  ``clear_empty`` (then it clears the field);
- numbers: a column named for a kind (``phone_mobile``, ``Phone (work)``) stands for the
  customer's numbers of that kind, a plain ``phone`` column for all the other kinds; the
  numbers in those cells replace the customer's numbers of those kinds;
- ``flags`` lists the flags the customer has; ``do_not_call`` is only cleared with
  ``clear_do_not_call`` (otherwise it is kept and the report says so);
- every field changed on an existing customer is in the report; ``dry_run`` writes nothing.

A bad row (unreadable, a NUL character, a value longer than its column, an unknown flag...)
is rejected with its line and reason and never stops the others. Rows are written in batches,
one transaction each; a batch the database refuses is written again row by row, so that only
the row at fault is rejected.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import exc as sa_exc
from tqdm import tqdm

from crm_core import customer_batch
from crm_core.csvfile import BadRecord, CsvFileError, Record, read_text, records
from crm_core.csvfile import detect_delimiter as _detect_delimiter
from crm_core.customer_batch import (
    FIELDS,
    ROW_COLUMNS,
    CustomerWrite,
    StoredCustomer,
    StoredPhone,
)
from crm_core.db import refused_by_database
from crm_core.errors import InvalidCustomer
from crm_core.import_report import (
    FieldChange,
    ImportReport,
    InvalidNumber,
    KeptDoNotCall,
    MergedRow,
    RejectedRow,
    SharedNumber,
)
from crm_core.import_rows import (
    REQUIRED_COLUMNS,
    Columns,
    ImportFileError,
    ImportOptions,
    Row,
    column_key,
    columns_of,
    external_id_of,
    parse_row,
)
from crm_core.models import FLAGS
from crm_core.phone import normalise
from crm_core.store import CrmStore

__all__ = [
    "ImportFileError",
    "ImportOptions",
    "ImportReport",
    "InvalidNumber",
    "RejectedRow",
    "SharedNumber",
    "import_csv",
]

BATCH = 1000
# The collector's young generation while importing: a re-import that changes every row keeps
# a few objects per field change alive for the report, and with CPython's default (700) the
# collector scanned that growing heap over and over: a third of the import's CPU
# (bench/bench_import.py; the README has the figures).
YOUNG_THRESHOLD = 50_000


@dataclass(slots=True)
class _Outcome:
    write: CustomerWrite | None  # None: nothing to write (unchanged)
    changes: list[FieldChange]
    kept_dnc: bool
    invalid: list[InvalidNumber]
    e164s: set[str]  # numbers written or removed
    numbers: set[str]  # the valid numbers in the row


# What a customer the file creates starts from.
_BLANK: dict[str, Any] = {**dict.fromkeys(FIELDS), "kind": "person", **dict.fromkeys(FLAGS, False),
                          "marketing_opt_in_at": None}  # fmt: skip
_REPORTED = frozenset((*FIELDS, *FLAGS))  # the columns whose changes the report lists


class _Planner:
    """Turns valid rows and what is stored into writes and the report's changes."""

    def __init__(self, store: CrmStore, cols: Columns, options: ImportOptions) -> None:
        self.store = store
        self.cols = cols
        self.options = options
        self.now = datetime.now(UTC)
        self._replaced: dict[tuple[str, ...], frozenset[str]] = {}
        self.lines: dict[int, int] = {}  # stored customer id -> the line that named it first

    @staticmethod
    def to_parse(rows: Sequence[Row], stored: dict[str, StoredCustomer]) -> list[str]:
        """The numbers of ``rows`` to normalise: those not stored as typed for the customer."""
        numbers: set[str] = set()
        for row in rows:
            if not row.phones:
                continue
            customer = stored.get(row.external_id)
            known = {p.number for p in customer.phones} if customer else ()
            numbers.update(
                n for entries in row.phones.values() for _, n in entries if n not in known
            )
        return sorted(numbers)

    def replaced(self, scopes: tuple[str, ...]) -> frozenset[str]:
        """The phone kinds that the numbers of columns of ``scopes`` replace."""
        kinds = self._replaced.get(scopes)
        if kinds is None:
            kinds = self._replaced[scopes] = frozenset().union(
                *(self.cols.covers[s] for s in scopes)
            )
        return kinds

    def plan(
        self, row: Row, stored: StoredCustomer | None, parsed: dict[str, str | None]
    ) -> _Outcome:
        before = stored.values if stored else _BLANK  # read, never written
        after = {**before, **row.fields}
        outcome = _Outcome(None, [], False, [], set(), set())
        if row.flags is not None:
            for flag in FLAGS:
                after[flag] = flag in row.flags
            dropped = before["do_not_call"] and not after["do_not_call"]
            if dropped and not self.options.clear_do_not_call:
                after["do_not_call"] = True
                outcome.kept_dnc = True
            if after["marketing_opt_in"] and not before["marketing_opt_in"]:
                after["marketing_opt_in_at"] = self.now
            elif not after["marketing_opt_in"]:
                after["marketing_opt_in_at"] = None
        old_phones = stored.phones if stored else []
        new_phones: list[StoredPhone] | None = None
        if row.phones:
            replaced = self.replaced(tuple(row.phones))
            known = {p.number: p.e164 for p in old_phones}
            new_phones = [p for p in old_phones if p.kind not in replaced]
            for entries in row.phones.values():
                for column, number in entries:
                    # As stored for this customer, or as just parsed.
                    e164 = known[number] if number in known else parsed[number]
                    if e164 is not None:
                        outcome.numbers.add(e164)
                    else:
                        outcome.invalid.append(
                            InvalidNumber(row.line, row.external_id, column.header, number)
                        )
                    new_phones.append(StoredPhone(column.kind, number, e164))
            if _same(old_phones, new_phones):
                new_phones = None
            else:
                outcome.e164s = {p.e164 for p in (*old_phones, *new_phones) if p.e164}
        if stored is None:
            outcome.write = CustomerWrite(row.external_id, None, after, new_phones, rename=True)
            return outcome
        changed = tuple(k for k in ROW_COLUMNS if before[k] != after[k]) if after != before else ()
        changes = [
            FieldChange(row.line, row.external_id, key, before[key], after[key])
            for key in changed
            if key in _REPORTED
        ]
        if new_phones is not None:
            changes.append(
                FieldChange(row.line, row.external_id, "phones",
                            [p.number for p in old_phones], [p.number for p in new_phones])
            )  # fmt: skip
        if changes:
            outcome.write = CustomerWrite(
                row.external_id,
                stored.id,
                after,
                new_phones,
                rename=before["name"] != after["name"]
                or before["organisation"] != after["organisation"],
                changed=changed,
            )
        outcome.changes = changes
        return outcome


def _same(old: Sequence[StoredPhone], new: Sequence[StoredPhone]) -> bool:
    """The same numbers of the same kinds, in any order."""
    if len(old) != len(new):
        return False
    before = [(p.kind, p.number) for p in old]
    after = [(p.kind, p.number) for p in new]
    return before == after or sorted(before) == sorted(after)


async def import_csv(
    store: CrmStore,
    source: str | Path | TextIO,
    options: ImportOptions | None = None,
    *,
    progress: bool = False,
) -> ImportReport:
    """Import customers from a CSV file (path or open text stream); see the module doc."""
    options = options or ImportOptions()
    name = str(source) if isinstance(source, str | Path) else getattr(source, "name", "<csv>")
    try:
        decoded = read_text(source)
    except CsvFileError as exc:
        raise ImportFileError(str(exc)) from exc
    if not decoded.text.strip():
        raise ImportFileError(f"{name}: empty file (a header row is needed)")
    delimiter = _detect_delimiter(decoded.text.split("\n", 1)[0], REQUIRED_COLUMNS, column_key)
    parsed = records(decoded.text, delimiter)
    header = next(parsed)
    if isinstance(header, BadRecord):
        raise ImportFileError(f"{name}: unreadable header: {header.reason}")
    cols = columns_of(header.cells, name)
    report = ImportReport(
        unknown_columns=cols.unknown, encoding=decoded.encoding, dry_run=options.dry_run
    )
    if decoded.warning:
        report.warnings.append(decoded.warning)
    planner = _Planner(store, cols, options)
    with _fewer_collections():
        return await _import_rows(store, parsed, decoded.text, cols, options, planner, report,
                                  progress)  # fmt: skip


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """Collect the young generation every ``YOUNG_THRESHOLD`` allocations instead of every
    700 while the import runs (the daemon's own setting, ``cti.gctune``); restored after."""
    thresholds = gc.get_threshold()
    gc.set_threshold(max(thresholds[0], YOUNG_THRESHOLD), *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


async def _import_rows(
    store: CrmStore,
    parsed: Iterator[Record | BadRecord],
    text: str,
    cols: Columns,
    options: ImportOptions,
    planner: _Planner,
    report: ImportReport,
    progress: bool,
) -> ImportReport:
    seen: dict[str, int] = {}
    imported_e164: set[str] = set()
    bar = tqdm(total=text.count("\n"), unit="line", file=sys.stderr,
               disable=not progress, desc="importing")  # fmt: skip
    try:
        for batch in _batches(parsed, BATCH):
            rows = _valid_rows(batch, cols, options, seen, report)
            await _import_batch(store, planner, rows, report, imported_e164)
            bar.update(batch[-1].line - bar.n)
    finally:
        bar.close()
    report.rejected.sort(key=lambda r: r.line)
    if not options.dry_run:
        async with store._guard("import"), store.engine.connect() as conn:
            candidates = await customer_batch.shared(conn, sorted(imported_e164))
            await conn.rollback()
        shared = await store.shared_numbers(candidates)
        report.duplicates = [SharedNumber(e164, tuple(c)) for e164, c in sorted(shared.items())]
    return report


def _batches(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _valid_rows(
    batch: list[Record | BadRecord],
    cols: Columns,
    options: ImportOptions,
    seen: dict[str, int],
    report: ImportReport,
) -> list[Row]:
    """The batch's valid rows; the others go to the report with their line and reason."""
    rows: list[Row] = []
    for item in batch:
        report.rows += 1
        if isinstance(item, BadRecord):
            report.rejected.append(RejectedRow(item.line, None, item.reason))
            continue
        try:
            row = parse_row(item.line, item.cells, cols, options)
            if row.external_id in seen:
                raise InvalidCustomer(
                    f"external_id repeated (first on line {seen[row.external_id]})"
                )
        except InvalidCustomer as exc:
            report.rejected.append(
                RejectedRow(item.line, external_id_of(item.cells, cols), str(exc))
            )
            continue
        seen[row.external_id] = row.line
        rows.append(row)
    return rows


async def _load(store: CrmStore, rows: list[Row]) -> dict[str, StoredCustomer]:
    if not rows:
        return {}
    async with store._guard("import"), store.engine.connect() as conn:
        stored = await customer_batch.load(conn, [r.external_id for r in rows])
        await conn.rollback()
    return stored


async def _import_batch(
    store: CrmStore,
    planner: _Planner,
    rows: list[Row],
    report: ImportReport,
    imported_e164: set[str],
) -> None:
    """Plan and write one batch in one transaction; row by row if the database refuses it."""
    if not rows:
        return
    stored = await _load(store, rows)
    rows = _one_row_per_customer(planner, rows, stored, report)
    parsed = {
        number: normalise(number, store.region, store.internal_max_digits).e164
        for number in planner.to_parse(rows, stored)
    }
    outcomes = [(row, planner.plan(row, stored.get(row.external_id), parsed)) for row in rows]
    if planner.options.dry_run:
        written = outcomes
    else:
        written = await _write(store, planner, outcomes, report)
    for row, outcome in written:
        if row.external_id in stored:
            customer = stored[row.external_id]
            if customer.merged:
                report.merged.append(
                    MergedRow(row.line, row.external_id, customer.id, customer.external_id)
                )
            report.updated += 1
            report.unchanged += outcome.write is None
        else:
            report.created += 1
        report.changes.extend(outcome.changes)
        report.invalid_numbers.extend(outcome.invalid)
        if outcome.kept_dnc:
            report.kept_do_not_call.append(KeptDoNotCall(row.line, row.external_id))
        imported_e164.update(outcome.numbers)
    store.cache.invalidate(e for _, o in written for e in o.e164s)


def _one_row_per_customer(
    planner: _Planner, rows: list[Row], stored: dict[str, StoredCustomer], report: ImportReport
) -> list[Row]:
    """``rows`` without those naming a customer an earlier row named (possible only through
    a merge: the external ids of a survivor and of a customer merged into it), rejected."""
    kept: list[Row] = []
    lines = planner.lines
    for row in rows:
        customer = stored.get(row.external_id)
        if customer is not None:
            first = lines.setdefault(customer.id, row.line)
            if first != row.line:
                reason = (
                    f"{row.external_id} was merged into {customer.external_id}, which line "
                    f"{first} already sets (one row per customer)"
                    if customer.merged
                    else f"line {first} already sets this customer (by the external id of a "
                    "customer merged into it; one row per customer)"
                )
                report.rejected.append(RejectedRow(row.line, row.external_id, reason))
                continue
        kept.append(row)
    return kept


Outcomes = list[tuple[Row, _Outcome]]


class _Refused(Exception):
    """The database refused a write (a constraint, a value it cannot store)."""


async def _write(
    store: CrmStore, planner: _Planner, outcomes: Outcomes, report: ImportReport
) -> Outcomes:
    """Write the batch; returns the rows written (a row the database refuses is rejected)."""
    try:
        await _commit(store, planner, [o.write for _, o in outcomes if o.write is not None])
        return outcomes
    except _Refused as exc:
        if len(outcomes) == 1:
            row = outcomes[0][0]
            report.rejected.append(
                RejectedRow(row.line, row.external_id, f"refused by the database: {exc}")
            )
            return []
    written: Outcomes = []
    for pair in outcomes:  # find the row at fault: each in its own transaction
        written.extend(await _write(store, planner, [pair], report))
    return written


async def _commit(store: CrmStore, planner: _Planner, writes: list[CustomerWrite]) -> None:
    if not writes:
        return
    ids = [w.customer_id for w in writes]
    try:
        async with store._guard("import"):
            try:
                async with store.engine.begin() as conn:
                    await customer_batch.apply(conn, writes, planner.now)
            except sa_exc.DBAPIError as exc:
                if refused_by_database(exc):
                    raise _Refused(_describe(exc)) from exc
                raise
    except _Refused:
        for write, customer_id in zip(writes, ids, strict=True):
            write.customer_id = customer_id  # rolled back: new customers are new again
        raise


def _describe(exc: sa_exc.DBAPIError) -> str:
    text = str(exc.orig).strip()
    return text.splitlines()[0] if text else type(exc.orig).__name__
