"""Read a LitData dataset (``litdata.optimize`` output), index.json plus chunk files, without the peer.

The on-disk format (litdata 0.2.76), learnt from its writer and item loaders:

* ``index.json`` is ``{"chunks": [{"filename", "chunk_size" (items), "chunk_bytes", "dim"}...],
  "config": {...}}``. The config holds ``data_format`` (one serializer name per leaf of a sample,
  e.g. ``int``, ``str``, ``numpy``, ``no_header_numpy:5``, ``jpeg``), ``data_spec`` (the
  sample's pytree structure as JSON, giving the leaves' names), ``item_loader``, ``compression``,
  ``compression_level`` and ``encryption``.
* A chunk is ``uint32 n``, ``uint32 offsets[n + 1]`` (absolute positions of the items), the items.
  With ``PyTreeLoader`` an item is one ``uint32`` size per leaf, then the leaves' bytes; with
  ``TokensLoader`` an item is the raw token array and the chunk's ``dim`` counts its tokens.
* Compression ``zstd`` wraps either the whole file (level ``chunk``: ``chunk-*.zstd.bin``), groups
  of items (level ``batch``, the default of ``compression="zstd"``: an ``LDFZ01`` header, logical
  offsets and a frame table), or each item (level ``sample``).
* Rows made only of JSON-like values (str, numbers, lists, dicts) are stored as an Arrow IPC file
  after the items (``... ipc, uint32 len(ipc), "LDARW01\\0"``); then the item area is empty.

All offsets are ``uint32``: a chunk is limited to 4 GiB. Leaves are named by their path in the
sample (``meta.source``; a sample that is a bare leaf gives ``item``, tuple positions ``_0``...).
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from ...errors import SourceError, StorageError
from ...format.schema import Field, Schema
from .base import BadRow, Chunk, Source, SourceInfo
from .files import InputFiles, is_url, read_index
from .litdata_items import _base, _decode_item, _no_header_dtype, decode_nested  # noqa: F401 (decode_nested: public here)

ROWS_PER_CHUNK = 4096
TOKENS_FIELD = "tokens"
_FOOTER_MAGIC = b"LDARW01\0"
_FRAMED_MAGIC = b"LDFZ01\0\0"
_FRAMED_PREFIX = struct.Struct("<8sHHIII")  # magic, version, flags, items, rows per frame, frames
_FRAMED_FRAME = struct.Struct("<IIQII")  # first item, items, file offset, stored len, raw len
_IMAGE_EXTS = {"jpg": "jpeg", "jpeg": "jpeg", "png": "png"}
_SUPPORTED = ("int", "float", "bool", "str", "text", "bytes", "file", "jpeg", "image", "json", "pil", "numpy",
              "no_header_numpy", "tensor", "no_header_tensor")
_UNSUPPORTED = {
    "pickle": "pickled objects would run code when read; fastload does not unpickle",
    "jpeg_array": "lists of images have no fastload field kind",
    "graph": "graphs have no fastload field kind",
}


@dataclass(frozen=True)
class LitChunk:
    """One chunk file of the index."""

    number: int
    path: str
    items: int
    dim: int | None  # tokens in the chunk (TokensLoader)


class LitDataSource(Source):
    """A LitData dataset directory: one segment per chunk file, rows in index order.

    With ``TokensLoader`` each stored item (a token array) is a row of field ``tokens``; pass
    ``block_size`` to get the rows LitData's reader makes instead, ``block_size`` tokens each, cut
    from each chunk's token stream (the tail of a chunk shorter than a block is dropped, as LitData
    does).
    """

    def __init__(self, root: str | os.PathLike, *, block_size: int | None = None,
                 files: InputFiles | None = None) -> None:
        self.root = os.fspath(root)
        if files is not None:
            self.use_files(files)
        self.index_path = os.path.join(self.root, "index.json")
        index = _load_index(self.index_path, self.files)
        config = index["config"]
        self.token_loader = config.get("item_loader") == "TokensLoader"
        if block_size is not None and (not self.token_loader or block_size < 1):
            raise ValueError("block_size is a positive number of tokens, for a TokensLoader dataset only")
        self.block_size = block_size
        self._compression, self._level = _compression_of(config, self.index_path)
        self._formats = [str(f) for f in config.get("data_format") or []]
        self._names = [TOKENS_FIELD] if self.token_loader else _leaf_names(config.get("data_spec"), self.index_path)
        _check_formats(self._formats, self._names, self.token_loader, self.index_path)
        self._chunks = tuple(_chunk_of(i, c, self.root, self.index_path) for i, c in enumerate(index["chunks"]))
        self.description = f"LitData: {self.root} ({len(self._chunks)} chunks)"
        self._schema: Schema | None = None

    def segments(self) -> list[LitChunk]:
        return list(self._chunks)

    def segment_bytes(self, segment: LitChunk) -> int | None:
        try:
            return self.files.size(segment.path)
        except (OSError, SourceError):
            return None

    def info(self) -> SourceInfo:
        total = sum(self.segment_bytes(c) or 0 for c in self._chunks)
        return SourceInfo(schema=self.schema(), bytes_hint=total,
                          metadata={"source_format": "litdata", "litdata_data_format": list(self._formats)})

    def schema(self) -> Schema:
        """Fields of the serializers; ``numpy``/``tensor`` leaves take dtype and rank from the first item."""
        if self._schema is None:
            first = None
            if any(f in ("numpy", "tensor") for f in self._formats):
                first = self._first_row()
            fields = [_field_of(n, f, first, self.block_size, self.index_path)
                      for n, f in zip(self._names, self._formats)]
            self._schema = Schema(tuple(fields))
        return self._schema

    def _first_row(self) -> dict[str, Any]:
        for chunk in self._chunks:
            for item in self.read(chunk):
                if isinstance(item, Chunk) and len(item):
                    return {name: col[0] for name, col in item.columns.items()}
        raise SourceError(f"{self.index_path}: no readable item to learn the array leaves' dtype and rank from")

    def read(self, segment: LitChunk) -> Iterator[Chunk | BadRow]:
        try:
            data = self.files.read_all(segment.path)
            items = self._items(segment, data)
        except StorageError:
            raise  # the store failed after its retries: not a fault of the chunk
        except (OSError, ValueError) as exc:
            yield BadRow(segment.path, f"cannot read chunk {segment.number} ({segment.items} items): {exc}")
            return
        if isinstance(items, dict):  # rows from the Arrow footer
            yield Chunk(items, origin=segment.path, row_label="item")
        elif self.token_loader:
            yield from self._tokens(segment, items)
        else:
            yield from self._decode_items(items, segment.path, lambda b: _decode_item(b, self._formats))

    # -- a chunk's items ---------------------------------------------------------------------
    def _items(self, segment: LitChunk, data: bytes) -> list[memoryview | None] | dict[str, Any]:
        """The items' bytes (decompressed), or the leaf columns of an Arrow footer."""
        if self._compression and self._level == "chunk":
            data = _zstd(data)
        view = memoryview(data)
        if self._level == "batch":
            return _framed_items(view, segment.items)
        n, offsets = _classic_header(view, segment.items)
        if n and offsets[0] == offsets[-1] and view[-8:] == _FOOTER_MAGIC:
            return self._footer_columns(view, n)
        # an item past the end of a cut file is None: a bad row, while the items before it read
        items = [view[int(offsets[i]) : int(offsets[i + 1])] if offsets[i + 1] <= len(view) else None
                 for i in range(n)]
        if self._level == "sample":
            items = [None if item is None else memoryview(_zstd(bytes(item))) for item in items]
        return items

    def _footer_columns(self, view: memoryview, n: int) -> dict[str, Any]:
        import pyarrow as pa
        import pyarrow.compute as pc

        (size,) = struct.unpack_from("<I", view, len(view) - 12)
        start = len(view) - 12 - size
        if size == 0 or start < 0:
            raise ValueError("Arrow footer length runs past the start of the file")
        ipc = pa.py_buffer(bytes(view[start : start + size]))
        try:
            reader = pa.ipc.open_file(ipc) if bytes(view[start : start + 6]) == b"ARROW1" else pa.ipc.open_stream(ipc)
            table = reader.read_all()
        except (pa.ArrowInvalid, OSError) as exc:
            raise ValueError(f"unreadable Arrow footer: {exc}") from None
        if table.num_rows != n:
            raise ValueError(f"Arrow footer holds {table.num_rows} rows where the chunk header says {n}")
        out: dict[str, Any] = {}
        for name, fmt in zip(self._names, self._formats):
            top, *rest = name.split(".")
            if top not in table.column_names:
                raise ValueError(f"Arrow footer lacks column {top!r}")
            col = table.column(top)
            for key in rest:
                col = pc.struct_field(col, key)
            out[name] = col.to_pylist() if _base(fmt) == "json" else col
        return out

    def _tokens(self, segment: LitChunk, items: list[memoryview | None]) -> Iterator[Chunk | BadRow]:
        dtype = np.dtype(_no_header_dtype(self._formats[0])).newbyteorder("<")
        if self.block_size is None:
            yield from self._decode_items(items, segment.path, lambda b: [np.frombuffer(b, dtype).astype(dtype.name)])
            return
        cut = [i for i, b in enumerate(items) if b is None or len(b) % dtype.itemsize]
        if cut:  # blocks run across items: a chunk missing one has no trustworthy blocks
            yield BadRow(segment.path, f"chunk {segment.number}: item {cut[0]} is cut or not whole "
                         f"{dtype.name} tokens; its blocks cannot be rebuilt")
            return
        stream = np.frombuffer(b"".join(items), dtype)
        blocks = len(stream) // self.block_size
        rows = stream[: blocks * self.block_size].reshape(blocks, self.block_size).astype(dtype.name)
        yield Chunk({TOKENS_FIELD: rows}, origin=segment.path, row_label="block")

    def _decode_items(self, items: list[memoryview | None], path: str,
                      decode: Callable[[memoryview], list[Any]]) -> Iterator[Chunk | BadRow]:
        """The items decoded by ``decode`` (one value per leaf) as chunks, split around the bad ones."""
        cols: dict[str, list] = {n: [] for n in self._names}
        first = 0
        for i in range(len(items)):
            try:
                if items[i] is None:
                    raise ValueError("the item lies past the end of the file (the chunk is cut)")
                values = decode(items[i])
            except (ValueError, UnicodeDecodeError, struct.error) as exc:
                if i > first:
                    yield self._chunk(cols, path, first)
                cols = {n: [] for n in self._names}
                first = i + 1
                yield BadRow(path, str(exc), row=i, row_label="item")
                continue
            for name, value in zip(self._names, values):
                cols[name].append(value)
            if len(cols[self._names[0]]) >= ROWS_PER_CHUNK:
                yield self._chunk(cols, path, first)
                cols = {n: [] for n in self._names}
                first = i + 1
        if len(items) > first:
            yield self._chunk(cols, path, first)

    def _chunk(self, cols: dict[str, list], path: str, first: int) -> Chunk:
        out: dict[str, Any] = {}
        for name, fmt in zip(self._names, self._formats):
            dtype = {"int": "int64", "float": "float64", "bool": "bool"}.get(fmt)
            out[name] = np.asarray(cols[name], dtype=dtype) if dtype else cols[name]
        return Chunk(out, origin=path, first_row=first, row_label="item")


# -- index and config ---------------------------------------------------------------------------
def _load_index(path: str, files: InputFiles) -> dict[str, Any]:
    try:
        body = json.loads(read_index(path, files))
    except FileNotFoundError:
        root = os.path.dirname(path)
        partial = (sorted(n for n in os.listdir(root) if n.endswith("index.json"))
                   if not is_url(root) and os.path.isdir(root) else [])
        hint = f" (found {partial}: an optimize run that was not merged)" if partial else ""
        raise SourceError(f"{path} does not exist: a LitData dataset needs its index.json{hint}") from None
    except StorageError:
        raise
    except (OSError, ValueError) as exc:
        raise SourceError(f"{path}: cannot read the LitData index: {exc}") from None
    if not isinstance(body, dict) or not isinstance(body.get("chunks"), list) or not isinstance(body.get("config"), dict):
        raise SourceError(f"{path}: not a LitData index (needs 'chunks' and 'config')")
    if not body["chunks"]:
        raise SourceError(f"{path}: the LitData index lists no chunks")
    config = body["config"]
    if config.get("encryption"):
        raise SourceError(f"{path}: the dataset is encrypted; fastload cannot read it")
    loader = config.get("item_loader", "PyTreeLoader")
    if loader not in ("PyTreeLoader", "TokensLoader"):
        raise SourceError(f"{path}: item_loader {loader!r} is not supported (PyTreeLoader, TokensLoader)")
    return body


def _compression_of(config: dict[str, Any], index_path: str) -> tuple[str | None, str]:
    """(codec, level); level ``chunk`` when absent, as LitData reads old indexes."""
    codec = config.get("compression")
    level = config.get("compression_level") or "chunk"
    if codec and str(codec).split(":")[0] != "zstd":
        raise SourceError(f"{index_path}: compression {codec!r} is not supported (only zstd)")
    if level not in ("chunk", "batch", "sample"):
        raise SourceError(f"{index_path}: unknown compression_level {level!r}")
    return (codec or None), (level if codec else "none")


def _chunk_of(number: int, c: Any, root: str, index_path: str) -> LitChunk:
    try:
        dim = c.get("dim")
        return LitChunk(number, os.path.join(root, c["filename"]), int(c["chunk_size"]),
                        None if dim is None else int(dim))
    except (KeyError, TypeError, ValueError, AttributeError):
        raise SourceError(f"{index_path}: chunk {number} lacks filename or chunk_size") from None


def _leaf_names(spec_text: Any, index_path: str) -> list[str]:
    """Dotted paths of the leaves of a pytree spec, in flattening order."""
    try:
        spec = json.loads(spec_text)[1]
    except (TypeError, ValueError, IndexError, KeyError):
        raise SourceError(f"{index_path}: config.data_spec is not a pytree spec") from None
    names: list[str] = []

    def walk(node: dict[str, Any], path: list[str]) -> None:
        kind, children = node.get("type"), node.get("children_spec") or []
        if kind is None:
            names.append(".".join(path) or "item")
            return
        keys: list[Any] = list(range(len(children)))
        if kind in ("builtins.dict", "collections.OrderedDict", "collections.defaultdict"):
            context = json.loads(node["context"])
            keys = context["dict_context"] if isinstance(context, dict) else context
        for key, child in zip(keys, children):
            part = str(key)
            walk(child, path + [part if path or not part[:1].isdigit() else f"_{part}"])

    try:
        walk(spec, [])
    except (TypeError, ValueError, KeyError, AttributeError):
        raise SourceError(f"{index_path}: cannot read the leaves of config.data_spec") from None
    return names


def _check_formats(formats: list[str], names: list[str], tokens: bool, index_path: str) -> None:
    if len(formats) != len(names):
        raise SourceError(f"{index_path}: data_format has {len(formats)} leaves, data_spec {len(names)}")
    for name, fmt in zip(names, formats):
        base = _base(fmt)
        if base in _UNSUPPORTED:
            raise SourceError(f"{index_path}: leaf {name!r} uses serializer {fmt!r}: {_UNSUPPORTED[base]}")
        if base not in _SUPPORTED:
            raise SourceError(f"{index_path}: leaf {name!r} uses serializer {fmt!r}, which fastload cannot map "
                              f"to a field (supported: {', '.join(_SUPPORTED)})")
        if tokens and base not in ("no_header_numpy", "no_header_tensor"):
            raise SourceError(f"{index_path}: a TokensLoader dataset stores {fmt!r}, not a no_header array")


def _zstd(data: bytes) -> bytes:
    import zstandard

    try:
        # a stream reader, because a frame header need not record the content size
        with zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True) as r:
            return r.read()
    except zstandard.ZstdError as exc:
        raise ValueError(f"zstd decompression failed: {exc}") from None


def _classic_header(view: memoryview, expected: int) -> tuple[int, np.ndarray]:
    if len(view) < 4:
        raise ValueError("file shorter than its 4-byte header")
    (n,) = struct.unpack_from("<I", view, 0)
    if n != expected:
        raise ValueError(f"file holds {n} items where index.json says {expected}")
    if len(view) < 4 * (n + 2):
        raise ValueError(f"file too short for the offsets of its {n} items")
    offsets = np.frombuffer(view, "<u4", count=n + 1, offset=4).astype(np.int64)
    if offsets[0] < 4 * (n + 2) or np.any(np.diff(offsets) < 0):
        raise ValueError("item offsets are out of order")
    return n, offsets


def _framed_items(view: memoryview, expected: int) -> list[memoryview]:
    """Items of a ``batch``-compressed chunk: zstd frames of consecutive items, inflated in order."""
    if len(view) < _FRAMED_PREFIX.size or bytes(view[:8]) != _FRAMED_MAGIC:
        raise ValueError("not a framed zstd chunk (no LDFZ01 header)")
    _, version, _, n, _, n_frames = _FRAMED_PREFIX.unpack_from(view, 0)
    if version != 1:
        raise ValueError(f"framed zstd chunk version {version} is not supported (only 1)")
    if n != expected:
        raise ValueError(f"file holds {n} items where index.json says {expected}")
    table = _FRAMED_PREFIX.size + 4 * (n + 1)
    if len(view) < table + _FRAMED_FRAME.size * n_frames:
        raise ValueError("framed zstd chunk shorter than its tables")
    offsets = np.frombuffer(view, "<u4", count=n + 1, offset=_FRAMED_PREFIX.size).astype(np.int64)
    parts = []
    for k in range(n_frames):
        _, _, at, stored, raw = _FRAMED_FRAME.unpack_from(view, table + k * _FRAMED_FRAME.size)
        part = _zstd(bytes(view[at : at + stored]))
        if len(part) != raw:
            raise ValueError(f"zstd frame {k} inflated to {len(part)} bytes, expected {raw}")
        parts.append(part)
    body = memoryview(b"".join(parts))
    if offsets[0] != 0 or np.any(np.diff(offsets) < 0) or offsets[-1] != len(body):
        raise ValueError("item offsets do not match the inflated frames")
    return [body[int(offsets[i]) : int(offsets[i + 1])] for i in range(n)]


# -- leaves -------------------------------------------------------------------------------------
def _field_of(name: str, fmt: str, first: dict[str, Any] | None, block_size: int | None,
              index_path: str) -> Field:
    base, _, arg = fmt.partition(":")
    try:
        if base == "int":
            return Field(name, "scalar", dtype="int64")
        if base == "float":
            return Field(name, "scalar", dtype="float64")
        if base == "bool":
            return Field(name, "scalar", dtype="bool")
        if base in ("str", "text"):
            return Field(name, "str")
        if base in ("bytes", "file"):
            return Field(name, "bytes")
        if base == "jpeg":
            return Field(name, "image", image_format="jpeg")
        if base == "image":
            return Field(name, "image", image_format=_IMAGE_EXTS.get(arg.lower(), "any"))
        if base == "json":
            return Field(name, "json")
        if base == "pil":
            return Field(name, "array", dtype="uint8", shape=(-1, -1, -1))
        if base in ("no_header_numpy", "no_header_tensor"):
            return Field(name, "array", dtype=_no_header_dtype(fmt), shape=(block_size or -1,))
        if base in ("numpy", "tensor"):
            sample = first[name]
            if sample.ndim == 0:
                return Field(name, "scalar", dtype=sample.dtype.name)
            return Field(name, "array", dtype=sample.dtype.name, shape=(-1,) * sample.ndim)
    except ValueError as exc:
        raise SourceError(f"{index_path}: leaf {name!r} serializer {fmt!r}: {exc}") from None
    raise SourceError(f"{index_path}: leaf {name!r} uses serializer {fmt!r}, which fastload cannot map "
                      f"to a field (supported: {', '.join(_SUPPORTED)})")
