"""Read NumPy ``.npy`` and ``.npz`` arrays as fields, memory-mapped, in row ranges.

Every array is one field: a ``.npy`` file is named after its stem, an ``.npz`` member after its
key. All arrays must have the same first dimension (the row). Arrays stored uncompressed
(``.npy``, ``np.savez``) are memory-mapped where they lie, even inside the zip; members of
``np.savez_compressed`` are decompressed up to the rows a segment needs, so each segment costs a
decompression of everything before it: re-save with ``np.savez`` for big ones.
"""

from __future__ import annotations

import os
import struct
import zipfile
from dataclasses import dataclass
from typing import Any, BinaryIO, Iterator, Sequence

import numpy as np

from ...errors import SourceError, StorageError
from ...format.schema import NUMERIC_DTYPES, Field, Schema
from .base import BadRow, Chunk, Source, SourceInfo, describe_files, sorted_paths
from .files import InputFiles, is_url

SUFFIXES = (".npy", ".npz")
SEGMENT_BYTES = 64 << 20
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # zip local file header: signature, name/extra sizes


@dataclass(frozen=True)
class _Array:
    """Where one array's data lies and what it holds."""

    name: str
    path: str
    member: str | None  # .npz member, None for a .npy file
    offset: int  # start of the data: in the file, or in the member when compressed
    compressed: bool
    dtype: np.dtype
    shape: tuple[int, ...]
    fortran: bool

    @property
    def row_bytes(self) -> int:
        return self.dtype.itemsize * int(np.prod(self.shape[1:], dtype=np.int64))


@dataclass(frozen=True)
class NumpySegment:
    """Rows ``[start, stop)`` of every array."""

    start: int
    stop: int


class NumpySource(Source):
    """``.npy`` / ``.npz`` files, each array a field (files in sorted path order)."""

    def __init__(self, paths: str | os.PathLike | Sequence[str | os.PathLike], *,
                 segment_size: int = SEGMENT_BYTES) -> None:
        self.paths = sorted_paths(paths, ".npy or .npz files")
        self.segment_size = segment_size
        self.description = describe_files("NumPy", self.paths)
        self.origin = " + ".join(self.paths)
        self._arrays: list[_Array] | None = None

    def _scan(self) -> list[_Array]:
        if self._arrays is None:
            arrays = [a for p in self.paths for a in _scan_file(p, self.files)]
            _check_arrays(arrays)
            self._arrays = arrays
        return self._arrays

    def info(self) -> SourceInfo:
        fields = tuple(_field(a) for a in self._scan())
        return SourceInfo(schema=Schema(fields),
                          bytes_hint=sum(self.files.size(p) for p in self.paths))

    def segments(self) -> list[NumpySegment]:
        arrays = self._scan()
        rows = arrays[0].shape[0]
        step = max(1, self.segment_size // max(1, sum(a.row_bytes for a in arrays)))
        return [NumpySegment(i, min(i + step, rows)) for i in range(0, rows, step)]

    def segment_bytes(self, segment: NumpySegment) -> int:
        return (segment.stop - segment.start) * sum(a.row_bytes for a in self._scan())

    def read(self, segment: NumpySegment) -> Iterator[Chunk | BadRow]:
        columns: dict[str, Any] = {}
        for a in self._scan():
            try:
                rows = _read_rows(a, segment.start, segment.stop, self.files)
            except (OSError, ValueError, zipfile.BadZipFile) as exc:
                raise SourceError(
                    f"{_name(a)}: cannot read rows {segment.start}..{segment.stop - 1}: {exc}"
                ) from None
            # Text arrays become lists of str/bytes, the column form the driver takes for them.
            columns[a.name] = rows.tolist() if a.dtype.kind in "US" else rows
        yield Chunk(columns, origin=self.origin, first_row=segment.start, row_label="index")


def _name(a: _Array) -> str:
    return a.path if a.member is None else f"{a.path}:{a.member}"


def _read_header(fp: BinaryIO) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(fp)
    return np.lib.format.read_array_header_2_0(fp)


def _scan_file(path: str, files: InputFiles) -> list[_Array]:
    try:
        if not path.lower().endswith(".npz"):
            with files.open(path) as f:
                shape, fortran, dtype = _read_header(f)
                return [_Array(os.path.splitext(os.path.basename(path))[0], path, None,
                               f.tell(), False, dtype, shape, fortran)]
        out = []
        with files.open(path) as raw_zip, zipfile.ZipFile(raw_zip) as zf, files.open(path) as raw:
            for info in sorted(zf.infolist(), key=lambda i: i.filename):
                if not info.filename.endswith(".npy"):
                    continue
                with zf.open(info) as member:
                    shape, fortran, dtype = _read_header(member)
                    header = member.tell()
                compressed = info.compress_type != zipfile.ZIP_STORED
                if not compressed:
                    # The local header's extra field may differ from the central directory's.
                    raw.seek(info.header_offset)
                    _, name_len, extra_len = _LOCAL_HEADER.unpack(raw.read(_LOCAL_HEADER.size))
                    header += info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
                out.append(_Array(info.filename[:-4], path, info.filename, header, compressed,
                                  dtype, shape, fortran))
        if not out:
            raise SourceError(f"{path}: holds no arrays")
        return out
    except FileNotFoundError:
        raise SourceError(f"{path}: no such file") from None
    except (SourceError, StorageError):
        raise
    except (OSError, ValueError, zipfile.BadZipFile, struct.error) as exc:
        raise SourceError(f"{path}: not a readable NumPy file: {exc}") from None


def _check_arrays(arrays: list[_Array]) -> None:
    first = arrays[0]
    names: dict[str, _Array] = {}
    for a in arrays:
        if a.name in names:
            raise SourceError(
                f"{_name(a)}: field name {a.name!r} is also given by {_name(names[a.name])}"
            )
        names[a.name] = a
        if not a.shape:
            raise SourceError(f"{_name(a)}: a 0-d array has no rows")
        if a.shape[0] != first.shape[0]:
            raise SourceError(
                f"{_name(a)}: {a.shape[0]} rows, but {_name(first)} has {first.shape[0]}; "
                "every array must have the same first dimension"
            )
        _field(a)  # dtype and shape checks, before any worker starts


def _field(a: _Array) -> Field:
    kind = a.dtype.kind
    try:
        if kind in "US":
            if len(a.shape) != 1:
                raise SourceError(f"{_name(a)}: text arrays must be 1-D, not shape {a.shape}")
            return Field(a.name, "str" if kind == "U" else "bytes")
        name = a.dtype.newbyteorder("=").name
        if kind not in "biuf" or name not in NUMERIC_DTYPES:
            raise SourceError(f"{_name(a)}: dtype {a.dtype} is not one of {NUMERIC_DTYPES}")
        if len(a.shape) == 1:
            return Field(a.name, "scalar", dtype=name)
        return Field(a.name, "array", dtype=name, shape=a.shape[1:])
    except SourceError:
        raise
    except ValueError as exc:  # SchemaError: a name or shape a field cannot have
        raise SourceError(f"{_name(a)}: {exc}") from None


def _read_rows(a: _Array, start: int, stop: int, files: InputFiles) -> np.ndarray:
    """Rows ``[start, stop)`` of one array, a view of the file where it is not compressed (a ranged
    read of a remote file)."""
    remote = is_url(a.path)
    if a.fortran:
        # Column-major rows are not contiguous: map (or decompress) it all, then slice.
        if a.compressed:
            with files.open(a.path) as raw, zipfile.ZipFile(raw) as zf, zf.open(a.member) as member:
                return np.lib.format.read_array(member)[start:stop]
        if remote:
            with files.open(a.path) as f:
                f.seek(a.offset)
                whole = np.frombuffer(f.read(a.row_bytes * a.shape[0]), a.dtype).reshape(a.shape, order="F")
            return np.asarray(whole[start:stop])
        whole = np.memmap(a.path, a.dtype, "r", offset=a.offset, shape=a.shape, order="F")
        return np.asarray(whole[start:stop])
    shape = (stop - start, *a.shape[1:])
    if not a.compressed and remote:
        with files.open(a.path) as f:
            f.seek(a.offset + start * a.row_bytes)
            data = f.read((stop - start) * a.row_bytes)
        if len(data) != (stop - start) * a.row_bytes:
            raise ValueError("the file ends early (truncated)")
        return np.frombuffer(data, a.dtype).reshape(shape)
    if not a.compressed:
        view = np.memmap(a.path, a.dtype, "r", offset=a.offset + start * a.row_bytes, shape=shape)
        return np.asarray(view)
    with files.open(a.path) as raw, zipfile.ZipFile(raw) as zf, zf.open(a.member) as member:
        member.seek(a.offset + start * a.row_bytes)
        data = member.read((stop - start) * a.row_bytes)
    if len(data) != (stop - start) * a.row_bytes:
        raise ValueError("member ends early (truncated file)")
    return np.frombuffer(data, a.dtype).reshape(shape)
