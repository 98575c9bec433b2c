"""Read a MosaicML Streaming (MDS) dataset, index.json plus shard files, without the peer package.

The on-disk format (streaming 0.13, index version 2), learnt from its writer:

* ``index.json`` is ``{"version": 2, "shards": [...]}``; each shard entry names its columns
  (``column_names``, sorted by name), their ``column_encodings`` and ``column_sizes`` (bytes, or
  null when variable), the number of ``samples``, ``compression`` (null, ``zstd`` or
  ``zstd:LEVEL``, ...), ``raw_data`` (the uncompressed file) and ``zip_data`` (the compressed file
  actually written when compression is on).
* A shard file (after decompression) is ``uint32 n``, ``uint32 offsets[n + 1]`` (absolute byte
  positions of the samples in the file), the writer's JSON config, then the samples.
* A sample is one ``uint32`` size per *variable* column, in column order, then every column's
  bytes in column order.

Every number is a little-endian ``uint32``: a shard file is limited to 4 GiB.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from ...errors import SourceError, StorageError
from ...format.schema import Field, Schema
from .base import BadRow, Chunk, Source, SourceInfo
from .files import InputFiles, is_url, read_index

ROWS_PER_CHUNK = 4096
# MDS scalar encodings -> the NumPy dtype of their fixed-size little-endian bytes
_SCALARS = {
    "int": "int64", "uint8": "uint8", "uint16": "uint16", "uint32": "uint32", "uint64": "uint64",
    "int8": "int8", "int16": "int16", "int32": "int32", "int64": "int64",
    "float16": "float16", "float32": "float32", "float64": "float64",
}
# dtype codes of the ``ndarray`` encoding when the dtype is stored in each sample
_NDARRAY_DTYPES = {
    8: "uint8", 9: "int8", 16: "uint16", 17: "int16", 18: "float16", 32: "uint32", 33: "int32",
    34: "float32", 64: "uint64", 65: "int64", 66: "float64",
}
_NDARRAY_SHAPE_DTYPES = ("<u1", "<u2", "<u4", "<u8")
# PIL modes whose raw bytes are whole 8-bit channels, so pixels can become a uint8 array
_PIL_8BIT_MODES = {"L", "LA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}
_UNSUPPORTED = {
    "pkl": "pickled objects would run code when read; fastload does not unpickle",
    "list[pil]": "lists of images have no fastload field kind",
    "list[jpeg]": "lists of images have no fastload field kind",
    "list[png]": "lists of images have no fastload field kind",
    "jpeg_array": "lists of images have no fastload field kind",
    "jpegarray": "lists of images have no fastload field kind",
}


def pil_raw_to_array(data: bytes | memoryview) -> np.ndarray:
    """Pixels of a raw PIL image as ``uint8 (height, width, channels)``.

    Both MDS's ``pil`` encoding and LitData's ``pil`` serializer store ``uint32 width, height,
    len(mode)``, the mode name, then ``Image.tobytes()``.
    """
    if len(data) < 12:
        raise ValueError("raw PIL image shorter than its 12-byte header")
    width, height, mode_len = (int(v) for v in np.frombuffer(data, "<u4", count=3))
    mode = bytes(data[12 : 12 + mode_len]).decode("ascii", "replace")
    if mode not in _PIL_8BIT_MODES:
        raise ValueError(f"PIL mode {mode!r} is not 8 bits per channel ({sorted(_PIL_8BIT_MODES)})")
    raw = np.frombuffer(data, np.uint8, offset=12 + mode_len)
    pixels = width * height
    if pixels == 0 or len(raw) % pixels:
        raise ValueError(f"{len(raw)} pixel bytes do not fill a {width}x{height} {mode} image")
    return raw.reshape(height, width, len(raw) // pixels).copy()


@dataclass(frozen=True)
class MDSShard:
    """One shard of the index: the file to read and how to read it."""

    number: int
    path: str  # the file to read: the compressed one when compression is on
    raw_path: str  # the uncompressed file, which a Streaming cache may hold instead
    raw_bytes: int
    compression: str | None
    samples: int


@dataclass(frozen=True)
class _Column:
    name: str
    encoding: str
    size: int | None  # fixed byte size, None when each sample stores it


class MDSSource(Source):
    """An MDS dataset directory: one segment per shard, rows in index order.

    Column types come from the declared encodings: numbers stay numbers, ``jpeg``/``png`` stay
    the encoded bytes (kind image), ``ndarray:DTYPE:SHAPE`` becomes a fixed array, ``json`` JSON,
    ``pil`` a uint8 ``(h, w, c)`` array. Pickle and image-list columns raise :class:`SourceError`.
    """

    def __init__(self, root: str | os.PathLike, *, files: InputFiles | None = None) -> None:
        self.root = os.fspath(root)
        if files is not None:
            self.use_files(files)
        self.index_path = os.path.join(self.root, "index.json")
        entries = _load_index(self.index_path, self.files)
        self._columns = _columns_of(entries, self.index_path)
        self._shards = tuple(_shard_of(i, e, self.root, self.index_path) for i, e in enumerate(entries))
        self.description = f"MosaicML MDS: {self.root} ({len(self._shards)} shards)"
        self._schema: Schema | None = None

    def segments(self) -> list[MDSShard]:
        return list(self._shards)

    def segment_bytes(self, segment: MDSShard) -> int | None:
        try:
            return self.files.size(_existing_file(segment))
        except (OSError, SourceError):
            return None

    def info(self) -> SourceInfo:
        total = sum(self.segment_bytes(s) or 0 for s in self._shards)
        return SourceInfo(schema=self.schema(), bytes_hint=total,
                          metadata={"source_format": "mds",
                                    "mds_encodings": {c.name: c.encoding for c in self._columns}})

    def schema(self) -> Schema:
        """Fields of the declared encodings; ``ndarray`` without a fixed dtype/shape is read from the first sample."""
        if self._schema is None:
            first = None
            if any(_needs_sample(c.encoding) for c in self._columns):
                first = self._first_sample()
            self._schema = Schema(tuple(_field_of(c, first, self.index_path) for c in self._columns))
        return self._schema

    def _first_sample(self) -> dict[str, Any]:
        for shard in self._shards:
            for item in self.read(shard):
                if isinstance(item, Chunk) and len(item):
                    return {name: col[0] for name, col in item.columns.items()}
        raise SourceError(f"{self.index_path}: no readable sample to learn the ndarray columns' dtype and rank from")

    def read(self, segment: MDSShard) -> Iterator[Chunk | BadRow]:
        path = _existing_file(segment)
        try:
            data = _shard_bytes(segment, path, self.files)
        except StorageError:
            raise  # the store failed after its retries: not a fault of the shard
        except (OSError, ValueError) as exc:
            yield BadRow(path, f"cannot read shard {segment.number} ({segment.samples} samples): {exc}")
            return
        try:
            offsets = _offsets(data, segment.samples)
        except ValueError as exc:
            yield BadRow(path, f"shard {segment.number} ({segment.samples} samples): {exc}")
            return
        for start in range(0, segment.samples, ROWS_PER_CHUNK):
            stop = min(start + ROWS_PER_CHUNK, segment.samples)
            yield from self._decode_rows(data, offsets, start, stop, path)

    def _decode_rows(self, data: memoryview, offsets: np.ndarray, start: int, stop: int,
                     path: str) -> Iterator[Chunk | BadRow]:
        """Rows ``start:stop`` as chunks, split around the rows that cannot be decoded."""
        cols: dict[str, list] = {c.name: [] for c in self._columns}
        first = start
        for i in range(start, stop):
            lo, hi = int(offsets[i]), int(offsets[i + 1])
            try:
                if not (0 < lo <= hi <= len(data)):
                    raise ValueError(f"sample bytes {lo}:{hi} lie outside the {len(data)}-byte file")
                values = _decode_sample(self._columns, data[lo:hi])
            except (ValueError, UnicodeDecodeError) as exc:
                if i > first:
                    yield self._chunk(cols, path, first)
                cols = {c.name: [] for c in self._columns}
                first = i + 1
                yield BadRow(path, str(exc), row=i, row_label="sample")
                continue
            for name, value in zip(cols, values):
                cols[name].append(value)
        if stop > first:
            yield self._chunk(cols, path, first)

    def _chunk(self, cols: dict[str, list], path: str, first: int) -> Chunk:
        out: dict[str, Any] = {}
        for c in self._columns:
            dtype = _SCALARS.get(c.encoding)
            out[c.name] = np.asarray(cols[c.name], dtype=dtype) if dtype else cols[c.name]
        return Chunk(out, origin=path, first_row=first, row_label="sample")


# -- index --------------------------------------------------------------------------------------
def _load_index(path: str, files: InputFiles) -> list[dict[str, Any]]:
    try:
        body = json.loads(read_index(path, files))
    except FileNotFoundError:
        raise SourceError(f"{path} does not exist: an MDS dataset needs its index.json") from None
    except StorageError:
        raise
    except (OSError, ValueError) as exc:
        raise SourceError(f"{path}: cannot read the MDS index: {exc}") from None
    shards = body.get("shards") if isinstance(body, dict) else None
    if not isinstance(shards, list) or not all(isinstance(s, dict) for s in shards):
        raise SourceError(f"{path}: not an MDS index (no 'shards' list)")
    if not shards:
        raise SourceError(f"{path}: the MDS index lists no shards")
    if body.get("version", 2) != 2:
        raise SourceError(f"{path}: MDS index version {body.get('version')!r} is not supported (only 2)")
    return shards


def _columns_of(entries: list[dict[str, Any]], index_path: str) -> tuple[_Column, ...]:
    """The columns, which every shard must declare alike (merged indexes could differ)."""
    keys = ("column_names", "column_encodings", "column_sizes")
    first = None
    for i, e in enumerate(entries):
        if e.get("format") != "mds":
            raise SourceError(f"{index_path}: shard {i} has format {e.get('format')!r}; only 'mds' "
                              "shards are supported (not Streaming's json/csv/tsv formats)")
        try:
            decl = tuple(tuple(e[k]) for k in keys)
        except (KeyError, TypeError):
            raise SourceError(f"{index_path}: shard {i} lacks {', '.join(keys)}") from None
        if first is None:
            first = decl
        elif decl != first:
            raise SourceError(f"{index_path}: shard {i} declares other columns than shard 0: {decl[:2]} vs {first[:2]}")
    names, encodings, sizes = first
    if not (len(names) == len(encodings) == len(sizes)):
        raise SourceError(f"{index_path}: column_names, column_encodings and column_sizes differ in length")
    cols = []
    for name, enc, size in zip(names, encodings, sizes):
        if enc in _UNSUPPORTED:
            raise SourceError(f"{index_path}: column {name!r} has encoding {enc!r}: {_UNSUPPORTED[enc]}")
        cols.append(_Column(name, enc, size))
    return tuple(cols)


def _shard_of(number: int, e: dict[str, Any], root: str, index_path: str) -> MDSShard:
    compression = e.get("compression")
    if compression and compression.split(":")[0] != "zstd":
        raise SourceError(f"{index_path}: shard {number} is compressed with {compression!r}; "
                          "fastload reads uncompressed and zstd MDS shards only")
    raw = e.get("raw_data") or {}
    zipped = e.get("zip_data") or {}
    try:
        raw_path = os.path.join(root, raw["basename"])
        path = os.path.join(root, zipped["basename"]) if compression else raw_path
        return MDSShard(number, path, raw_path, int(raw.get("bytes", -1)), compression or None,
                        int(e["samples"]))
    except (KeyError, TypeError, ValueError):
        raise SourceError(f"{index_path}: shard {number} lacks raw_data/zip_data basenames or samples") from None


# -- shards -------------------------------------------------------------------------------------
def _existing_file(shard: MDSShard) -> str:
    """The file to read: a Streaming cache keeps the decompressed shard next to (or instead of) the zstd one."""
    if shard.compression and not is_url(shard.raw_path) and os.path.exists(shard.raw_path) and \
            os.path.getsize(shard.raw_path) == shard.raw_bytes:
        return shard.raw_path
    return shard.path


def _shard_bytes(shard: MDSShard, path: str, files: InputFiles) -> memoryview:
    data = files.read_all(path)
    if path != shard.raw_path:
        import zstandard

        try:
            # a stream reader, because the frame header need not record the content size
            with zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True) as r:
                data = r.read()
        except zstandard.ZstdError as exc:
            raise ValueError(f"zstd decompression failed: {exc}") from None
    return memoryview(data)


def _offsets(data: memoryview, samples: int) -> np.ndarray:
    if len(data) < 4:
        raise ValueError("file shorter than its 4-byte header")
    n = int(np.frombuffer(data, "<u4", count=1)[0])
    if n != samples:
        raise ValueError(f"file holds {n} samples where index.json says {samples}")
    if len(data) < 4 * (n + 2):
        raise ValueError(f"file too short for the offsets of its {n} samples")
    offsets = np.frombuffer(data, "<u4", count=n + 1, offset=4).astype(np.int64)
    return offsets


def _decode_sample(columns: tuple[_Column, ...], sample: memoryview) -> list[Any]:
    n_var = sum(c.size is None for c in columns)
    if len(sample) < 4 * n_var:
        raise ValueError("sample shorter than its size header")
    var_sizes = iter(np.frombuffer(sample, "<u4", count=n_var).tolist())
    pos = 4 * n_var
    values = []
    for c in columns:
        size = c.size if c.size is not None else next(var_sizes)
        if pos + size > len(sample):
            raise ValueError(f"column {c.name!r} runs past the end of the sample")
        try:
            values.append(_decode_value(c.encoding, sample[pos : pos + size]))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"column {c.name!r} ({c.encoding}): {exc}") from None
        pos += size
    return values


def _decode_value(encoding: str, b: memoryview) -> Any:
    if encoding in _SCALARS:
        return np.frombuffer(b, "<" + np.dtype(_SCALARS[encoding]).str[1:], count=1)[0]
    if encoding == "str" or encoding == "str_decimal":
        return str(b, "utf-8")
    if encoding in ("bytes", "jpeg", "png"):
        return bytes(b)
    if encoding == "json":
        return json.loads(str(b, "utf-8"))
    if encoding == "str_int":
        return int(str(b, "utf-8"))
    if encoding == "str_float":
        return float(str(b, "utf-8"))
    if encoding == "pil":
        return pil_raw_to_array(b)
    if encoding.split(":")[0] == "ndarray":
        return _decode_ndarray(encoding, b)
    raise ValueError(f"unknown MDS encoding {encoding!r}")


def _decode_ndarray(encoding: str, b: memoryview) -> np.ndarray:
    """``ndarray[:DTYPE[:D0,D1...]]``: whatever the encoding does not fix, the sample stores first."""
    dtype, shape = _ndarray_spec(encoding)
    pos = 0
    if dtype is None:
        if not len(b):
            raise ValueError("empty ndarray value")
        code = b[0]
        if code not in _NDARRAY_DTYPES:
            raise ValueError(f"unknown ndarray dtype code {code}")
        dtype, pos = _NDARRAY_DTYPES[code], 1
    if shape is None:
        if pos >= len(b):
            raise ValueError("ndarray value lacks its shape byte")
        ndim, width = b[pos] >> 2, b[pos] & 3
        size = ndim << width
        if pos + 1 + size > len(b):
            raise ValueError("ndarray value shorter than its shape")
        shape = tuple(np.frombuffer(b, _NDARRAY_SHAPE_DTYPES[width], count=ndim, offset=pos + 1).tolist())
        pos += 1 + size
    dt = np.dtype(dtype).newbyteorder("<")
    count = int(np.prod(shape, dtype=np.int64))
    if len(b) - pos != count * dt.itemsize:
        raise ValueError(f"{len(b) - pos} bytes do not hold a {dtype} array of shape {list(shape)}")
    return np.frombuffer(b, dt, count=count, offset=pos).reshape(shape).astype(dtype)


def _ndarray_spec(encoding: str) -> tuple[str | None, tuple[int, ...] | None]:
    parts = encoding.split(":")
    dtype = parts[1] if len(parts) > 1 and parts[1] else None
    if dtype is not None and dtype not in _NDARRAY_DTYPES.values():
        raise ValueError(f"unknown ndarray dtype {dtype!r}")
    shape = tuple(int(d) for d in parts[2].split(",")) if len(parts) > 2 and parts[2] else None
    return dtype, shape


# -- schema -------------------------------------------------------------------------------------
def _needs_sample(encoding: str) -> bool:
    if encoding.split(":")[0] != "ndarray":
        return False
    dtype, shape = _ndarray_spec(encoding)
    return dtype is None or shape is None


def _field_of(c: _Column, first: dict[str, Any] | None, index_path: str) -> Field:
    enc = c.encoding
    try:
        if enc in _SCALARS:
            return Field(c.name, "scalar", dtype=_SCALARS[enc])
        if enc in ("str", "str_decimal"):
            return Field(c.name, "str")
        if enc == "str_int":
            return Field(c.name, "scalar", dtype="int64")
        if enc == "str_float":
            return Field(c.name, "scalar", dtype="float64")
        if enc == "bytes":
            return Field(c.name, "bytes")
        if enc in ("jpeg", "png"):
            return Field(c.name, "image", image_format=enc)
        if enc == "json":
            return Field(c.name, "json")
        if enc == "pil":
            return Field(c.name, "array", dtype="uint8", shape=(-1, -1, -1))
        if enc.split(":")[0] == "ndarray":
            dtype, shape = _ndarray_spec(enc)
            if dtype is None or shape is None:
                sample = first[c.name]
                dtype = dtype or sample.dtype.name
                shape = shape or (-1,) * sample.ndim
            return Field(c.name, "array", dtype=dtype, shape=shape)
    except ValueError as exc:
        raise SourceError(f"{index_path}: column {c.name!r} encoding {enc!r}: {exc}") from None
    raise SourceError(f"{index_path}: column {c.name!r} has encoding {enc!r}, which fastload cannot map to a field")
