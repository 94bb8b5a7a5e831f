"""The configuration of the connectors: ``[[directories]]``, ``[webhooks]`` and ``[bus]``.

Only pydantic and the mapping here (no database or HTTP library), so ``cti.config`` can
validate a whole file, naming the line of a bad key, without loading the connectors.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from connectors.http_config import HttpSourceConfig
from connectors.mapping import LIST_FIELDS, ViewMapping

EventName = Literal["offered", "answered", "transferred", "abandoned", "ended", "alert"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StoreSourceConfig(_Model):
    """The built-in CRM store (``[database]``) as one source of the chain."""

    name: str = "store"
    type: Literal["store"] = "store"
    timeout_ms: int = Field(250, gt=0)


class CsvSourceConfig(_Model):
    name: str
    type: Literal["csv"] = "csv"
    path: str
    timeout_ms: int = Field(100, gt=0)
    region: str | None = None
    delimiter: str = Field(",", min_length=1, max_length=1)
    encoding: str = "utf-8-sig"
    mapping: ViewMapping


_SQL_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "mysql": "mysql+aiomysql",
    "mariadb": "mysql+aiomysql",
    "mysql+aiomysql": "mysql+aiomysql",
    "mariadb+aiomysql": "mysql+aiomysql",
}
_READ = re.compile(r"^\s*(select|with)\b", re.IGNORECASE)


def _read_only(query: str) -> str:
    if not _READ.match(query) or ";" in query.strip().rstrip(";"):
        raise ValueError("only one SELECT (or WITH ... SELECT) statement is accepted")
    return query


class SqlSourceConfig(_Model):
    name: str
    type: Literal["sql"] = "sql"
    url: str
    timeout_ms: int = Field(200, gt=0)
    region: str | None = None
    lookup: str
    get: str | None = None
    search: str | None = None
    # Queries for the list fields (orders, open_cases...) by ``:id``; mapped by the mapping's
    # ``fields`` for that list.
    lists: dict[str, str] = {}
    mapping: ViewMapping
    pool_size: int = Field(5, ge=1)
    # How ``:id`` is sent: PostgreSQL compares an integer key only with an integer.
    key_type: Literal["text", "integer"] = "text"

    @field_validator("url")
    @classmethod
    def _driver(cls, value: str) -> str:
        scheme, sep, rest = value.partition("://")
        if not sep or scheme not in _SQL_DRIVERS:
            raise ValueError("url must be postgresql://… or mysql://… (mariadb://…)")
        return f"{_SQL_DRIVERS[scheme]}://{rest}"

    @field_validator("lookup", "get", "search")
    @classmethod
    def _select(cls, value: str | None) -> str | None:
        return None if value is None else _read_only(value)

    @field_validator("lists")
    @classmethod
    def _list_selects(cls, value: dict[str, str]) -> dict[str, str]:
        for name, query in value.items():
            if name not in LIST_FIELDS:
                raise ValueError(f"lists.{name}: one of {', '.join(LIST_FIELDS)}")
            _read_only(query)
        return value


DirectoryConfig = Annotated[
    StoreSourceConfig | HttpSourceConfig | SqlSourceConfig | CsvSourceConfig,
    Field(discriminator="type"),
]


class WebhookEndpoint(_Model):
    name: str
    url: str
    # HMAC-SHA256 key of the signature; ``env:NAME`` reads it from the environment.
    secret: str
    # The events sent here; all of them when empty.
    events: list[EventName] = []
    timeout_s: float = Field(10.0, gt=0)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        return value


class WebhooksConfig(_Model):
    endpoints: list[WebhookEndpoint] = []
    retry_initial_s: float = Field(1.0, gt=0)
    retry_max_s: float = Field(300.0, gt=0)
    # An item still undelivered this long after the event is marked failed (cti webhooks).
    give_up_after_s: float = Field(3 * 86400, gt=0)


class BusConfig(_Model):
    enabled: bool = False
    url: str = "amqp://guest:guest@127.0.0.1:5672/"
    exchange: str = "cti.events"
    events: list[EventName] = []
