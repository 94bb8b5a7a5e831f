"""The ``csv`` source: a phonebook file, read again whenever it changes (size or mtime).

Rows are mapped with the same ``[mapping]`` as any source (column names as paths). A row whose
mapping gives no id or whose numbers do not parse is skipped and counted, never fatal; a file
that cannot be read keeps the last good copy and the source reports itself unavailable only
when it never had one.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import structlog

from connectors.mapping import map_record
from connectors.settings import CsvSourceConfig
from connectors.source import SourceError, SourceRecord

log = structlog.get_logger(__name__)


class CsvSource:
    writes_back = False

    def __init__(self, config: CsvSourceConfig, *, region: str = "GB") -> None:
        self.config = config
        self._path = Path(config.path)
        self._region = (config.region or region).upper()
        self._stamp: tuple[int, int] | None = None
        self._by_key: dict[str, SourceRecord] = {}
        self._by_e164: dict[str, list[SourceRecord]] = {}
        self.loads = 0
        self.skipped = 0

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def timeout_s(self) -> float:
        return self.config.timeout_ms / 1000

    def _fresh(self) -> None:
        try:
            stat = os.stat(self._path)
        except OSError as exc:
            if self._stamp is None:
                raise SourceError(f"cannot read {self._path}: {exc.strerror}") from exc
            return  # keep the last good copy
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            self._load(stamp)

    def _load(self, stamp: tuple[int, int]) -> None:
        by_key: dict[str, SourceRecord] = {}
        by_e164: dict[str, list[SourceRecord]] = {}
        skipped = 0
        try:
            with open(self._path, encoding=self.config.encoding, newline="") as handle:
                for row in csv.DictReader(handle, delimiter=self.config.delimiter):
                    mapped = map_record(self.config.mapping, _clean(row), self._region)
                    if mapped is None:
                        skipped += 1
                        continue
                    key, name, fields = mapped
                    record = SourceRecord(key=key, name=name, fields=fields)
                    by_key[key] = record
                    for phone in fields.get("phones", ()):
                        if phone.e164:
                            by_e164.setdefault(phone.e164, []).append(record)
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            if self._stamp is None:
                raise SourceError(f"cannot read {self._path}: {exc}") from exc
            log.warning("phonebook not reloaded", source=self.name, error=str(exc))
            return
        self._by_key, self._by_e164, self._stamp = by_key, by_e164, stamp
        self.loads += 1
        self.skipped = skipped
        log.info("phonebook loaded", source=self.name, rows=len(by_key), skipped=skipped)

    async def by_number(self, e164: str) -> list[SourceRecord]:
        self._fresh()
        return list(self._by_e164.get(e164, ()))

    async def by_key(self, key: str) -> SourceRecord | None:
        self._fresh()
        return self._by_key.get(key)

    async def search(self, query: str, limit: int) -> list[SourceRecord]:
        self._fresh()
        wanted = query.strip().lower()
        if not wanted:
            return []
        found = []
        for record in self._by_key.values():
            haystack = (record.name, record.external_id or "", record.email or "", record.key)
            if any(wanted in text.lower() for text in haystack):
                found.append(record)
                if len(found) >= limit:
                    break
        return found

    async def close(self) -> None:
        return None


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    return {(k or "").strip(): (v.strip() if isinstance(v, str) else v) for k, v in row.items()}
