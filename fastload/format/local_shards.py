"""The default shard locator of a Dataset: a local directory, read in place."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FormatError
from .manifest import Manifest
from .files import map_fd, open_regular, read_regular
from .spec import MANIFEST_NAME, MAX_MANIFEST_BYTES


class LocalShards:
    """Where shards are: a local directory, read in place (the default locator of a Dataset).

    A locator answers "where is shard s" for :class:`Dataset`: ``open()`` gives the manifest,
    ``map(s)`` the shard's bytes as a uint8 array (kept open while the array lives), ``where(name)``
    a name for messages. ``max_open`` bounds how many shards a dataset keeps mapped (None: all;
    a batch touching more is then gathered one shard at a time, see staged.py); the storage
    layer provides the remote locator, so this module imports nothing above it.
    """

    max_open: int | None = None

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def open(self) -> Manifest:
        path = self.root / MANIFEST_NAME
        try:
            data = read_regular(path, MAX_MANIFEST_BYTES)
        except FileNotFoundError:
            raise FormatError(f"{self.root} is not a fastload dataset (no {MANIFEST_NAME})") from None
        except OSError as exc:
            raise FormatError(f"manifest {path} cannot be read: {exc.strerror or exc}") from None
        self.manifest = Manifest.loads(data, str(path))
        return self.manifest

    def where(self, name: str) -> str:
        return str(self.root / name)

    def map(self, s: int) -> np.ndarray:
        """Shard ``s`` mapped read-only: a regular file directly inside the dataset directory (the
        manifest's names are plain file names, and a symlink, FIFO or device is refused unopened)."""
        path = self.root / self.manifest.shard_names[s]
        expected = int(self.manifest.shard_bytes[s])
        try:
            fd = open_regular(path)
        except FileNotFoundError:
            raise FormatError(f"shard {path} is missing (listed in the manifest)") from None
        except OSError as exc:
            raise FormatError(f"shard {path} cannot be opened: {exc.strerror or exc}") from None
        try:
            size = os.fstat(fd).st_size
            if size != expected:
                raise FormatError(f"shard {path} is {size} bytes but the manifest says {expected}: "
                                  "truncated or replaced")
            return map_fd(fd)
        except OSError as exc:
            raise FormatError(f"shard {path} cannot be mapped: {exc.strerror or exc}") from None
        finally:
            os.close(fd)

    def open_options(self) -> dict[str, Any]:
        return {}

    def note_memory(self, hits: int, misses: int) -> None:
        """Block-cache counters of the reading dataset (kept only by locators that report them)."""

    def stats(self) -> dict[str, Any]:
        return {}
