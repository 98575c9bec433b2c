"""Remote datasets and the node-local shard cache: fsspec access, the shared cache, eviction, prefetch.

Importing this package is cheap: fsspec and its backends are imported when a remote dataset opens.
"""

from .config import CacheConfig
from .eviction import Entry, choose_victims

__all__ = ["CacheConfig", "Entry", "choose_victims"]
