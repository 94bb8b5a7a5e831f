"""Webhooks: each event POSTed as JSON to a configured URL, signed, with an idempotency key.

The signature is ``X-CTI-Signature: v1=<hex>``, the HMAC-SHA256 with the webhook's secret of
``X-CTI-Timestamp + "." + body`` (the raw body bytes); a receiver recomputes it, compares in
constant time and refuses old timestamps (``verify`` below does exactly that). Any 2xx is
delivered; anything else, or no answer within the timeout, is retried by the outbox.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable

import aiohttp

from connectors.outbox import DeliveryError, OutboxItem

SIGNATURE_HEADER = "X-CTI-Signature"
TIMESTAMP_HEADER = "X-CTI-Timestamp"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "v1=" + digest.hexdigest()


def verify(
    secret: str,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    tolerance_s: float = 300.0,
    now: Callable[[], float] = time.time,
) -> bool:
    """What a receiver checks: the signature over timestamp and body, and a recent timestamp."""
    try:
        age = abs(now() - int(timestamp))
    except ValueError:
        return False
    expected = sign(secret, timestamp, body)
    return age <= tolerance_s and hmac.compare_digest(expected, signature)


class WebhookTarget:
    def __init__(
        self,
        name: str,
        url: str,
        secret: str,
        *,
        events: frozenset[str] | None = None,
        timeout_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._name = name
        self._url = url
        self._secret = secret
        self._events = events
        self._timeout_s = timeout_s
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None

    @property
    def name(self) -> str:
        return self._name

    def accepts(self, event: str) -> bool:
        return self._events is None or event in self._events

    async def deliver(self, item: OutboxItem) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        body = json.dumps(item.payload, separators=(",", ":"), default=str).encode()
        timestamp = str(int(self._clock()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "cti-webhooks/1",
            "X-CTI-Event": item.event,
            "Idempotency-Key": item.idempotency_key,
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self._secret, timestamp, body),
        }
        try:
            async with self._session.post(
                self._url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self._timeout_s),
                allow_redirects=False,
            ) as response:
                await response.read()
                if not 200 <= response.status < 300:
                    raise DeliveryError(f"HTTP {response.status} from {self._url}")
        except aiohttp.ClientError as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc
        except TimeoutError as exc:
            raise DeliveryError(f"no answer within {self._timeout_s:.0f} s") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
