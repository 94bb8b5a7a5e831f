"""The ``http`` source: any REST or JSON-RPC CRM, by request templates and a field mapping.

The CRM is asked with the configured ``lookup`` template for a caller's number; each record it
returns is mapped to our view fields and kept only when one of its numbers, normalised with
``phonenumbers``, is the caller's E.164 number (the CRM's own search is only a coarse filter:
``{last4}`` finds ``020 7123 4567`` as well as ``+44 20 7123 4567``). Answers are cached for
``cache_ttl_s`` (bounded), failures never.
"""

from __future__ import annotations

import asyncio
import functools
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import phonenumbers

from connectors.http_client import Answer, HttpClient, Request
from connectors.http_config import HttpSourceConfig, RequestTemplate, secret
from connectors.mapping import LIST_FIELDS, MISSING, PLACEHOLDER, get_path, map_record
from connectors.source import SourceError, SourceRecord
from crm_core.cache import TtlCache
from crm_core.types import InteractionRecord


def number_forms(e164: str) -> dict[str, str]:
    """The caller's number in the forms a CRM may be searched with."""
    parsed = phonenumbers.parse(e164, None)
    national = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
    international = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    digits = e164.lstrip("+")
    return {
        "e164": e164,
        "digits": digits,
        "nsn": phonenumbers.national_significant_number(parsed),
        "national": re.sub(r"\D", "", national),
        "national_formatted": national,
        "international_formatted": international,
        "last4": digits[-4:],
        "last6": digits[-6:],
        "last7": digits[-7:],
        "last8": digits[-8:],
    }


def fill(template: Any, context: dict[str, Any]) -> Any:
    """A template with its placeholders filled; a string that is one placeholder keeps the type."""
    if isinstance(template, str):
        whole = PLACEHOLDER.fullmatch(template)
        if whole:
            return _lookup(context, whole.group(1))
        return PLACEHOLDER.sub(lambda m: _text(_lookup(context, m.group(1))), template)
    if isinstance(template, dict):
        return {k: fill(v, context) for k, v in template.items()}
    if isinstance(template, list):
        return [fill(v, context) for v in template]
    return template


def _lookup(context: dict[str, Any], name: str) -> Any:
    value = get_path(context, name)
    if value is MISSING:
        raise SourceError(f"unknown placeholder {{{name}}} in a request template")
    return secret(value) if isinstance(value, str) else value


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def interaction_context(record: InteractionRecord) -> dict[str, Any]:
    """What a write-back template can say of a call."""

    def iso(value: datetime | None) -> str | None:
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None

    def ms(value: datetime | None) -> int | None:
        return int(value.timestamp() * 1000) if value else None

    talk = record.talk_s or 0.0
    queue = record.queues[0] if record.queues else ""
    agent = record.agents[-1] if record.agents else ""
    direction = record.direction
    parts = [f"{direction.capitalize()} call", record.outcome]
    if queue:
        parts.append(f"queue {queue}")
    if agent:
        parts.append(f"agent {agent}")
    if record.wait_s is not None:
        parts.append(f"waited {record.wait_s:.0f} s")
    if record.talk_s is not None:
        parts.append(f"talked {record.talk_s:.0f} s")
    if record.transfers:
        parts.append(f"{len(record.transfers)} transfer(s)")
    if record.disposition:
        parts.append(f"disposition {record.disposition}")
    summary = ", ".join(parts) + (f". Notes: {record.notes}" if record.notes else "")
    started = record.answered_at or record.started_at
    return {
        **record.to_dict(),
        "queue": queue,
        "agent": agent,
        "queues_text": ", ".join(record.queues),
        "agents_text": ", ".join(record.agents),
        "direction_title": direction.capitalize(),
        "direction_upper": direction.upper(),
        "started_at": iso(record.started_at),
        "started_at_ms": ms(record.started_at),
        "started_at_sql": record.started_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        if record.started_at
        else None,
        "answered_at": iso(record.answered_at),
        "ended_at": iso(record.ended_at),
        "ended_at_ms": ms(record.ended_at),
        "talk_s": round(talk),
        "talk_ms": int(talk * 1000),
        "talk_minutes": int(talk // 60),
        "talk_hours": int(talk // 3600),
        "talk_minutes_part": int(talk % 3600 // 60),
        "wait_s": round(record.wait_s or 0.0),
        "start_iso": iso(started),
        "subject": f"{direction.capitalize()} call ({record.outcome})",
        "summary": summary,
        "notes": record.notes,
        "disposition": record.disposition or "",
    }


class HttpSource:
    def __init__(self, config: HttpSourceConfig, *, region: str = "GB") -> None:
        self.config = config
        self._region = (config.region or region).upper()
        self._client = HttpClient(config)
        self._numbers: TtlCache[str, list[SourceRecord]] = TtlCache(
            config.cache_size, config.cache_ttl_s
        )
        # Records seen in answers: the view of a CRM without a ``get`` template, so kept at
        # least as long as a call lasts whatever the cache setting.
        self._records: TtlCache[str, SourceRecord] = TtlCache(
            max(config.cache_size, 1000), max(config.cache_ttl_s, 3600.0)
        )
        self._inflight: dict[str, asyncio.Task[list[SourceRecord]]] = {}
        self._full: TtlCache[str, SourceRecord] = TtlCache(config.cache_size, config.cache_ttl_s)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def timeout_s(self) -> float:
        return self.config.timeout_ms / 1000

    @property
    def writes_back(self) -> bool:
        return self.config.writeback is not None

    @property
    def client(self) -> HttpClient:
        return self._client

    def _context(self, **values: Any) -> dict[str, Any]:
        key = values.get("id")
        if isinstance(key, str):
            # For APIs that want a numeric id in a JSON body (Odoo's ids are integers).
            values["id_number"] = int(key) if key.isdigit() else key
        return {"params": self.config.params, **values}

    def _request(self, template: RequestTemplate, context: dict[str, Any]) -> Request:
        path = template.path
        if not path.startswith(("http://", "https://")):
            # Values in the URL path are quoted ({id} of "a/b" must stay one segment).
            path = PLACEHOLDER.sub(
                lambda m: quote(_text(_lookup(context, m.group(1))), safe=""), path
            )
            url = self.config.base_url + ("" if path.startswith("/") else "/") + path
        else:
            url = fill(path, context)
        query = {k: _text(v) for k, v in fill(template.query, context).items()}
        return Request(
            method=template.method,
            url=url,
            query=query,
            json_body=fill(template.json_body, context),
            form=fill(template.form, context) if template.form is not None else None,
            headers=fill(template.headers, context),
        )

    async def _call(
        self, template: RequestTemplate, context: dict[str, Any], budget_s: float
    ) -> Answer:
        answer = await self._client.send(self._request(template, context), budget_s)
        if template.error_path and isinstance(answer.body, dict):
            error = get_path(answer.body, template.error_path)
            if error is not MISSING and error not in (None, False, "", [], {}):
                raise SourceError(f"the CRM answered an error: {_short(error)}")
        return answer

    def _items(self, template: RequestTemplate, answer: Answer) -> list[Any]:
        if answer.status >= 300:
            raise SourceError(f"HTTP {answer.status}")
        found = get_path(answer.body, template.records) if answer.body is not None else MISSING
        if found is MISSING or found is None:
            return []
        if isinstance(found, list):
            return found
        if isinstance(found, dict):
            return [found]
        raise SourceError(f"records at {template.records!r} are neither a list nor an object")

    def _map(self, item: Any, extra: dict[str, list[Any]] | None = None) -> SourceRecord | None:
        mapped = map_record(self.config.mapping, item, self._region, extra)
        if mapped is None:
            return None
        key, name, fields = mapped
        return SourceRecord(key=key, name=name, fields=fields)

    async def by_number(self, e164: str) -> list[SourceRecord]:
        """The router and the pop ask for the same caller at nearly the same moment: one
        request answers both (a rate-limited CRM counts every one)."""
        cached = self._numbers.get(e164)
        if cached is not None:
            return cached
        task = self._inflight.get(e164)
        if task is None:
            task = asyncio.create_task(self._lookup(e164), name=f"{self.name}-lookup")
            self._inflight[e164] = task
            task.add_done_callback(functools.partial(self._landed, e164))
        # A caller that gives up (its deadline) leaves the request to the others.
        return await asyncio.shield(task)

    def _landed(self, e164: str, task: asyncio.Task[list[SourceRecord]]) -> None:
        if self._inflight.get(e164) is task:
            del self._inflight[e164]
        if not task.cancelled():
            task.exception()  # retrieved: nobody may be waiting any more

    async def _lookup(self, e164: str) -> list[SourceRecord]:
        generation = self._numbers.generation
        template = self.config.lookup
        answer = await self._call(template, self._context(**number_forms(e164)), self.timeout_s)
        found = []
        for item in self._items(template, answer):
            record = self._map(item)
            if record is None:
                continue
            self._records.put(record.key, record, self._records.generation)
            # The CRM's search is a coarse filter; the match is ours, on E.164.
            if any(p.e164 == e164 for p in record.fields.get("phones", ())):
                found.append(record)
        self._numbers.put(e164, found, generation)
        return found

    async def by_key(self, key: str) -> SourceRecord | None:
        cached = self._full.get(key)
        if cached is not None:
            return cached
        template = self.config.get
        if template is None:
            return self._records.get(key)
        generation = self._full.generation
        # The record and its lists (cases, orders...) are asked together: one round trip.
        answer, extra = await asyncio.gather(
            self._call(template, self._context(id=key), self.timeout_s),
            self._list_items(key, self.timeout_s),
        )
        if answer.status in template.not_found:
            return None
        items = self._items(template, answer)
        if not items:
            return None
        record = self._map(items[0], extra)
        if record is not None:
            self._full.put(key, record, generation)
        return record

    async def _list_items(self, key: str, budget_s: float) -> dict[str, list[Any]]:
        """Cases, orders... that the CRM gives by their own request, asked together; the items
        are at the request's ``records`` and then the list's ``items`` path."""
        wanted = [(a, t) for a in LIST_FIELDS if (t := self.config.list_request(a)) is not None]
        if not wanted:
            return {}
        answers = await asyncio.gather(
            *(self._call(t, self._context(id=key), budget_s) for _, t in wanted)
        )
        found: dict[str, list[Any]] = {}
        for (attribute, template), answer in zip(wanted, answers, strict=True):
            if answer.status >= 300:
                raise SourceError(f"HTTP {answer.status} for the {attribute}")
            items = get_path(answer.body, template.records)
            spec = getattr(self.config.mapping, attribute)
            if spec.items and items is not MISSING:
                items = get_path(items, spec.items)
            found[attribute] = items if isinstance(items, list) else []
        return found

    async def search(self, query: str, limit: int) -> list[SourceRecord]:
        template = self.config.search
        if template is None:
            return []
        answer = await self._call(template, self._context(query=query, limit=limit), self.timeout_s)
        found = []
        for item in self._items(template, answer):
            record = self._map(item)
            if record is not None:
                self._records.put(record.key, record, self._records.generation)
                found.append(record)
        return found[:limit]

    async def write_back(self, key: str, record: InteractionRecord) -> None:
        template = self.config.writeback
        if template is None:
            raise SourceError(f"source {self.name} has no writeback template")
        context = self._context(id=key, **interaction_context(record))
        answer = await self._call(template, context, self.config.writeback_timeout_ms / 1000)
        if answer.status >= 300:
            raise SourceError(f"write-back refused: HTTP {answer.status}")

    async def close(self) -> None:
        pending = list(self._inflight.values())
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self._client.close()


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 200 else text[:200] + "…"
