"""Read WebDataset tar shards: members grouped into samples by key, one field per extension.

As WebDataset does, a member ``dir/abc.seg.png`` belongs to the sample with key ``dir/abc`` (the
path up to the first dot of the file name) and is its field ``seg.png`` (extensions lower-cased);
consecutive members with one key form a sample. A ``.gz`` extension is gunzipped and dropped.
Fields are typed by their last extension: ``jpg``/``jpeg``/``png``/``webp``/``gif``/``bmp`` images
(the encoded bytes, never decoded), ``cls``/``cls2``/``index``/``id`` int64 (when the first
sample's value is an integer), ``txt``/``text`` str, ``json`` JSON, ``npy`` arrays, anything else
bytes. The sample key is kept as the field ``__key__``.

The fields are those of the first sample of the first shard. A later sample missing one gets a
null (which the pack's ``on_error`` policy handles); a sample with a field the first lacks, a
field that does not parse, or a truncated or corrupt tar becomes a :class:`BadRow` naming the tar,
the member and its byte offset. So does a member larger than ``max_member_bytes`` (256 MiB by
default), before it is read, and a ``.gz`` member that would inflate past it: inflating stops
there, so a 1 MB gzip bomb costs 256 MiB at most, never its 2 GB.
"""

from __future__ import annotations

import glob
import io
import json
import os
import tarfile
import zlib
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from ...errors import SourceError, StorageError
from ...format.schema import Field, Schema
from .base import BadRow, Chunk, Source, SourceInfo
from .files import InputFiles, is_url

ROWS_PER_CHUNK = 1024
BYTES_PER_CHUNK = 64 << 20  # bounds the memory a chunk of large images holds
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
KEY_FIELD = "__key__"
_IMAGE_EXTS = {"jpg": "jpeg", "jpeg": "jpeg", "png": "png", "webp": "any", "gif": "any", "bmp": "any"}
_INT_EXTS = {"cls", "cls2", "index", "id"}
_TEXT_EXTS = {"txt", "text"}
_READ_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error)
# One field value of one sample, stored or gunzipped: far above an image, a clip or a document,
# far below what would exhaust a packing machine's memory (a record's block may hold 4 GiB).
MAX_MEMBER_BYTES = 256 << 20


@dataclass
class _Sample:
    key: str
    fields: dict[str, bytes]
    member: str  # the first member, for messages
    offset: int  # its header's byte offset in the (uncompressed) tar stream
    problem: str | None = None  # why the sample cannot be used, e.g. two members with one extension


class WebDatasetSource(Source):
    """WebDataset ``.tar`` (or ``.tar.gz``) shards: one segment per tar file, in sorted order."""

    def __init__(self, paths: str | os.PathLike | list[str | os.PathLike], *,
                 max_member_bytes: int = MAX_MEMBER_BYTES) -> None:
        self.paths = resolve_tars(paths)
        self.max_member_bytes = max_member_bytes
        self.description = f"WebDataset: {self.paths[0]}" + (
            f" (+{len(self.paths) - 1} more tars)" if len(self.paths) > 1 else "")
        self._kinds: dict[str, str] | None = None

    def segments(self) -> list[str]:
        return list(self.paths)

    def segment_bytes(self, segment: str) -> int | None:
        try:
            return self.files.size(segment)
        except (OSError, SourceError):
            return None

    def info(self) -> SourceInfo:
        kinds = self.field_kinds()
        fields = tuple(_field(name, kind) for name, kind in kinds.items())
        total = sum(self.segment_bytes(p) or 0 for p in self.paths)
        return SourceInfo(schema=Schema(fields), metadata={"source_format": "webdataset"}, bytes_hint=total)

    def field_kinds(self) -> dict[str, str]:
        """``{field: kind}`` from the first readable sample; kind is an image format or int/str/json/npy/bytes."""
        if self._kinds is None:
            for path in self.paths:
                for item in _samples(path, self.max_member_bytes, self.files):
                    if isinstance(item, _Sample) and item.problem is None:
                        self._kinds = _kinds_of(item, path)
                        break
                if self._kinds is not None:
                    break
            else:
                raise SourceError(f"{self.description}: no readable sample in {len(self.paths)} tar files")
        return self._kinds

    def read(self, segment: str) -> Iterator[Chunk | BadRow]:
        kinds = self.field_kinds()
        cols: dict[str, list] = {name: [] for name in kinds}
        first = nbytes = 0
        row = -1
        for row, item in enumerate(_samples(segment, self.max_member_bytes, self.files)):
            if isinstance(item, BadRow):
                item.row = row
                yield from _flush(cols, segment, first, row)
                first = row + 1
                yield item
                continue
            try:
                values = _decode_sample(item, kinds)
            except ValueError as exc:
                yield from _flush(cols, segment, first, row)
                first = row + 1
                yield BadRow(segment, f"sample {item.key!r} (member {item.member} at byte {item.offset}): {exc}",
                             row=row, row_label="sample")
                continue
            for name, value in values.items():
                cols[name].append(value)
            nbytes += sum(len(b) for b in item.fields.values())
            if len(cols[KEY_FIELD]) >= ROWS_PER_CHUNK or nbytes >= BYTES_PER_CHUNK:
                yield from _flush(cols, segment, first, row + 1)
                first, nbytes = row + 1, 0
        yield from _flush(cols, segment, first, row + 1)


def resolve_tars(paths: str | os.PathLike | list[str | os.PathLike]) -> list[str]:
    """Tar files named by paths, directories (searched recursively) and globs: sorted, each once."""
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    found: set[str] = set()
    for p in map(os.fspath, items):
        if is_url(p):  # remote tars come listed already (sources.remote_paths)
            found.add(p)
        elif any(ch in p for ch in "*?["):
            matches = glob.glob(p, recursive=True)
            if not matches:
                raise SourceError(f"no files match {p!r}")
            found.update(m for m in matches if os.path.isfile(m))
        elif os.path.isdir(p):
            found.update(os.path.join(d, f) for d, _, files in os.walk(p) for f in files
                         if f.lower().endswith(TAR_SUFFIXES))
        elif os.path.isfile(p):
            found.add(p)
        else:
            raise SourceError(f"{p} does not exist")
    if not found:
        raise SourceError(f"no tar files ({', '.join(TAR_SUFFIXES)}) in {[os.fspath(p) for p in items]}")
    return sorted(found)


def split_key(name: str) -> tuple[str, str] | None:
    """``dir/abc.seg.png`` -> ``("dir/abc", "seg.png")``; None for a name without an extension."""
    slash = name.rfind("/") + 1
    dot = name.find(".", slash)
    if dot <= slash:  # no dot, or a hidden file such as ".keep"
        return None
    return name[:dot], name[dot + 1 :].lower()


# -- reading a tar ---------------------------------------------------------------------------
def _samples(path: str, limit: int, files: InputFiles) -> Iterator[_Sample | BadRow]:
    """The samples of one tar in order; a BadRow (then nothing more) where the tar is unreadable.
    A member over ``limit`` bytes, stored or gunzipped, makes its sample unusable (not the tar)."""
    current: _Sample | None = None
    where = "its first header at byte 0"
    try:
        with files.open(path) as raw, tarfile.open(path, "r:*", fileobj=raw) as tar:
            while True:
                member = tar.next()
                if member is None:
                    break
                where = f"member {member.name} at byte {member.offset}"
                if not member.isfile():
                    continue
                parts = split_key(member.name)
                if parts is None:
                    continue
                key, ext = parts
                if current is not None and current.key != key:
                    yield current
                    current = None
                if current is None:
                    current = _Sample(key, {}, member.name, member.offset)
                if member.size > limit:  # not read: the next header is found by seeking past it
                    data = b""
                    current.problem = f"member {member.name} is {member.size} bytes, more than the {limit} allowed"
                else:
                    data = tar.extractfile(member).read()
                if ext.endswith(".gz"):
                    ext = ext[:-3]
                    try:
                        data = _gunzip(data, limit)
                    except ValueError as exc:
                        data = b""
                        current.problem = current.problem or f"member {member.name} {exc}"
                if ext in current.fields:
                    current.problem = f"two members with extension {ext!r} (the second is {member.name})"
                current.fields[ext] = data
            end = _end_problem(tar)
            if end is not None:
                raise tarfile.ReadError(end)
    except StorageError:
        raise  # the store failed after its retries: the tar itself may be fine
    except _READ_ERRORS as exc:
        lost = f"; sample {current.key!r} and everything after it are lost" if current else ""
        yield BadRow(path, f"corrupt or truncated tar near {where}: {exc}{lost}", row_label="sample")
        return
    if current is not None:
        yield current


def _end_problem(tar: tarfile.TarFile) -> str | None:
    """Why the archive stopped early, or None for a clean end.

    ``tarfile`` ends iteration silently on a bad or partial header after the first member, so a
    tar cut inside a header, or with garbage there, would lose its tail unnoticed. A clean end is
    the end of the data or the zero block that terminates an archive.
    """
    tar.fileobj.seek(tar.offset)
    block = tar.fileobj.read(tarfile.BLOCKSIZE)
    if not block or block == b"\0" * tarfile.BLOCKSIZE:
        return None
    if len(block) < tarfile.BLOCKSIZE:
        return f"truncated header at byte {tar.offset} ({len(block)} of {tarfile.BLOCKSIZE} bytes)"
    return f"unreadable header at byte {tar.offset}"


def _gunzip(data: bytes, limit: int) -> bytes:
    """Inflate gzip ``data`` (one member or several, as gzip.decompress does), stopping as soon as
    more than ``limit`` bytes come out; a ValueError says why it cannot."""
    out: list[bytes] = []
    total = 0
    rest = data
    try:
        while rest:
            inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip header and trailer checked
            pending = rest
            while pending and not inflater.eof:
                chunk = inflater.decompress(pending, limit - total + 1)
                total += len(chunk)
                if total > limit:
                    raise ValueError(f"inflates to more than the {limit} bytes allowed")
                out.append(chunk)
                pending = inflater.unconsumed_tail
            if not inflater.eof:
                raise ValueError("is not valid gzip (truncated)")
            rest = inflater.unused_data.lstrip(b"\0")  # gzip.decompress skips zero padding too
    except zlib.error as exc:
        raise ValueError(f"is not valid gzip ({exc})") from None
    return b"".join(out)


# -- typing the fields -----------------------------------------------------------------------
def _kinds_of(sample: _Sample, path: str) -> dict[str, str]:
    kinds = {KEY_FIELD: "key"}
    for ext, data in sorted(sample.fields.items()):
        last = ext.rsplit(".", 1)[-1]
        if last in _IMAGE_EXTS:
            kinds[ext] = _IMAGE_EXTS[last]
        elif last in _INT_EXTS:
            kinds[ext] = "int" if _parse_int(data) is not None else "str"
        elif last in _TEXT_EXTS:
            kinds[ext] = "str"
        elif last == "json":
            kinds[ext] = "json"
        elif last == "npy":
            # the dtype and rank of the first sample's array type the field
            try:
                arr = _npy(data)
            except ValueError as exc:
                raise SourceError(f"{path}: member {sample.member}: field {ext!r} of the first "
                                  f"sample, which types the fields, is unreadable: {exc}") from None
            kinds[ext] = f"npy:{arr.dtype.name}:{arr.ndim}"
        else:
            kinds[ext] = "bytes"
    return kinds


def _field(name: str, kind: str) -> Field:
    try:
        if kind in ("key", "str"):
            return Field(name, "str")
        if kind in ("jpeg", "png", "any"):
            return Field(name, "image", image_format=kind)
        if kind == "int":
            return Field(name, "scalar", dtype="int64")
        if kind == "json":
            return Field(name, "json")
        if kind.startswith("npy:"):
            _, dtype, ndim = kind.split(":")
            if ndim == "0":
                return Field(name, "scalar", dtype=dtype)
            return Field(name, "array", dtype=dtype, shape=(-1,) * int(ndim))
        return Field(name, "bytes")
    except Exception as exc:  # a SchemaError: a name or dtype fastload cannot hold
        raise SourceError(f"webdataset field {name!r}: {exc}") from None


def _decode_sample(sample: _Sample, kinds: dict[str, str]) -> dict[str, Any]:
    if sample.problem is not None:
        raise ValueError(sample.problem)
    extra = sorted(set(sample.fields) - set(kinds))
    if extra:
        raise ValueError(f"fields {extra} are not in the first sample's fields {sorted(kinds)[1:]}")
    out: dict[str, Any] = {KEY_FIELD: sample.key}
    for name, kind in kinds.items():
        if name == KEY_FIELD:
            continue
        data = sample.fields.get(name)
        out[name] = None if data is None else _decode_value(name, kind, data)
    return out


def _decode_value(name: str, kind: str, data: bytes) -> Any:
    try:
        if kind == "int":
            value = _parse_int(data)
            if value is None:
                raise ValueError(f"{data[:40]!r} is not an integer")
            return value
        if kind == "str":
            return data.decode("utf-8")
        if kind == "json":
            return json.loads(data)
        if kind.startswith("npy:"):
            arr = _npy(data)
            return arr[()] if arr.ndim == 0 else arr
        return data
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"field {name!r}: {exc}") from None


def _parse_int(data: bytes) -> int | None:
    try:
        return int(data.strip())
    except ValueError:
        return None


def _npy(data: bytes) -> np.ndarray:
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"not a .npy array ({exc})") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
        raise ValueError("not a numeric .npy array")
    return arr


def _flush(cols: dict[str, list], path: str, first: int, stop: int) -> Iterator[Chunk]:
    """Yield the rows gathered since ``first`` (if any) as one chunk and empty the lists."""
    if stop > first and cols[KEY_FIELD]:
        yield Chunk({k: list(v) for k, v in cols.items()}, origin=path, first_row=first, row_label="sample")
        for v in cols.values():
            v.clear()
