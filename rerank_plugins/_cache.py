"""A small thread-safe LRU cache of raw cross-encoder scores."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence


def pair_key(namespace: str, query: str, passage: str) -> bytes:
    """Digest of (model settings, query, passage); collisions are negligible at 128 bits."""
    digest = hashlib.blake2b(digest_size=16)
    for part in (namespace, query, passage):
        encoded = part.encode("utf-8", "surrogatepass")
        digest.update(len(encoded).to_bytes(8, "little"))
        digest.update(encoded)
    return digest.digest()


class ScoreCache:
    """LRU map from :func:`pair_key` digests to raw scores. ``maxsize=0`` disables it."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 0:
            raise ValueError(f"cache_size must be >= 0, got {maxsize}")
        self.maxsize = maxsize
        self._data: OrderedDict[bytes, float] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._data)

    def get_many(self, keys: Sequence[bytes]) -> list[float | None]:
        with self._lock:
            found: list[float | None] = []
            for key in keys:
                value = self._data.get(key)
                if value is None:
                    self.misses += 1
                else:
                    self._data.move_to_end(key)
                    self.hits += 1
                found.append(value)
            return found

    def put_many(self, items: Iterable[tuple[bytes, float]]) -> None:
        if self.maxsize == 0:
            return
        with self._lock:
            for key, value in items:
                self._data[key] = value
                self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.hits = 0
            self.misses = 0
