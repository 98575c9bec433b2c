"""Which cached shards to evict: a pure function of the entries and the bytes needed.

Belady's rule with the loader's known order: the shard whose next use is furthest away goes
first. Shards with no known next use (other jobs' shards, or this job's beyond the planned horizon)
are treated as furthest of all and go first, least recently used first. Shards in use (mapped by
a reader) or inside the current prefetch window are never evicted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Iterable


@dataclass(frozen=True, kw_only=True)
class Entry:
    """One cached shard as the evictor sees it."""

    key: Hashable
    size: int
    in_use: bool = False  # mapped by some reader (holds a shared lock on the file)
    protected: bool = False  # needed inside the current window
    next_use: float | None = None  # position in the known order; None: unknown
    last_use: float = 0.0  # a timestamp; larger is more recent


def eviction_order(entries: Iterable[Entry]) -> list[Entry]:
    """Evictable entries, first victim first: unknown next use by LRU, then furthest next use."""
    free = [e for e in entries if not (e.in_use or e.protected)]
    unknown = sorted((e for e in free if e.next_use is None), key=lambda e: e.last_use)
    known = sorted((e for e in free if e.next_use is not None), key=lambda e: (-e.next_use, e.last_use))
    return unknown + known


def choose_victims(entries: Iterable[Entry], need: int) -> list[Entry]:
    """The fewest entries, in eviction order, that free at least ``need`` bytes.

    Returns an empty list when even evicting every evictable entry would not free ``need``:
    evicting then would only destroy cached data without making the room asked for.
    """
    if need <= 0:
        return []
    victims, freed = [], 0
    for e in eviction_order(entries):
        victims.append(e)
        freed += e.size
        if freed >= need:
            return victims
    return []
