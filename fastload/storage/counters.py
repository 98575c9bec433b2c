"""Storage counters shared across processes: one small memory-mapped file per process, summed by readers.

Loader workers may be processes, so the counters of one dataset opened in several processes must
be added up somewhere every process can see: each process writes its own 64-byte file under the
dataset's cache directory (plain stores into a map, no lock between processes), and readers sum
the files whose name carries the same ``group`` (a loader and the workers that reopen its dataset
share one). The files stay after the process ends, which is what gives ``fastload cache stats``
its hit rate; ``fastload cache clear`` removes them.
"""

from __future__ import annotations

import mmap
import os
import secrets
import threading
from pathlib import Path

import numpy as np

FIELDS = ("hits", "misses", "bytes_downloaded", "download_s", "wait_s", "evictions",
          "memory_hits", "memory_misses")
_SIZE = 8 * len(FIELDS)


class Counters:
    """This process's counters for one dataset and group, created on first use after each fork."""

    def __init__(self, directory: Path, group: str):
        self.directory = Path(directory)
        self.group = group
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._values: np.ndarray | None = None

    def _array(self) -> np.ndarray:
        if self._values is None or self._pid != os.getpid():
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / f"{self.group}-{os.getpid()}-{secrets.token_hex(4)}.bin"
            with open(path, "w+b") as f:
                f.truncate(_SIZE)
                mm = mmap.mmap(f.fileno(), _SIZE)
            self._values, self._pid = np.frombuffer(mm, dtype="<f8"), os.getpid()
        return self._values

    def add(self, **amounts: float) -> None:
        with self._lock:  # ``a[i] += x`` is three bytecodes: threads would lose updates without it
            values = self._array()
            for name, x in amounts.items():
                values[FIELDS.index(name)] += x

    def set(self, name: str, value: float) -> None:
        with self._lock:
            self._array()[FIELDS.index(name)] = value


def read_totals(directory: Path, group: str | None = None) -> dict[str, float]:
    """Sum of every process's counters under ``directory`` (only ``group``'s when given)."""
    total = np.zeros(len(FIELDS))
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        names = []
    for name in names:
        if not name.endswith(".bin") or (group is not None and not name.startswith(group + "-")):
            continue
        try:
            data = (Path(directory) / name).read_bytes()
        except FileNotFoundError:
            continue
        if len(data) == _SIZE:
            total += np.frombuffer(data, dtype="<f8")
    return dict(zip(FIELDS, total.tolist()))
