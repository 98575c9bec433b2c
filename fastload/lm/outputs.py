"""What a packed window carries besides its tokens, and the batch-level form of document bounds.

Per window (a record of a packed dataset):

* ``input_ids``: ``seq_len`` tokens (documents, separators, then padding);
* ``position_ids``: int64, restarting at 0 at each document's stretch in the window (and at the
  padding), as Megatron's ``reset_position_ids`` and Hugging Face's flattening collator do;
* ``cu_seqlens``: int32 bounds of the window's stretches, ``[0, ..., seq_len]`` (flash-attention's
  varlen form for one window);
* ``attention_mask``: ``(seq_len, seq_len)`` bool, causal and block-diagonal per document (a
  query sees the keys at or before it in its own document): Megatron's reset attention mask.
  It is ``seq_len**2`` bytes per window: 4 MB at 2048, so ask for it only at short lengths.

Per batch, :func:`finish_batch` replaces the windows' ``cu_seqlens`` by the batch's: the bounds
of all stretches of the flattened ``(B * seq_len)`` tokens, with ``max_seqlen``, the longest
stretch: what ``flash_attn_varlen_func`` takes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..format.columns import VarColumn
from ..format.schema import Field, Schema

OUTPUTS = ("input_ids", "position_ids", "cu_seqlens", "attention_mask")


def packed_schema(outputs: tuple[str, ...], seq_len: int, token_dtype: str) -> Schema:
    """The schema of a packed dataset's records (one per window) for these outputs."""
    unknown = [o for o in outputs if o not in OUTPUTS]
    if unknown or "input_ids" not in outputs:
        raise ValueError(f"outputs must include 'input_ids' and be among {OUTPUTS}, not {outputs!r}")
    fields = {
        "input_ids": Field("input_ids", "array", dtype=token_dtype, shape=(seq_len,)),
        "position_ids": Field("position_ids", "array", dtype="int64", shape=(seq_len,)),
        "cu_seqlens": Field("cu_seqlens", "array", dtype="int32", shape=(-1,)),
        "attention_mask": Field("attention_mask", "array", dtype="bool", shape=(seq_len, seq_len)),
    }
    return Schema(tuple(fields[o] for o in OUTPUTS if o in outputs))


def window_bounds(spans: np.ndarray, span_ptr: np.ndarray, seq_len: int) -> VarColumn:
    """Each window's ``cu_seqlens`` ([0, ..., seq_len], int32) as a variable column.

    Every window's spans add up to ``seq_len`` (padding is a span), so window b starts at
    ``b * seq_len`` of the batch's flattened tokens.
    """
    n = len(span_ptr) - 1
    per_window = np.diff(span_ptr)
    owner = np.repeat(np.arange(n, dtype=np.int64), per_window)
    starts = np.zeros(len(spans), dtype=np.int64)
    np.cumsum(spans[:-1], out=starts[1:])
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(per_window + 1, out=offsets[1:])
    vals = np.empty(int(offsets[-1]), dtype=np.int32)
    vals[np.arange(len(spans)) + owner] = starts - owner * seq_len
    vals[offsets[1:] - 1] = seq_len
    return VarColumn(offsets * 4, vals.view(np.uint8))


def finish_batch(batch: dict[str, Any], seq_len: int) -> dict[str, Any]:
    """Turn per-window ``cu_seqlens`` (a list of arrays) into the batch's, with ``max_seqlen``."""
    per_window = batch.get("cu_seqlens")
    if per_window is None or not isinstance(per_window, list):
        return batch
    parts = [np.asarray(b[:-1], dtype=np.int32) + np.int32(k * seq_len) for k, b in enumerate(per_window)]
    cu = np.concatenate(parts + [np.array([len(per_window) * seq_len], dtype=np.int32)])
    batch["cu_seqlens"] = cu
    batch["max_seqlen"] = int(np.diff(cu).max()) if len(cu) > 1 else 0
    return batch
