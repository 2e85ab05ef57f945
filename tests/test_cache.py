"""ScoreCache and pair_key: LRU order, counters, thread safety, key separation."""

from __future__ import annotations

import threading

import pytest

from rerank_plugins._cache import ScoreCache, pair_key


def test_pair_key_separates_fields_and_settings():
    assert pair_key("m", "ab", "c") != pair_key("m", "a", "bc")
    assert pair_key("m", "q", "p") != pair_key("m2", "q", "p")
    assert pair_key("m", "q", "p") == pair_key("m", "q", "p")
    assert len(pair_key("m", "q", "p")) == 16
    pair_key("m", "q", "\ud800")  # lone surrogates do not crash


def test_lru_eviction_and_counters():
    cache = ScoreCache(2)
    cache.put_many([(b"a", 1.0), (b"b", 2.0)])
    assert cache.get_many([b"a"]) == [1.0]  # "b" is now least recent
    cache.put_many([(b"c", 3.0)])
    assert len(cache) == 2
    assert cache.get_many([b"b", b"a", b"c"]) == [None, 1.0, 3.0]
    assert (cache.hits, cache.misses) == (3, 1)
    cache.put_many([(b"a", 5.0)])  # overwrite refreshes
    assert cache.get_many([b"a"]) == [5.0]
    cache.clear()
    assert len(cache) == 0 and cache.hits == 0 and cache.misses == 0


def test_zero_size_is_off_and_negative_rejected():
    cache = ScoreCache(0)
    cache.put_many([(b"a", 1.0)])
    assert len(cache) == 0 and cache.get_many([b"a"]) == [None]
    with pytest.raises(ValueError, match="cache_size"):
        ScoreCache(-1)


def test_concurrent_puts_keep_bound():
    cache = ScoreCache(50)

    def work(offset: int) -> None:
        for i in range(200):
            key = f"{offset}-{i}".encode()
            cache.put_many([(key, float(i))])
            cache.get_many([key])

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(cache) == 50
    assert cache.hits + cache.misses == 1600
