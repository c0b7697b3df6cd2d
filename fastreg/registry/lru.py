"""A least-recently-used map bounded in bytes (and in entries): the per-worker caches of the services.

Each entry is charged its caller-given cost (the bytes it holds) plus ``OVERHEAD`` for the
key, the map slot and the value's object headers.  An entry dearer than ``max_entry`` is not
kept at all.  The resident size of a cache is therefore at most about ``max_bytes``, whatever
the entries are: many small ones hit ``max_entries`` first, a few large ones ``max_bytes``.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

OVERHEAD = 256      # bytes charged per entry besides its cost: key tuple, slot, headers


class ByteLRU(Generic[K, V]):
    def __init__(self, max_bytes: int, *, max_entries: int = 1 << 20, max_entry: int | None = None) -> None:
        self.max_bytes = max(0, max_bytes)
        self.max_entries = max(0, max_entries)
        self.max_entry = self.max_bytes if max_entry is None else min(max_entry, self.max_bytes)
        self._items: OrderedDict[K, tuple[int, V]] = OrderedDict()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def get(self, key: K) -> V | None:
        hit = self._items.get(key)
        if hit is None:
            return None
        self._items.move_to_end(key)
        return hit[1]

    def put(self, key: K, value: V, cost: int) -> None:
        """Keep `value`, charged `cost` bytes; evict the least recently used beyond the bounds."""
        self.pop(key)
        charged = cost + OVERHEAD
        if cost > self.max_entry or charged > self.max_bytes or self.max_entries == 0:
            return
        self._items[key] = (charged, value)
        self.bytes += charged
        while self.bytes > self.max_bytes or len(self._items) > self.max_entries:
            _, (old, _v) = self._items.popitem(last=False)
            self.bytes -= old

    def pop(self, key: K) -> V | None:
        hit = self._items.pop(key, None)
        if hit is None:
            return None
        self.bytes -= hit[0]
        return hit[1]

    def clear(self) -> None:
        self._items.clear()
        self.bytes = 0
