"""Read Megatron-LM / NeMo / fairseq indexed datasets (``MMIDIDX`` ``.bin`` + ``.idx`` pairs).

The ``.idx`` file (all little-endian): the 9-byte magic ``MMIDIDX\\0\\0``, a u64 version (1), a u8
dtype code, u64 sequence count S, u64 document-index count D, then int32 ``lengths[S]`` (tokens
per sequence), int64 ``pointers[S]`` (byte offset of each sequence in the ``.bin``), int64
``document_indices[D]`` (sequence numbers where documents start, from 0 to S), and, for
multimodal datasets, int8 ``modes[S]`` (present when the file is S bytes longer). The ``.bin``
holds the tokens. Dtype codes: 1 uint8, 2 int8, 3 int16, 4 int32, 5 int64, 8 uint16, and
fairseq's 9 uint32, 10 uint64; codes 6 and 7 are floats whose width differs between the
libraries (megatron-core: 6 float64, 7 float32; fairseq: both float64), so their width is
taken from the ``.bin`` size.

Records are sequences (``records="sequence"``, Megatron's GPT "documents"): ``tokens`` and
``document`` (the document the sequence belongs to), plus ``mode`` (int8) when multimodal; or
whole documents (``records="document"``): ``tokens`` (its sequences concatenated),
``sequence_lengths`` (int32), plus ``modes`` when multimodal. Several pairs are read in sorted
order as one dataset, documents numbered across them. Everything is checked against the files
before a row is read: a pointer or length outside the ``.bin`` is a SourceError naming the file
and the sequence.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from ...errors import SourceError, StorageError
from ...format.schema import Field, Schema
from .base import BadRow, Chunk, Source, SourceInfo, sorted_paths
from .files import InputFiles, is_url, read_index

MAGIC = b"MMIDIDX\x00\x00"
HEADER = struct.Struct("<9sQBQQ")
DTYPES = {1: "uint8", 2: "int8", 3: "int16", 4: "int32", 5: "int64", 8: "uint16", 9: "uint32", 10: "uint64"}
FLOAT_CODES = (6, 7)
RECORDS = ("sequence", "document")
SEGMENT_BYTES = 64 << 20


@dataclass(frozen=True)
class _Pair:
    """One .bin/.idx pair, its index arrays read and checked."""

    prefix: str
    dtype: np.dtype
    lengths: np.ndarray  # int64, per sequence
    pointers: np.ndarray  # int64, per sequence
    doc_starts: np.ndarray  # int64, D: first sequence of each document, then S
    modes: np.ndarray | None  # int8, per sequence

    @property
    def n_sequences(self) -> int:
        return len(self.lengths)


@dataclass(frozen=True)
class MegatronSegment:
    """Records ``[start, stop)`` of pair ``pair`` (sequences or documents, per the source's mode)."""

    pair: int
    start: int
    stop: int


def read_pair(prefix: str, files: InputFiles | None = None) -> _Pair:
    """Read and check the index of ``prefix.idx`` against ``prefix.bin`` (local or at a URL)."""
    idx_path, bin_path = prefix + ".idx", prefix + ".bin"
    files = files or InputFiles()
    try:
        raw = np.frombuffer(read_index(idx_path, files), dtype=np.uint8)
        bin_size = files.size(bin_path)
    except StorageError:
        raise
    except OSError as exc:
        raise SourceError(f"{prefix}: cannot read the .idx/.bin pair: {exc}") from None
    if raw.size < HEADER.size:
        raise SourceError(f"{idx_path}: {raw.size} bytes, too short for an MMIDIDX header")
    magic, version, code, n_seq, n_doc = HEADER.unpack(raw[:HEADER.size].tobytes())
    if magic != MAGIC:
        raise SourceError(f"{idx_path}: not a Megatron/fairseq MMIDIDX index (magic {magic!r})")
    if version != 1:
        raise SourceError(f"{idx_path}: MMIDIDX version {version} is not supported (only 1)")
    base = HEADER.size + 12 * n_seq + 8 * n_doc
    extra = raw.size - base
    if n_seq > raw.size or n_doc > raw.size or extra not in (0, n_seq):
        raise SourceError(f"{idx_path}: {raw.size} bytes, but the header counts {n_seq} sequences and "
                          f"{n_doc} document indices (truncated or not MMIDIDX)")
    lengths = raw[HEADER.size:HEADER.size + 4 * n_seq].view("<i4").astype(np.int64)
    pointers = raw[HEADER.size + 4 * n_seq:HEADER.size + 12 * n_seq].view("<i8").astype(np.int64)
    doc_starts = raw[HEADER.size + 12 * n_seq:base].view("<i8").astype(np.int64)
    modes = raw[base:].view(np.int8).copy() if extra and n_seq else None
    dtype = np.dtype(_dtype(code, lengths, bin_size, idx_path)).newbyteorder("<")
    if n_seq and lengths.min() < 0:
        raise SourceError(f"{idx_path}: sequence {int(np.argmin(lengths))} has a negative length")
    ends = pointers + lengths * dtype.itemsize
    bad = (pointers < 0) | (ends > bin_size)
    if bad.any():
        s = int(np.argmax(bad))
        raise SourceError(f"{idx_path}: sequence {s} lies at bytes {int(pointers[s])}..{int(ends[s])} of "
                          f"{bin_path}, which holds {bin_size} bytes")
    if (len(doc_starts) < 1 or doc_starts[0] != 0 or doc_starts[-1] != n_seq
            or np.any(np.diff(doc_starts) < 0)):
        raise SourceError(f"{idx_path}: the document indices must rise from 0 to the sequence count {n_seq}")
    return _Pair(prefix, dtype, lengths, pointers, doc_starts, modes)


def _dtype(code: int, lengths: np.ndarray, bin_size: int, where: str) -> str:
    if code in DTYPES:
        return DTYPES[code]
    if code in FLOAT_CODES:
        total = int(lengths.sum())
        if total and bin_size == 4 * total:
            return "float32"
        if total and bin_size == 8 * total:
            return "float64"
        return "float64" if code == 6 else "float32"  # megatron-core's table
    raise SourceError(f"{where}: unknown dtype code {code} (known: {sorted(DTYPES) + list(FLOAT_CODES)})")


def _prefixes(paths: Sequence[str]) -> list[str]:
    """The pairs' prefixes: from .bin/.idx paths, prefixes, or directories holding pairs."""
    found = []
    for p in paths:
        if not is_url(p) and os.path.isdir(p):
            found += [os.path.join(p, n) for n in os.listdir(p) if n.endswith((".idx", ".bin"))]
        else:
            found.append(p)
    prefixes = sorted({p[:-4] if p.endswith((".idx", ".bin")) else p for p in found})
    if not prefixes:
        raise SourceError(f"{', '.join(paths)}: holds no .bin/.idx pair")
    for prefix in prefixes:
        for suffix in (".idx", ".bin"):
            if not is_url(prefix) and not os.path.isfile(prefix + suffix):  # a URL's pair: read_pair checks
                raise SourceError(f"{prefix}: an indexed dataset needs both {prefix}.idx and {prefix}.bin; "
                                  f"{prefix + suffix} is missing")
    return prefixes


class MegatronSource(Source):
    """Megatron/NeMo/fairseq ``.bin`` + ``.idx`` pairs (paths of either file, or their prefixes)."""

    def __init__(self, paths: str | os.PathLike | Sequence[str | os.PathLike], *, records: str = "sequence",
                 segment_size: int = SEGMENT_BYTES):
        if records not in RECORDS:
            raise ValueError(f"records must be one of {RECORDS}, not {records!r}")
        self.prefixes = _prefixes(sorted_paths(paths, "Megatron .bin/.idx files"))
        self.records = records
        self.segment_size = segment_size
        self.description = f"megatron: {self.prefixes[0]} ({len(self.prefixes)} .bin/.idx pairs)"
        self._pairs: list[_Pair] | None = None

    def _read(self) -> list[_Pair]:
        if self._pairs is None:
            pairs = [read_pair(p, self.files) for p in self.prefixes]
            if len({p.dtype for p in pairs}) > 1 or len({p.modes is None for p in pairs}) > 1:
                raise SourceError(f"{self.description}: the pairs differ in dtype or multimodality; pack them apart")
            self._pairs = pairs
        return self._pairs

    def info(self) -> SourceInfo:
        pairs = self._read()
        dtype = pairs[0].dtype.name
        multimodal = pairs[0].modes is not None
        if self.records == "sequence":
            fields = [Field("tokens", "array", dtype=dtype, shape=(-1,)), Field("document", "scalar", dtype="int64")]
            fields += [Field("mode", "scalar", dtype="int8")] if multimodal else []
        else:
            fields = [Field("tokens", "array", dtype=dtype, shape=(-1,)),
                      Field("sequence_lengths", "array", dtype="int32", shape=(-1,))]
            fields += [Field("modes", "array", dtype="int8", shape=(-1,))] if multimodal else []
        meta = {"megatron": {"records": self.records, "dtype": dtype, "multimodal": multimodal,
                             "pairs": [os.path.basename(p.prefix) for p in pairs]}}
        return SourceInfo(schema=Schema(tuple(fields)), metadata=meta,
                          bytes_hint=sum(self.files.size(p.prefix + ".bin") for p in pairs))

    def _units(self, pair: _Pair) -> np.ndarray:
        """Sequence bounds of each record: per sequence, or per document."""
        if self.records == "sequence":
            return np.arange(pair.n_sequences + 1, dtype=np.int64)
        return pair.doc_starts

    def segments(self) -> list[MegatronSegment]:
        out = []
        for i, pair in enumerate(self._read()):
            bounds = self._units(pair)
            token_end = np.concatenate([[0], np.cumsum(pair.lengths)]) * pair.dtype.itemsize
            unit_bytes = np.diff(token_end[bounds])
            start = 0
            while start < len(unit_bytes):
                # at least one record per segment, then records up to segment_size bytes
                stop = int(np.searchsorted(np.cumsum(unit_bytes[start:]), self.segment_size, side="right")) + start
                stop = max(stop, start + 1)
                out.append(MegatronSegment(i, start, stop))
                start = stop
        return out

    def segment_bytes(self, segment: MegatronSegment) -> int:
        pair = self._read()[segment.pair]
        b = self._units(pair)
        return int(pair.lengths[b[segment.start]:b[segment.stop]].sum()) * pair.dtype.itemsize

    def read(self, segment: MegatronSegment) -> Iterator[Chunk | BadRow]:
        import pyarrow as pa

        pairs = self._read()
        pair = pairs[segment.pair]
        bounds = self._units(pair)
        lo, hi = int(bounds[segment.start]), int(bounds[segment.stop])
        tokens = _tokens(pair, lo, hi, self.files)
        offsets = np.concatenate([[0], np.cumsum(pair.lengths[lo:hi])])
        if self.records == "sequence":
            docs_before = sum(len(p.doc_starts) - 1 for p in pairs[:segment.pair])
            doc = np.searchsorted(pair.doc_starts, np.arange(lo, hi), side="right") - 1 + docs_before
            columns = {"tokens": pa.LargeListArray.from_arrays(offsets, tokens), "document": doc.astype(np.int64)}
            if pair.modes is not None:
                columns["mode"] = pair.modes[lo:hi]
        else:
            rec = bounds[segment.start:segment.stop + 1] - lo
            columns = {"tokens": pa.LargeListArray.from_arrays(offsets[rec], tokens),
                       "sequence_lengths": pa.LargeListArray.from_arrays(rec, pair.lengths[lo:hi].astype(np.int32))}
            if pair.modes is not None:
                columns["modes"] = pa.LargeListArray.from_arrays(rec, pair.modes[lo:hi])
        yield Chunk(columns, origin=pair.prefix + ".bin", first_row=segment.start, row_label=self.records)


def _tokens(pair: _Pair, lo: int, hi: int, files: InputFiles) -> np.ndarray:
    """Tokens of sequences [lo, hi), a view of the mapped .bin where they are contiguous (of one
    ranged read of the bytes they span, for a remote .bin)."""
    isz = pair.dtype.itemsize
    ptr, n = pair.pointers[lo:hi], pair.lengths[lo:hi]
    if hi == lo:
        return np.zeros(0, dtype=pair.dtype)
    if is_url(pair.prefix):
        first, end = int(ptr.min()), int((ptr + n * isz).max())
        with files.open(pair.prefix + ".bin") as f:
            f.seek(first)
            data = np.frombuffer(f.read(end - first), dtype=np.uint8)
        ptr = ptr - first
    else:
        data = np.memmap(pair.prefix + ".bin", dtype=np.uint8, mode="r")
    if np.array_equal(ptr[1:], ptr[:-1] + n[:-1] * isz):  # written by a builder: back to back
        return data[ptr[0]:ptr[-1] + n[-1] * isz].view(pair.dtype)
    return np.concatenate([data[p:p + k * isz].view(pair.dtype) for p, k in zip(ptr.tolist(), n.tolist())])
