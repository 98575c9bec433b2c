"""The default shard locator of a Dataset: a local directory, read in place."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FormatError
from .manifest import Manifest
from .shard_reader import map_file
from .spec import MANIFEST_NAME


class LocalShards:
    """Where shards are: a local directory, read in place (the default locator of a Dataset).

    A locator answers "where is shard s" for :class:`Dataset`: ``open()`` gives the manifest,
    ``map(s)`` the shard's bytes as a uint8 array (kept open while the array lives), ``where(name)``
    a name for messages. ``max_open`` bounds how many shards a dataset keeps mapped (None: all);
    the storage layer provides the remote locator, so this module imports nothing above it.
    """

    max_open: int | None = None

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def open(self) -> Manifest:
        path = self.root / MANIFEST_NAME
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise FormatError(f"{self.root} is not a fastload dataset (no {MANIFEST_NAME})") from None
        self.manifest = Manifest.loads(data, str(path))
        return self.manifest

    def where(self, name: str) -> str:
        return str(self.root / name)

    def map(self, s: int) -> np.ndarray:
        name = self.manifest.shard_names[s]
        path = self.root / name
        expected = int(self.manifest.shard_bytes[s])
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise FormatError(f"shard {path} is missing (listed in the manifest)") from None
        if size != expected:
            raise FormatError(f"shard {path} is {size} bytes but the manifest says {expected}: truncated or replaced")
        try:
            return map_file(path)
        except OSError as exc:
            raise FormatError(f"shard {path}: cannot be opened ({exc.strerror or exc})") from exc

    def open_options(self) -> dict[str, Any]:
        return {}

    def note_memory(self, hits: int, misses: int) -> None:
        """Block-cache counters of the reading dataset (kept only by locators that report them)."""

    def stats(self) -> dict[str, Any]:
        return {}
