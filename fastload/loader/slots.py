"""Batch slots in shared memory: where workers write whole batches and the consumer reads them.

A :class:`SlotLayout` says where each fixed-size field's ``(batch_size, *shape)`` array lives
inside one slot; a :class:`SlotRing` is ``n_slots`` such slots in one
``multiprocessing.shared_memory`` block, followed by one record-index array per slot (how a
batch task reaches a worker process without pickling its indices) and one int64 per slot, the
epoch of the slot's task (image augmentations are keyed by it). The main process creates the ring and is the only one
that unlinks it; worker processes attach to it by name, worker threads use the owner's mapping.

Views handed out by :meth:`SlotRing.arrays` keep the mapping alive: closing the ring unlinks the
block at once (nothing is left in ``/dev/shm``), and the memory is unmapped when the last view of
it is gone, so a batch the consumer still holds never points at unmapped memory. A ring's name
names its owner, and a new ring first sweeps the blocks of owners that were killed before they
could unlink theirs (segments.py).
"""

from __future__ import annotations

import math
import os
import weakref
from dataclasses import dataclass
from multiprocessing import shared_memory
from typing import Mapping, Sequence

import numpy as np

from ..errors import SchemaError
from ..format.schema import Schema
from .segments import NAME_PREFIX, new_name, our_segments, sweep_dead  # noqa: F401 - re-exported

ALIGN = 64  # every field array starts on a cache line, so kernels write whole lines


def _align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


@dataclass(frozen=True)
class SlotLayout:
    """Where each fixed field's ``(batch_size, *shape)`` array lives in a slot (64-byte aligned)."""

    batch_size: int
    fields: tuple[tuple[str, str, tuple[int, ...]], ...]  # (name, NumPy dtype str, per-record shape)

    def __post_init__(self) -> None:
        if not isinstance(self.batch_size, (int, np.integer)) or isinstance(self.batch_size, bool) \
                or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, not {self.batch_size!r}")
        object.__setattr__(self, "batch_size", int(self.batch_size))
        norm = []
        for entry in self.fields:
            try:
                name, dtype, shape = entry
            except (TypeError, ValueError):
                raise ValueError(f"a slot field is (name, dtype, shape), not {entry!r}") from None
            try:
                dtype = np.dtype(dtype).str
            except TypeError:
                raise ValueError(f"slot field {name!r}: {dtype!r} is not a NumPy dtype") from None
            shape = tuple(int(d) for d in shape)
            if any(d < 1 for d in shape):
                raise ValueError(f"slot field {name!r}: shape {shape} must hold positive sizes")
            norm.append((str(name), dtype, shape))
        names = [n for n, _, _ in norm]
        if len(set(names)) != len(names):
            raise ValueError(f"slot fields repeat a name: {names}")
        object.__setattr__(self, "fields", tuple(norm))

    @classmethod
    def for_dataset(cls, schema: Schema, batch_size: int, fields: Sequence[str] | None = None,
                    images: Mapping[str, tuple] | None = None) -> "SlotLayout":
        """The layout of the fixed fields among ``fields`` (all when None) of a dataset schema.

        ``images`` maps image fields that the workers decode to their ``(dtype, per-record shape)``
        (an image pipeline's output); those become slot fields too, in schema order.
        """
        names = schema.names if fields is None else list(fields)
        images = dict(images or {})
        unknown = [n for n in names if n not in schema]
        if unknown:
            raise SchemaError(f"unknown fields {unknown}; the dataset has {schema.names}")
        not_images = [n for n in images if n not in names or schema[n].kind != "image"]
        if not_images:
            raise SchemaError(f"image transforms name {not_images}, which are not image fields among the "
                              f"loaded fields {names}")
        out = []
        for f in (schema[n] for n in names):
            if f.name in images:
                dtype, shape = images[f.name]
                out.append((f.name, np.dtype(dtype).str, tuple(shape)))
            elif f.is_dense:  # a fixed numeric field without nulls
                out.append((f.name, f.np_dtype.str, f.shape))
        return cls(batch_size, tuple(out))

    def row_bytes(self, name: str) -> int:
        """Bytes one record of field ``name`` takes."""
        for n, dtype, shape in self.fields:
            if n == name:
                return np.dtype(dtype).itemsize * math.prod(shape)
        raise KeyError(name)

    @property
    def offsets(self) -> tuple[int, ...]:
        """Byte offset of each field's array inside a slot."""
        out, pos = [], 0
        for name, _, _ in self.fields:
            out.append(pos)
            pos += _align(self.batch_size * self.row_bytes(name))
        return tuple(out)

    @property
    def slot_bytes(self) -> int:
        """Bytes of one slot: every field's array, each rounded up to 64 bytes."""
        return sum(_align(self.batch_size * self.row_bytes(n)) for n, _, _ in self.fields)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for n, _, _ in self.fields)


class _Mapping:
    """Exposes the shared block to NumPy by address and keeps it mapped while any view lives."""

    __slots__ = ("shm", "__array_interface__", "__weakref__")


def _unmap(shm: shared_memory.SharedMemory) -> None:
    shm.close()  # no buffer exports exist: views reach the memory through _Mapping, not shm.buf


def _unlink(shm: shared_memory.SharedMemory, owner_pid: int) -> None:
    """Remove the block's name, only in the process that created it (a forked child inherits
    the owner's objects, and must never unlink them)."""
    if os.getpid() == owner_pid:
        try:
            shm.unlink()
        except FileNotFoundError:
            pass


class SlotRing:
    """``n_slots`` batch slots in one shared-memory block, created and unlinked by its owner.

    Worker processes attach with ``create=False`` and the owner's ``name``; threads use the
    owner's ring directly. ``close()`` (also through ``with`` and a finalizer) unlinks the block
    in the owner and drops this ring's mapping; views already handed out stay valid until they
    are garbage.
    """

    def __init__(self, layout: SlotLayout, n_slots: int, *, create: bool = True, name: str | None = None):
        if not isinstance(n_slots, int) or n_slots < 1:
            raise ValueError(f"n_slots must be a positive integer, not {n_slots!r}")
        if not create and not name:
            raise ValueError("attaching to a slot ring (create=False) needs its name")
        self.layout = layout
        self.n_slots = n_slots
        self.owner = create
        self._slot_bytes = layout.slot_bytes
        self._index_bytes = _align(8 * layout.batch_size)
        self._index_start = n_slots * self._slot_bytes
        self._epoch_start = self._index_start + n_slots * self._index_bytes
        size = self._epoch_start + _align(8 * n_slots)
        if create:
            sweep_dead()  # a loader killed with its process group left its slots behind
            name = name or new_name()
            shm = shared_memory.SharedMemory(name=name, create=True, size=size)
        else:
            shm = shared_memory.SharedMemory(name=name)
            if shm.size < size:
                shm.close()
                raise ValueError(f"shared memory {name!r} holds {shm.size} bytes; {n_slots} slots of "
                                 f"this layout need {size}")
        self.name: str = name
        probe = np.frombuffer(shm.buf, dtype=np.uint8)
        address = probe.ctypes.data
        del probe  # releases the export on shm.buf, so shm.close() can succeed later
        mapping = _Mapping()
        mapping.shm = shm
        mapping.__array_interface__ = {"shape": (size,), "typestr": "|u1", "data": (address, False),
                                       "version": 3}
        weakref.finalize(mapping, _unmap, shm).atexit = False  # the process exit unmaps anyway
        self._base: np.ndarray | None = np.asarray(mapping)
        self._plan = [(n, np.dtype(d), s, off, layout.row_bytes(n))
                      for (n, d, s), off in zip(layout.fields, layout.offsets)]
        # Every slot's full-batch views, made once: building them took ~2 us a batch on each side
        # of the hand-off, against ~40 us for the gather of a 64 x 2049 uint16 batch
        self._views = [self._slot_views(slot) for slot in range(n_slots)]
        self._epochs = self._base[self._epoch_start : self._epoch_start + 8 * n_slots].view(np.int64)
        self._finalizer = weakref.finalize(self, _unlink, shm, os.getpid() if create else -1)

    @property
    def closed(self) -> bool:
        return self._base is None

    def _slot_views(self, slot: int) -> dict[str, np.ndarray]:
        start = slot * self._slot_bytes
        return {name: self._base[start + off : start + off + self.layout.batch_size * row].view(dtype).reshape(
                    (self.layout.batch_size, *shape)) for name, dtype, shape, off, row in self._plan}

    def arrays(self, slot: int, n: int | None = None) -> dict[str, np.ndarray]:
        """Writable C-contiguous views of slot ``slot``: ``(n, *shape)`` per field (``n`` defaults
        to the full batch size; a short last batch uses the first ``n`` rows)."""
        if self._base is None:
            raise ValueError(f"slot ring {self.name!r} is closed")
        if not 0 <= slot < self.n_slots:
            raise IndexError(f"slot {slot} is out of range for a ring of {self.n_slots} slots")
        views = self._views[slot]
        bs = self.layout.batch_size
        if n is None or n == bs:
            return dict(views)
        if not 0 <= n <= bs:
            raise ValueError(f"a slot holds 0..{bs} rows, not {n}")
        return {name: v[:n] for name, v in views.items()}

    def indices(self, slot: int) -> np.ndarray:
        """The int64 ``(batch_size,)`` record-index array of slot ``slot``: the producer writes a
        task's indices here, and the worker process reads them."""
        base = self._base
        if base is None:
            raise ValueError(f"slot ring {self.name!r} is closed")
        if not 0 <= slot < self.n_slots:
            raise IndexError(f"slot {slot} is out of range for a ring of {self.n_slots} slots")
        lo = self._index_start + slot * self._index_bytes
        return base[lo : lo + 8 * self.layout.batch_size].view(np.int64)

    def task_epochs(self) -> np.ndarray:
        """The int64 ``(n_slots,)`` array of each slot's task epoch (written with the indices)."""
        if self._base is None:
            raise ValueError(f"slot ring {self.name!r} is closed")
        return self._epochs

    def close(self) -> None:
        """Owner: unlink the block; everyone: drop this ring's mapping. Idempotent."""
        self._finalizer()
        self._base = None
        self._views = []
        self._epochs = None

    def __enter__(self) -> "SlotRing":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("owner" if self.owner else "attached")
        return f"SlotRing({self.name!r}, slots={self.n_slots}, slot_bytes={self._slot_bytes}, {state})"
