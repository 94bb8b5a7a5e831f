"""A small bounded TTL cache (LRU eviction) for caller-ID resolutions."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """At most ``size`` entries, each valid for ``ttl_s`` seconds; size or ttl 0 disables it."""

    def __init__(
        self, size: int, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._size = size
        self._ttl = ttl_s
        self._clock = clock
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self.hits = 0
        self.misses = 0
        # Bumped by every invalidation: a value read from the database before it must not be
        # stored after it (it may be the stale one the invalidation was for).
        self.generation = 0

    @property
    def enabled(self) -> bool:
        return self._size > 0 and self._ttl > 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: K) -> V | None:
        item = self._items.get(key)
        if item is None:
            self.misses += 1
            return None
        expires, value = item
        if expires <= self._clock():
            del self._items[key]
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return value

    def put(self, key: K, value: V, generation: int | None = None) -> None:
        """Store ``value``; with ``generation``, only if nothing was invalidated since then."""
        if not self.enabled or (generation is not None and generation != self.generation):
            return
        self._items[key] = (self._clock() + self._ttl, value)
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)

    def invalidate(self, keys: Iterable[K]) -> None:
        self.generation += 1
        for key in keys:
            self._items.pop(key, None)

    def clear(self) -> None:
        self.generation += 1
        self._items.clear()
