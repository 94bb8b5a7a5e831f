"""The ``sql`` source: another database (an ERP's PostgreSQL or MariaDB) read by configured
queries, on a read-only session.

Queries are plain SQL with named parameters: ``:e164``, ``:digits``, ``:national``, ``:nsn``,
``:last4`` ... (as in the ``http`` source's templates) and ``:last4_like`` ... (``%4567``, for
``LIKE``) for ``lookup``; ``:id`` (text, or a number with ``key_type = "integer"``) for ``get``
and the lists; ``:query``, ``:query_like`` (``%query%``) and ``:limit`` for
``search``. Columns are mapped with the same ``[mapping]`` as any source; the number match is
ours, on E.164. Only ``SELECT``/``WITH`` statements are accepted, and the session itself is
read-only.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from connectors.http_source import number_forms
from connectors.mapping import map_record
from connectors.settings import SqlSourceConfig
from connectors.source import SourceError, SourceRecord


def _make_read_only(engine: AsyncEngine) -> None:
    backend = engine.dialect.name

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        statement = (
            "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"
            if backend == "postgresql"
            else "SET SESSION TRANSACTION READ ONLY"
        )
        cursor = dbapi_connection.cursor()
        cursor.execute(statement)
        cursor.close()
        dbapi_connection.commit()  # SET is transactional on PostgreSQL: keep it

    event.listen(engine.sync_engine, "connect", on_connect)


class SqlSource:
    writes_back = False

    def __init__(self, config: SqlSourceConfig, *, region: str = "GB") -> None:
        self.config = config
        self._region = (config.region or region).upper()
        self._engine: AsyncEngine | None = None

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def timeout_s(self) -> float:
        return self.config.timeout_ms / 1000

    def _engine_now(self) -> AsyncEngine:
        if self._engine is None:
            kwargs: dict[str, Any] = {"pool_size": self.config.pool_size, "pool_pre_ping": True}
            if make_url(self.config.url).get_backend_name() == "postgresql":
                kwargs["connect_args"] = {"timeout": 3.0, "command_timeout": 10.0}
            else:
                kwargs["connect_args"] = {"connect_timeout": 3}
            self._engine = create_async_engine(self.config.url, **kwargs)
            _make_read_only(self._engine)
        return self._engine

    async def _rows(self, query: str, values: dict[str, Any]) -> list[dict[str, Any]]:
        statement = text(query)
        wanted = {k: v for k, v in values.items() if k in statement._bindparams}
        try:
            async with self._engine_now().connect() as conn:
                result = await conn.execute(statement, wanted)
                return [dict(row._mapping) for row in result]
        except SQLAlchemyError as exc:
            original = getattr(exc, "orig", None) or exc
            raise SourceError(f"{type(original).__name__}: {str(original)[:200]}") from exc
        except OSError as exc:
            raise SourceError(f"database unreachable: {exc}") from exc

    def _map(
        self, row: dict[str, Any], extra: dict[str, list[Any]] | None = None
    ) -> SourceRecord | None:
        mapped = map_record(self.config.mapping, row, self._region, extra)
        if mapped is None:
            return None
        key, name, fields = mapped
        return SourceRecord(key=key, name=name, fields=fields)

    async def by_number(self, e164: str) -> list[SourceRecord]:
        found = []
        forms = number_forms(e164)
        for n in (4, 6, 7, 8):
            forms[f"last{n}_like"] = "%" + forms[f"last{n}"]
        for row in await self._rows(self.config.lookup, forms):
            record = self._map(row)
            if record is not None and any(p.e164 == e164 for p in record.fields.get("phones", ())):
                found.append(record)
        return found

    async def by_key(self, key: str) -> SourceRecord | None:
        if self.config.get is None:
            return None
        if self.config.key_type == "integer" and not key.lstrip("-").isdigit():
            return None
        values = {"id": int(key) if self.config.key_type == "integer" else key}
        rows = await self._rows(self.config.get, values)
        if not rows:
            return None
        extra = {name: await self._rows(query, values) for name, query in self.config.lists.items()}
        return self._map(rows[0], extra)

    async def search(self, query: str, limit: int) -> list[SourceRecord]:
        if self.config.search is None:
            return []
        values = {"query": query, "query_like": f"%{query}%", "limit": limit}
        records = [self._map(row) for row in await self._rows(self.config.search, values)]
        return [r for r in records if r is not None][:limit]

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None
