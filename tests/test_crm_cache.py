"""The resolution cache: bounded, expiring, and never keeping a value older than an update."""

from __future__ import annotations

from crm_core.cache import TtlCache


def test_entries_expire_after_the_ttl() -> None:
    now = [0.0]
    cache: TtlCache[str, int] = TtlCache(10, 30.0, clock=lambda: now[0])
    cache.put("a", 1)
    now[0] = 29.9
    assert cache.get("a") == 1
    now[0] = 30.0
    assert cache.get("a") is None


def test_the_least_recently_used_entry_goes_when_full() -> None:
    cache: TtlCache[str, int] = TtlCache(2, 30.0)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)
    assert len(cache) == 2


def test_a_value_read_before_an_invalidation_is_not_stored_after_it() -> None:
    cache: TtlCache[str, str] = TtlCache(10, 30.0)
    generation = cache.generation  # a resolution starts reading the database...
    cache.invalidate(["+442071234567"])  # ...meanwhile the customer's numbers change
    cache.put("+442071234567", "stale", generation)
    assert cache.get("+442071234567") is None
    cache.put("+442071234567", "fresh", cache.generation)
    assert cache.get("+442071234567") == "fresh"


def test_size_or_ttl_zero_disables_the_cache() -> None:
    for cache in (TtlCache[str, int](0, 30.0), TtlCache[str, int](10, 0.0)):
        cache.put("a", 1)
        assert cache.get("a") is None
