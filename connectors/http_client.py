"""The HTTP side of an ``http`` source: auth, retries, the circuit breaker and the answer limits.

Every failure comes out as ``SourceError`` with what went wrong (status, timeout, too large,
not JSON, redirect loop), never as an aiohttp exception. Retries back off exponentially and
honour a 429's ``Retry-After``: no request goes out before it, and one that would have to wait
past the caller's deadline fails at once. After ``breaker_failures`` failures in a row the
breaker opens: requests fail at once for ``breaker_cooldown_s``, then one is let through.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import structlog

from connectors.http_config import AuthConfig, HttpSourceConfig, secret
from connectors.source import SourceError

log = structlog.get_logger(__name__)

_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


_LONG_DIGITS = re.compile(r"\+?\d{6,}")


def redact(url: str) -> str:
    """A URL for a log line: a phone number in its path keeps only its last 3 digits."""
    return _LONG_DIGITS.sub(lambda m: "…" + m.group()[-3:], url)


class _Transient(SourceError):
    """A failure worth retrying (connection refused or reset)."""


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    query: dict[str, str]
    json_body: Any = None
    form: dict[str, str] | None = None
    headers: dict[str, str] | None = None


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any


class CircuitBreaker:
    def __init__(
        self, failures: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._threshold = failures
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._failures = 0
        self._open_until = 0.0

    @property
    def is_open(self) -> bool:
        return self._failures >= self._threshold and self._clock() < self._open_until

    def check(self) -> None:
        if self.is_open:
            raise SourceError(
                f"circuit open after {self._failures} failures in a row "
                f"(next try in {self._open_until - self._clock():.1f} s)"
            )

    def success(self) -> None:
        self._failures = 0

    def failure(self) -> None:
        self._failures += 1
        if self._failures >= self._threshold:
            self._open_until = self._clock() + self._cooldown_s


def retry_after_s(value: str | None) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date); None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class OAuth2Token:
    """Client-credentials token, fetched on first use, refreshed before expiry and on a 401."""

    def __init__(self, auth: AuthConfig, base_url: str) -> None:
        self._auth = auth
        # A token URL written as a path is on the CRM's own host.
        self._url = auth.token_url if "://" in auth.token_url else base_url + auth.token_url
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self.fetched = 0

    def invalidate(self) -> None:
        self._token = None

    async def get(self, session: aiohttp.ClientSession, timeout_s: float) -> str:
        async with self._lock:
            if self._token is not None and time.monotonic() < self._expires_at:
                return self._token
            self._token, lifetime = await self._fetch(session, timeout_s)
            margin = min(self._auth.refresh_margin_s, lifetime / 2)
            self._expires_at = time.monotonic() + lifetime - margin
            self.fetched += 1
            return self._token

    async def _fetch(self, session: aiohttp.ClientSession, timeout_s: float) -> tuple[str, float]:
        auth = self._auth
        fields = {"grant_type": "client_credentials", "client_id": secret(auth.client_id)}
        fields["client_secret"] = secret(auth.client_secret)
        if auth.scope:
            fields["scope"] = auth.scope
        kwargs: dict[str, Any] = {"timeout": aiohttp.ClientTimeout(total=timeout_s)}
        if auth.token_request == "json":
            kwargs["json"] = fields
        elif auth.token_request == "basic":
            kwargs["auth"] = aiohttp.BasicAuth(secret(auth.client_id), secret(auth.client_secret))
            kwargs["data"] = {k: v for k, v in fields.items() if k.startswith(("grant", "scope"))}
        else:
            kwargs["data"] = fields
        try:
            async with session.post(self._url, **kwargs) as response:
                text = await response.text()
                if response.status != 200:
                    raise SourceError(f"token request refused: HTTP {response.status}")
                body = json.loads(text)
        except (aiohttp.ClientError, ValueError) as exc:
            raise SourceError(f"token request failed: {exc!r}") from exc
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise SourceError("token answer has no access_token")
        lifetime = body.get("expires_in", 3600)
        try:
            lifetime = float(lifetime)
        except (TypeError, ValueError):
            lifetime = 3600.0
        return token, max(1.0, lifetime)


class HttpClient:
    def __init__(self, config: HttpSourceConfig) -> None:
        self._config = config
        self._session: aiohttp.ClientSession | None = None
        self._oauth = (
            OAuth2Token(config.auth, config.base_url) if config.auth.kind == "oauth2" else None
        )
        self.breaker = CircuitBreaker(config.breaker_failures, config.breaker_cooldown_s)
        self._not_before = 0.0  # a 429's Retry-After, as a monotonic time
        self.requests = 0

    @property
    def oauth(self) -> OAuth2Token | None:
        return self._oauth

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=50, ssl=self._config.verify_tls)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _auth_headers(
        self, session: aiohttp.ClientSession, timeout_s: float
    ) -> dict[str, str]:
        auth = self._config.auth
        if auth.kind == "bearer":
            return {"Authorization": f"Bearer {secret(auth.token)}"}
        if auth.kind == "basic":
            raw = f"{secret(auth.username)}:{secret(auth.password)}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        if auth.kind == "header":
            return {auth.header: secret(auth.value)}
        if self._oauth is not None:
            return {"Authorization": f"Bearer {await self._oauth.get(session, timeout_s)}"}
        return {}

    async def send(self, request: Request, budget_s: float) -> Answer:
        """The answer (status and parsed JSON) within ``budget_s``, retried as configured."""
        deadline = time.monotonic() + budget_s
        attempt = 0
        refreshed = False
        while True:
            self.breaker.check()
            wait = self._not_before - time.monotonic()
            if wait > 0:
                if time.monotonic() + wait >= deadline:
                    raise SourceError(f"rate limited by the CRM for {wait:.1f} s more")
                await asyncio.sleep(wait)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SourceError("no time left for the request")
            try:
                status, body, retry_after = await self._once(request, remaining)
            except SourceError as exc:
                self.breaker.failure()
                if not isinstance(exc, _Transient) or attempt >= self._config.retries:
                    raise
                attempt += 1
                await self._backoff(attempt, deadline, exc)
                continue
            if status == 401 and self._oauth is not None and not refreshed:
                self._oauth.invalidate()  # expired or revoked early: one fresh token, once
                refreshed = True
                continue
            if status == 429:
                pause = retry_after if retry_after is not None else self._delay(attempt + 1)
                self._not_before = time.monotonic() + pause
            if status in _RETRY_STATUSES:
                self.breaker.failure()
                if attempt >= self._config.retries:
                    raise SourceError(f"HTTP {status} from {request.method} {redact(request.url)}")
                attempt += 1
                if status != 429:
                    await self._backoff(attempt, deadline, SourceError(f"HTTP {status}"))
                continue
            if status >= 500:
                self.breaker.failure()
                raise SourceError(f"HTTP {status} from {request.method} {redact(request.url)}")
            if status < 400 or status == 404:
                self.breaker.success()
            else:
                self.breaker.failure()
            return Answer(status, body)

    def _delay(self, attempt: int) -> float:
        return self._config.backoff_ms / 1000 * (2 ** (attempt - 1))

    async def _backoff(self, attempt: int, deadline: float, why: Exception) -> None:
        delay = self._delay(attempt)
        if time.monotonic() + delay >= deadline:
            raise SourceError(f"{why} (no time left to retry)") from why
        await asyncio.sleep(delay)

    async def _once(self, request: Request, timeout_s: float) -> tuple[int, Any, float | None]:
        session = self._session_now()
        headers = {**self._config.headers, **(request.headers or {})}
        headers.update(await self._auth_headers(session, timeout_s))
        headers.setdefault("Accept", "application/json")
        kwargs: dict[str, Any] = {
            "params": request.query or None,
            "headers": headers,
            "timeout": aiohttp.ClientTimeout(total=timeout_s),
            "max_redirects": self._config.max_redirects,
            "allow_redirects": self._config.max_redirects > 0,
        }
        if request.form is not None:
            kwargs["data"] = request.form
        elif request.json_body is not None:
            kwargs["data"] = json.dumps(request.json_body)
            headers.setdefault("Content-Type", "application/json")
        self.requests += 1
        limit = self._config.max_body_bytes
        try:
            async with session.request(request.method, request.url, **kwargs) as response:
                length = response.content_length
                if length is not None and length > limit:
                    raise SourceError(f"answer of {length} bytes is over the {limit}-byte limit")
                raw = await _read_limited(response, limit)
                status = response.status
                retry_after = retry_after_s(response.headers.get("Retry-After"))
        except aiohttp.TooManyRedirects as exc:
            raise SourceError(f"more than {self._config.max_redirects} redirects") from exc
        except TimeoutError as exc:
            error = SourceError(f"no answer within {timeout_s * 1000:.0f} ms")
            raise error from exc
        except aiohttp.ClientError as exc:
            raise _Transient(f"{type(exc).__name__}: {exc}") from exc
        if status >= 300 or not raw.strip():
            return status, None, retry_after
        try:
            return status, json.loads(raw), retry_after
        except ValueError as exc:
            raise SourceError(f"malformed JSON in the answer (HTTP {status})") from exc


async def _read_limited(response: aiohttp.ClientResponse, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(65536):
        size += len(chunk)
        if size > limit:
            raise SourceError(f"answer is over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)
