"""Block compression (zstd or none) and checksums (xxh3_64): thin wrappers over the libraries."""

from __future__ import annotations

import xxhash
import zstandard

from .spec import CODEC_NONE, CODEC_ZSTD

CHECKSUM_NAME = "xxh3_64"


def checksum(buf) -> int:
    """xxh3_64 of a bytes-like object (~15 GB/s per core, so verifying is cheap next to reading)."""
    return xxhash.xxh3_64_intdigest(buf)


def new_hasher():
    """A streaming xxh3_64 for whole-shard checksums."""
    return xxhash.xxh3_64()


def compress(raw, codec: int, level: int) -> tuple[int, bytes | memoryview]:
    """Compress one block; keep it raw when zstd does not save at least 3% (random token ids)."""
    if codec == CODEC_NONE:
        return CODEC_NONE, raw
    packed = zstandard.ZstdCompressor(level=level).compress(raw)
    if len(packed) >= 0.97 * len(memoryview(raw).cast("B")):
        return CODEC_NONE, raw
    return CODEC_ZSTD, packed


def decompress(stored, codec: int, raw_size: int):
    """Return the raw bytes of a stored block; never more than ``raw_size`` bytes are produced.

    python-zstandard allocates the size a frame header declares and ignores ``max_output_size``
    then, so a declared size other than ``raw_size`` is refused before decompressing (a 16 KB frame
    can declare 4 GiB).
    """
    if codec == CODEC_NONE:
        return stored
    if codec == CODEC_ZSTD:
        if raw_size < 1:
            raise ValueError("a zstd block must declare a positive raw size")
        declared = zstandard.frame_content_size(stored)  # -1: not in the header
        if declared not in (-1, raw_size):
            raise ValueError(f"its zstd frame declares {declared} bytes, the index {raw_size}")
        return zstandard.ZstdDecompressor().decompress(stored, max_output_size=raw_size)
    raise ValueError(f"unknown codec {codec}")


def decompress_prefix(stored, codec: int, raw_size: int, n: int):
    """The first ``n`` raw bytes of a stored block (fewer when it holds fewer), decompressing no
    further than they need: a zstd frame is decompressed in its own blocks of at most 128 KB, so
    the offset table at a block's start costs one of them, not the whole block."""
    if codec == CODEC_NONE:
        return memoryview(stored)[:n]
    if codec == CODEC_ZSTD:
        n = min(n, raw_size)
        reader = zstandard.ZstdDecompressor().stream_reader(stored)
        parts, got = [], 0
        try:
            while got < n:
                part = reader.read(n - got)
                if not part:
                    break
                parts.append(part)
                got += len(part)
        except zstandard.ZstdError as exc:  # as decompress's callers expect: a ValueError
            raise ValueError(str(exc)) from exc
        return b"".join(parts)
    raise ValueError(f"unknown codec {codec}")
