"""What an ``http`` directory source is made of, as configured (``[[directories]] type = "http"``).

Templates take ``{placeholders}``: the caller's number in several forms for ``lookup``
(``{e164}`` +442071234567, ``{digits}`` 442071234567, ``{national}`` 02071234567, ``{nsn}``
2071234567, ``{national_formatted}`` 020 7123 4567, ``{international_formatted}``,
``{last4}``/``{last6}``/``{last7}``/``{last8}`` the last digits), ``{id}`` for ``get``,
``{query}`` and ``{limit}`` for ``search``, ``{params.NAME}`` from ``[params]`` everywhere, and
the interaction (``{call_id}``, ``{started_at}``, ``{talk_s}``...) for ``writeback``. A string
that is exactly one placeholder keeps the value's type (an Odoo uid stays a number).
Secrets may be written ``env:NAME`` to be read from the environment.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from connectors.mapping import ViewMapping

HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def secret(value: str) -> str:
    """``env:NAME`` read from the environment (empty when unset), anything else as written."""
    if value.startswith("env:"):
        return os.environ.get(value[4:], "")
    return value


class RequestTemplate(_Model):
    method: HttpMethod = "GET"
    # Appended to the source's ``base_url`` unless it is a full URL.
    path: str
    query: dict[str, Any] = {}
    json_body: Any = Field(None, alias="json")
    form: dict[str, str] | None = None
    headers: dict[str, str] = {}
    # Where the records are in the answer: a list, or one object ("" = the whole body).
    records: str = ""
    # A field whose presence (non-null) means the call failed, as in JSON-RPC's ``error``.
    error_path: str | None = None
    # For ``get``: answer statuses meaning "no such customer" (not an error).
    not_found: list[int] = [404]

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class AuthConfig(_Model):
    kind: Literal["none", "bearer", "basic", "header", "oauth2"] = "none"
    token: str = ""  # bearer
    username: str = ""  # basic
    password: str = ""
    header: str = "X-API-Key"  # header (an API key)
    value: str = ""
    # oauth2 client credentials
    token_url: str = ""
    client_id: str = ""
    client_secret: str = ""
    scope: str = ""
    # How the token request carries the credentials: a form body (RFC 6749) or JSON.
    token_request: Literal["form", "json", "basic"] = "form"
    # Refresh this long before the token's announced expiry.
    refresh_margin_s: float = Field(30.0, ge=0)

    @model_validator(mode="after")
    def _complete(self) -> AuthConfig:
        needed = {
            "bearer": ("token",),
            "basic": ("username",),
            "header": ("header", "value"),
            "oauth2": ("token_url", "client_id"),
        }.get(self.kind, ())
        missing = [name for name in needed if not getattr(self, name)]
        if missing:
            raise ValueError(f"auth kind {self.kind!r} needs {', '.join(missing)}")
        return self


class HttpSourceConfig(_Model):
    name: str
    type: Literal["http"] = "http"
    base_url: str
    timeout_ms: int = Field(250, gt=0)
    # Phone region for the numbers this CRM keeps without a country code.
    region: str | None = None
    params: dict[str, Any] = {}
    auth: AuthConfig = AuthConfig()
    headers: dict[str, str] = {}
    lookup: RequestTemplate
    get: RequestTemplate | None = None
    search: RequestTemplate | None = None
    writeback: RequestTemplate | None = None
    mapping: ViewMapping
    # Resilience.
    retries: int = Field(2, ge=0, le=10)
    backoff_ms: int = Field(50, ge=0)
    max_body_bytes: int = Field(1_000_000, gt=0)
    max_redirects: int = Field(3, ge=0)
    cache_ttl_s: float = Field(30.0, ge=0)
    cache_size: int = Field(10_000, ge=0)
    breaker_failures: int = Field(5, ge=1)
    breaker_cooldown_s: float = Field(10.0, gt=0)
    # The longest a write-back may take (it runs from the outbox, not on the call path).
    writeback_timeout_ms: int = Field(10_000, gt=0)
    verify_tls: bool = True

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _requests_of_lists(self) -> HttpSourceConfig:
        for attribute in ("open_cases", "orders", "interactions", "contacts"):
            spec = getattr(self.mapping, attribute)
            if spec is not None and spec.request is not None:
                RequestTemplate.model_validate(spec.request)
        return self

    def list_request(self, attribute: str) -> RequestTemplate | None:
        spec = getattr(self.mapping, attribute)
        if spec is None or spec.request is None:
            return None
        return RequestTemplate.model_validate(spec.request)
