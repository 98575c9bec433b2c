"""Storage counters shared across processes: one small memory-mapped file per process, summed by readers.

Loader workers may be processes, so the counters of one dataset opened in several processes must
be added up somewhere every process can see: each process writes its own 64-byte file
``<group>-<pid>.bin`` under the dataset's cache directory (plain stores into a map, no lock
between processes; every dataset a process opens in one group shares the file), and readers sum
the files whose name carries the same ``group`` (a loader and the workers that reopen its dataset
share one). A process holds ``LOCK_SH`` on its file while it lives; at each open, files nobody
holds any more are folded into ``<group>.totals`` and deleted, so the directory holds one file per
live process and one per group, and the sums stay whole. ``fastload cache clear`` removes them
with the dataset's directory.
"""

from __future__ import annotations

import fcntl
import logging
import mmap
import os
import secrets
import threading
from pathlib import Path

import numpy as np

from .locks import same_file

FIELDS = ("hits", "misses", "bytes_downloaded", "download_s", "wait_s", "evictions",
          "memory_hits", "memory_misses")
_SIZE = 8 * len(FIELDS)
LIVE = ".bin"
TOTALS = ".totals"
FOLD_LOCK = ".fold"
# ``a[i] += x`` is three bytecodes, and two Counters of one process may share a file: one lock
_LOCK = threading.Lock()
log = logging.getLogger("fastload.storage")


class Counters:
    """This process's counters for one dataset and group, created on first use after each fork."""

    def __init__(self, directory: Path, group: str):
        self.directory = Path(directory)
        self.group = group
        self._pid: int | None = None
        self._values: np.ndarray | None = None
        self._disabled: int | None = None  # the pid in which the file could not be made

    def _array(self) -> np.ndarray:
        if self._values is None or self._pid != os.getpid():
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / f"{self.group}-{os.getpid()}{LIVE}"
            while True:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    # held as long as the map (which keeps a duplicate of fd): this process is alive
                    fcntl.flock(fd, fcntl.LOCK_SH)
                    if same_file(fd, path):  # not folded away between open and lock
                        if os.fstat(fd).st_size < _SIZE:
                            os.ftruncate(fd, _SIZE)
                        mm = mmap.mmap(fd, _SIZE)
                        break
                finally:
                    os.close(fd)
            self._values, self._pid = np.frombuffer(mm, dtype="<f8"), os.getpid()
        return self._values

    def add(self, **amounts: float) -> None:
        with _LOCK:
            if self._disabled == os.getpid():
                return
            try:
                values = self._array()
            except OSError as exc:  # a cache directory this process may not write: reads fail on their own
                log.warning("storage counters disabled: cannot write %s (%s)", self.directory, exc.strerror)
                self._disabled = os.getpid()
                return
            for name, x in amounts.items():
                values[FIELDS.index(name)] += x


def fold_dead(directory: Path) -> int:
    """Fold the files of processes that have ended (nobody holds their lock) into their group's
    totals file and delete them; returns how many. Processes folding at once take turns."""
    directory = Path(directory)
    try:
        names = [n for n in os.listdir(directory) if n.endswith(LIVE)]
    except FileNotFoundError:
        return 0
    if not names:
        return 0
    folded = 0
    lock = os.open(directory / FOLD_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # held for a few small reads and writes
        for name in names:
            path = directory / name
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its process is alive
                data = os.pread(fd, _SIZE, 0)
                group = name[: -len(LIVE)].rsplit("-", 1)[0]
                if len(data) == _SIZE:
                    totals = directory / f"{group}{TOTALS}"
                    values = _read(totals) + np.frombuffer(data, dtype="<f8")
                    tmp = directory / f"{group}{TOTALS}.{secrets.token_hex(4)}"
                    tmp.write_bytes(values.astype("<f8").tobytes())
                    os.replace(tmp, totals)
                os.unlink(path)
                folded += 1
            finally:
                os.close(fd)
    finally:
        os.close(lock)
    return folded


def _read(path: Path) -> np.ndarray:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return np.zeros(len(FIELDS))
    return np.frombuffer(data, dtype="<f8").astype(float) if len(data) == _SIZE else np.zeros(len(FIELDS))


def read_totals(directory: Path, group: str | None = None) -> dict[str, float]:
    """Sum of every process's counters under ``directory``, ended ones included (only ``group``'s
    when given)."""
    total = np.zeros(len(FIELDS))
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        names = []
    for name in names:
        if name.endswith(LIVE):
            owner = name[: -len(LIVE)].rsplit("-", 1)[0]
        elif name.endswith(TOTALS):
            owner = name[: -len(TOTALS)]
        else:
            continue
        if group is None or owner == group:
            total += _read(Path(directory) / name)
    return dict(zip(FIELDS, total.tolist()))
