"""One ingester per PBX: a lease in Redis with a fencing token.

The lease is the key ``{prefix}:lease:{pbx}`` set with ``SET NX PX`` to ``holder token``; the
token comes from ``INCR {prefix}:fence:{pbx}`` in the same Lua script, so every grant carries
a token larger than any before it, even after Redis forgot an expired lease. The holder
renews it (``PEXPIRE`` only while the value is still its own) every third of the TTL; an
instance that is killed stops renewing and the key expires after ``ttl``, when a standby's
next attempt gets it with the next token.

A lease alone cannot stop a paused holder (a long GC, a frozen VM) from writing after its
lease expired: the token goes with every write and the database refuses one lower than the
highest it has seen (``cti.cluster.fencing``). The holder also counts its own lease as lost
when it could not renew it within the TTL (``valid()``), measured on its monotonic clock from
the moment it *sent* the renewal.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. token, 'PX', ARGV[2])
return token
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisScripts(Protocol):
    """The part of ``redis.asyncio.Redis`` the lease uses."""

    def eval(self, script: str, numkeys: int, *keys_and_args: Any) -> Awaitable[Any]: ...

    def get(self, name: str) -> Awaitable[Any]: ...


@dataclass(frozen=True)
class Grant:
    pbx_id: str
    token: int


class PbxLease:
    """The lease on one PBX, as one instance (``holder``) tries for it and keeps it."""

    def __init__(
        self,
        redis: RedisScripts,
        prefix: str,
        pbx_id: str,
        holder: str,
        ttl_s: float,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self.pbx_id = pbx_id
        self.holder = holder
        self.ttl_s = ttl_s
        self._lease_key = f"{prefix}:lease:{pbx_id}"
        self._fence_key = f"{prefix}:fence:{pbx_id}"
        self._monotonic = monotonic
        self.grant: Grant | None = None
        self._valid_until = float("-inf")

    @property
    def _value(self) -> str:
        assert self.grant is not None
        return f"{self.holder} {self.grant.token}"

    @property
    def _ttl_ms(self) -> int:
        return max(1, int(self.ttl_s * 1000))

    async def try_acquire(self) -> Grant | None:
        """The lease and its new token, or None while another instance holds it."""
        sent = self._monotonic()
        token = int(
            await self._redis.eval(
                _ACQUIRE, 2, self._lease_key, self._fence_key, self.holder, self._ttl_ms
            )
        )
        if not token:
            return None
        self.grant = Grant(self.pbx_id, token)
        self._valid_until = sent + self.ttl_s
        return self.grant

    async def renew(self) -> bool:
        """Extend the lease; False when it is no longer ours (expired, taken)."""
        if self.grant is None:
            return False
        sent = self._monotonic()
        ok = bool(await self._redis.eval(_RENEW, 1, self._lease_key, self._value, self._ttl_ms))
        if ok:
            self._valid_until = sent + self.ttl_s
        else:
            self._valid_until = float("-inf")
        return ok

    def remaining(self) -> float:
        """Seconds the lease is surely still ours (0: not ours, or maybe not)."""
        return max(0.0, self._valid_until - self._monotonic()) if self.grant else 0.0

    def valid(self, margin_s: float = 0.0) -> bool:
        """Ours for at least ``margin_s`` more, as far as this process can tell."""
        return self.grant is not None and self._monotonic() + margin_s < self._valid_until

    async def release(self) -> None:
        """Give the lease up at once (an orderly stop): a standby need not wait the TTL."""
        if self.grant is not None:
            await self._redis.eval(_RELEASE, 1, self._lease_key, self._value)
        self.grant = None
        self._valid_until = float("-inf")

    async def holder_now(self) -> str | None:
        """Who holds the lease now (``holder token``), for status and tests."""
        value = await self._redis.get(self._lease_key)
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)
