"""A bounded, thread-safe LRU of decompressed blocks, so reading a compressed block's records in
order decompresses it once rather than once per record."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Hashable

import numpy as np


class BlockCache:
    """Keeps up to ``capacity`` bytes of decoded blocks; the least recently used go first."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._items: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, load: Callable[[], np.ndarray]) -> np.ndarray:
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return hit
            self.misses += 1
        value = load()  # outside the lock: decompression releases the GIL and may run in parallel
        with self._lock:
            if key not in self._items and value.nbytes <= self.capacity:
                self._items[key] = value
                self._bytes += value.nbytes
                while self._bytes > self.capacity:
                    _, old = self._items.popitem(last=False)
                    self._bytes -= old.nbytes
        return value

    @property
    def nbytes(self) -> int:
        return self._bytes
