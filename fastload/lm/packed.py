"""``fastload.pack_sequences``: a dataset of fixed-length training windows over tokenized documents.

Record ``w`` of a :class:`PackedDataset` is window ``w`` of the packing index (see
:mod:`fastload.plan.packing`): ``seq_len`` tokens made of stretches of documents, separators and
padding. Reading a batch of windows plans it with NumPy (:class:`WindowBatch`), finds where the
documents' tokens lie in the source dataset's memory-mapped shards (or decompressed blocks), and
copies every stretch with **one** native call per batch, whatever the number of documents and
shards. The loader shuffles windows like any records; the document order inside the index is
fixed by its seed.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from .. import _native
from ..format.dataset import Dataset
from ..format.local_shards import LocalShards
from ..opening import Reopen, open_dataset, reopen_spec
from .index_store import collector_paused, load_or_build
from .outputs import OUTPUTS, finish_batch, packed_schema, window_bounds
from .packing_index import PackingConfig, document_lengths, token_field
from .readable import BatchReadable, check_indices, check_out
from .window_batch import WindowBatch


class PackedDataset(BatchReadable):
    """Windows of ``seq_len`` tokens over the documents of ``source[field]`` (see pack_sequences)."""

    def __init__(self, source: Dataset, *, field: str, seq_len: int, policy: str = "cut", tail: str = "drop",
                 stride: int | None = None, separator: int | None = None, pad_id: int = 0, seed: int | None = 0,
                 shuffle: str = "grid", dtype: str | None = None, outputs: Sequence[str] = ("input_ids",),
                 index_dir: str | os.PathLike | None = None):
        if not isinstance(source, Dataset):
            raise TypeError(f"pack_sequences reads a fastload Dataset, not {type(source).__name__}")
        f = token_field(source, field)
        self.source = source
        self.field = field
        self.token_dtype = f.np_dtype
        self.config = PackingConfig(field=field, seq_len=seq_len, policy=policy, tail=tail, stride=stride,
                                    separator=separator is not None, seed=seed, shuffle=shuffle)
        self.seq_len = self.config.seq_len
        self.separator, self.pad_id = separator, pad_id
        self.dtype = np.dtype(dtype or f.dtype).newbyteorder("<")
        self.outputs = tuple(outputs)
        self.schema = packed_schema(self.outputs, self.seq_len, self.dtype.name)
        # constant tokens the copy list points at: the separator, and a window's worth of padding
        self._sep = _tokens([separator if separator is not None else 0], self.token_dtype, "separator")
        self._pad = _tokens([pad_id] * self.seq_len, self.token_dtype, "pad_id")
        self._index_dir_option = index_dir
        self.index, self.index_path = load_or_build(source, self.config, self._scan, index_dir)

    def _scan(self, ds: Dataset) -> np.ndarray:
        # lengths come from the record sizes file or the offset tables alone, so no block is
        # hashed here; every batch checks its stretches against the verified blocks it reads. A
        # local dataset of raw blocks is scanned as it is (a sizes file or its tables read from
        # the files, no block verified); any other is opened again without verification first,
        # as its tables would be read from blocks (also when a sizes file then serves: 0.5 ms).
        raw_local = isinstance(ds.locator, LocalShards) and ds.manifest.settings.get("compression") == "none"
        if ds.verify != "never" and not raw_local:
            ds = open_dataset(str(ds.root), **{**ds.open_options(), "verify": "never"})
        return document_lengths(ds, self.field)

    # -- the read interface ----------------------------------------------------------------
    def __len__(self) -> int:
        return self.index.n_windows

    @property
    def root(self) -> str:
        """The documents' dataset (named in error messages)."""
        return str(self.source.root)

    def __repr__(self) -> str:
        return (f"fastload.PackedDataset({str(self.source.root)!r}, field={self.field!r}, seq_len={self.seq_len}, "
                f"policy={self.config.policy!r}, windows={len(self)}, outputs={self.outputs})")

    def reopen_spec(self) -> Reopen:
        """What a worker process needs to open this dataset again (the index is found on disk)."""
        kwargs = dict(source=reopen_spec(self.source), field=self.field, seq_len=self.seq_len,
                      policy=self.config.policy, tail=self.config.tail, stride=self.config.stride,
                      separator=self.separator, pad_id=self.pad_id, seed=self.config.seed,
                      shuffle=self.config.shuffle, dtype=self.dtype.name,
                      outputs=self.outputs, index_dir=str(self.index_path.parent))
        return Reopen(reopen_packed, kwargs)

    def storage_stats(self) -> dict[str, Any]:
        return self.source.storage_stats()

    def finish_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        return finish_batch(batch, self.seq_len)

    def gather(self, indices: Sequence[int] | np.ndarray, fields: Sequence[str] | None = None,
               out: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
        """Windows ``indices``: fixed outputs as ``(n, ...)`` arrays (into ``out`` when given),
        ``cu_seqlens`` as a VarColumn of per-window bounds."""
        idx = check_indices(indices, len(self))
        wanted = self.schema.names if fields is None else list(fields)
        for name in wanted:
            self.schema[name]  # KeyError naming the field
        out = check_out(self.schema, {k: v for k, v in (out or {}).items() if k in wanted}, len(idx))
        batch = WindowBatch(self.index, idx)
        result: dict[str, Any] = {}
        if "input_ids" in wanted:
            result["input_ids"] = self._tokens(batch, out.get("input_ids"))
        if any(name != "input_ids" for name in wanted):
            spans, span_ptr = batch.spans()
            for name in wanted:
                if name != "input_ids":
                    result[name] = self._layout_output(name, spans, span_ptr, len(idx), out.get(name))
        return {name: result[name] for name in wanted}

    def _tokens(self, batch: WindowBatch, out: np.ndarray | None) -> np.ndarray:
        n = batch.n
        if out is None:
            out = np.empty((n, self.seq_len), dtype=self.dtype)
        direct = self.dtype == self.token_dtype
        target = out if direct else np.empty((n, self.seq_len), dtype=self.token_dtype)
        # one lookup per segment: a document spanning two windows of the batch is looked up twice
        with self.source.var_payloads(batch.doc, self.field) as (addr, nbytes):
            addrs, sizes, lo, hi = batch.copy_list(addr, nbytes, self.token_dtype.itemsize, self._sep, self._pad)
            _native.gather_var(addrs, sizes, target.reshape(-1).view(np.uint8), lo, hi)
        if not direct:
            np.copyto(out, target, casting="unsafe")
        return out

    def _layout_output(self, name: str, spans: np.ndarray, span_ptr: np.ndarray, n: int, out):
        from .._kernels.packing import fill_block_causal, fill_positions  # Numba: only these outputs pay

        if name == "cu_seqlens":
            return window_bounds(spans, span_ptr, self.seq_len)
        f = self.schema[name]
        if out is None:
            out = np.empty((n, *f.shape), dtype=f.np_dtype)
        if name == "position_ids":
            fill_positions(spans, out.reshape(-1))
        else:
            fill_block_causal(spans, span_ptr, out)
        return out


def _tokens(values: list[int], dtype: np.dtype, what: str) -> np.ndarray:
    info = np.iinfo(dtype)
    for v in values[:1]:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not info.min <= v <= info.max:
            raise ValueError(f"{what} must be an integer token id that fits {dtype.name}, not {v!r}")
    return np.array(values, dtype=dtype)


def reopen_packed(source: Reopen, **kwargs) -> PackedDataset:
    """Open a packed dataset in a worker: its source first, then the index already on disk."""
    return PackedDataset(source.open(), **kwargs)


def pack_sequences(source: Dataset | str | os.PathLike, *, field: str = "tokens", seq_len: int,
                   policy: str = "cut", tail: str = "drop", stride: int | None = None,
                   separator: int | None = None, pad_id: int = 0, seed: int | None = 0, shuffle: str = "grid",
                   dtype: str | None = None, outputs: Sequence[str] = ("input_ids",),
                   index_dir: str | os.PathLike | None = None) -> PackedDataset:
    """Fixed-length training windows over a dataset of tokenized documents.

    ``source[field]`` holds one document per record (a variable-length integer array). The
    documents, shuffled by ``seed`` (``None``: in dataset order; ``shuffle="grid"``, a keyed
    two-level shuffle that keeps dataset neighbours out of each other's windows, or ``"full"``, a
    uniform keyed permutation, 10x slower to build), become windows of ``seq_len``
    tokens: ``policy="cut"`` lays them end to end, each followed by ``separator`` when given, and
    cuts every ``stride`` tokens (default ``seq_len``; the last partial window is dropped, or
    padded with ``pad_id`` when ``tail="pad"``); ``policy="best-fit"`` cuts no document shorter
    than a window and packs them best-fit decreasing, padding each window. ``outputs`` selects
    among :data:`~fastload.lm.outputs.OUTPUTS`; ``dtype`` converts the tokens (e.g. ``"int64"``).

    The index is built once per (dataset, settings), stored beside the dataset or in the cache
    directory (``index_dir`` overrides), and memory-mapped by every process that reads it.
    """
    with collector_paused():  # opening the dataset too
        if isinstance(source, (str, os.PathLike)):
            source = open_dataset(source)
        return PackedDataset(source, field=field, seq_len=seq_len, policy=policy, tail=tail, stride=stride,
                             separator=separator, pad_id=pad_id, seed=seed, shuffle=shuffle, dtype=dtype,
                             outputs=outputs, index_dir=index_dir)


__all__ = ["OUTPUTS", "PackedDataset", "pack_sequences"]
