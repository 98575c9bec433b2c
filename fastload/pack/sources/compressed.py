"""Compressed text inputs (``data.csv.gz``, ``part.jsonl.zst``, ...): suffixes and decompressing reads.

gzip, bz2 and xz are decompressed by the standard library, which checks each stream's end and
checksum (pyarrow's gzip reader returned a file cut before its trailer without a word); zstd and
lz4 (frame) by pyarrow's codecs, which report a truncated stream. A compressed file cannot be entered at an arbitrary byte, so it is always one
segment, read as a stream: files, not byte ranges, are then the unit of parallelism.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import zlib
from typing import BinaryIO, Iterator

from ...errors import SourceError, StorageError
from .files import InputFiles, is_url

# suffix -> codec name (pyarrow's, except "xz")
COMPRESSION_SUFFIXES = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd", ".zstd": "zstd",
                        ".lz4": "lz4"}
STREAM_ERRORS = (OSError, EOFError, lzma.LZMAError, zlib.error)  # what a damaged compressed stream raises
_STDLIB_OPEN = {"gzip": gzip.open, "bz2": bz2.open, "xz": lzma.open}


def compression_of(path: str) -> str | None:
    """The codec a file name's last suffix names, or None for a plain file."""
    return COMPRESSION_SUFFIXES.get(os.path.splitext(path)[1].lower())


def without_compression(name: str) -> str:
    """``data.csv.gz`` -> ``data.csv``; other names unchanged."""
    stem, ext = os.path.splitext(name)
    return stem if ext.lower() in COMPRESSION_SUFFIXES else name


def open_input(path: str, files: InputFiles | None = None) -> BinaryIO:
    """``path`` opened for reading its (decompressed) bytes; a missing file is a SourceError.
    A URL is read through ``files`` (ranged reads, decompressed as they arrive)."""
    codec = compression_of(path)
    if files is not None and is_url(path):
        raw = files.open(path)
        if codec is None:
            return raw
        if codec in _STDLIB_OPEN:
            return _STDLIB_OPEN[codec](raw, "rb")
        import pyarrow as pa

        return pa.CompressedInputStream(pa.PythonFile(raw, mode="r"), codec)
    try:
        if codec is None:
            return open(path, "rb")
        if codec in _STDLIB_OPEN:
            return _STDLIB_OPEN[codec](path, "rb")
        import pyarrow as pa

        return pa.input_stream(path, compression=codec)
    except FileNotFoundError:
        raise SourceError(f"{path}: no such file") from None
    except STREAM_ERRORS as exc:
        raise SourceError(f"{path}: cannot read: {exc}") from None


def read_error(path: str, exc: BaseException) -> SourceError | StorageError:
    """The SourceError for a read that failed part-way (a truncated or damaged compressed file);
    a StorageError (the store failed after its retries) is kept as it is."""
    if isinstance(exc, StorageError):
        return exc
    what = f"cannot decompress ({compression_of(path)})" if compression_of(path) else "cannot read"
    return SourceError(f"{path}: {what}: {exc}")


def line_blocks(f: BinaryIO, path: str, size: int) -> Iterator[tuple[bytes, int]]:
    """Blocks of about ``size`` bytes that end at a newline (the last one may not), each with the
    1-based number of its first line. A line longer than ``size`` stays whole."""
    pending: list[bytes] = []  # the start of a line not yet ended (kept as pieces: no quadratic joins)
    line = 1
    while True:
        try:
            piece = f.read(size)
        except STREAM_ERRORS as exc:
            raise read_error(path, exc) from None
        if not piece:
            break
        cut = piece.rfind(b"\n") + 1
        if cut == 0:
            pending.append(piece)
            continue
        block = b"".join([*pending, piece[:cut]])
        pending = [piece[cut:]] if cut < len(piece) else []
        yield block, line
        line += block.count(b"\n")
    if pending:
        yield b"".join(pending), line
