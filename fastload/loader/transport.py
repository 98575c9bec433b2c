"""Pickling a worker's envelope: tensors travel as their raw bytes, one buffer per tensor.

A user's ``collate_fn`` in a worker process returns tensors. Plain pickle serialises a tensor
through ``torch.save`` into a buffer (a zip-less archive per tensor); torch's DataLoader moves it
to a new shared-memory file and passes its descriptor, ~1 ms per batch on this project's
2-core machine. A CPU tensor here is reduced to its NumPy view instead (protocol 5: the bytes
are copied once into the message) and rebuilt with ``torch.from_numpy`` on the other side.
torch is only looked up, never imported: a worker that made no tensor never pays for it.
"""

from __future__ import annotations

import io
import pickle
import sys
import weakref
from typing import Any, Callable

import numpy as np


def _tensor(array):
    import torch

    return torch.from_numpy(array)


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj):
        torch = sys.modules.get("torch")
        if torch is not None and type(obj) is torch.Tensor and obj.device.type == "cpu" \
                and obj.layout == torch.strided and not obj.requires_grad and not obj.is_conj() \
                and not obj.is_neg():
            try:
                array = obj.numpy()  # dtypes NumPy lacks (bfloat16, ...) raise: default pickling
            except (TypeError, RuntimeError):
                return NotImplemented
            return _tensor, (array,)
        return NotImplemented


def dumps(obj) -> bytes:
    """``pickle.dumps`` at the highest protocol, with CPU tensors as NumPy arrays."""
    buf = io.BytesIO()
    _Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buf.getvalue()


# -- a collate result through the batch's slot ------------------------------------------------------
ARENA_FIELD = "__collated__"  # the one slot field of a loader with a collate_fn: raw result bytes
ARENA_BYTES = 8 << 20  # per slot; shared memory is only backed where written, so unused room is free
_ALIGN = 64


class Packed:
    """A collate result from a worker process: the pickle, and where its buffers lie in the slot
    (``spans`` None: the buffers are in the pickle, because they did not fit)."""

    __slots__ = ("data", "spans")

    def __init__(self, data: bytes, spans: list[tuple[int, int]] | None):
        self.data, self.spans = data, spans

    def __reduce__(self):
        return Packed, (self.data, self.spans)


def pack(obj, arena) -> Packed:
    """Pickle ``obj`` with its array buffers copied into ``arena`` (a flat uint8 slot view): the
    result's bytes cross to the main process through shared memory, not the pipe (a 1 MB padded
    batch through the pipe cost ~3.5 ms of the main process per batch on this 2-core machine)."""
    buffers: list = []
    buf = io.BytesIO()
    _Pickler(buf, protocol=5, buffer_callback=buffers.append).dump(obj)
    raws = [b.raw() for b in buffers]
    offsets, end = [], 0
    for raw in raws:
        offsets.append(end)
        end += -(-raw.nbytes // _ALIGN) * _ALIGN
    if end > arena.nbytes:
        return Packed(dumps(obj), None)
    for raw, off in zip(raws, offsets):
        arena[off: off + raw.nbytes] = raw.cast("B")
    return Packed(buf.getvalue(), [(off, raw.nbytes) for raw, off in zip(raws, offsets)])


def unpack(packed: Packed, arena, copy: bool = True):
    """The collate result, its buffers copied out of ``arena`` (the slot is reused at once), or,
    with ``copy=False``, views of it (``arena`` is then a :func:`leased` view: the slot waits
    until they are gone)."""
    if packed.spans is None:
        return pickle.loads(packed.data)
    return pickle.loads(packed.data, buffers=[arena[off: off + n].copy() if copy else arena[off: off + n]
                                              for off, n in packed.spans])


class _Lease:
    """A slot's arena seen by NumPy through this object: every array unpacked from it keeps it
    alive, so its finalizer runs when the consumer's last tensor of the batch is garbage."""

    __slots__ = ("__array_interface__", "arena", "__weakref__")


def leased(arena: np.ndarray, release: Callable[[], None]) -> np.ndarray:
    """A view of ``arena`` (a slot's flat uint8 view) whose last view's death calls ``release()``.

    Results unpacked from it are not copied: the tensors of a 1 MB padded batch cost the main
    process ~80 us a batch to copy out on this 2-core machine, as much as the rest of its work.
    Like torch's DataLoader's batches, they stay valid for as long as the user holds them."""
    lease = _Lease()
    lease.arena = arena  # keeps the ring's mapping alive while the batch lives
    lease.__array_interface__ = {"shape": (arena.nbytes,), "typestr": "|u1", "data": (arena.ctypes.data, False),
                                 "version": 3}
    weakref.finalize(lease, release).atexit = False
    return np.asarray(lease)


def result_nbytes(obj: Any, depth: int = 0) -> int:
    """Bytes of the tensors and arrays in a collate result (dicts, lists and tuples walked, 8
    levels at most): what a batch delivers, not the slot room it came through."""
    if hasattr(obj, "element_size") and hasattr(obj, "nelement"):  # a torch.Tensor
        return obj.element_size() * obj.nelement()
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if depth >= 8:
        return 0
    if isinstance(obj, dict):
        return sum(result_nbytes(v, depth + 1) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(result_nbytes(v, depth + 1) for v in obj)
    return 0
