"""Byte-level constants of the shard format (docs/format.md is the prose spec of the same)."""

from __future__ import annotations

import numpy as np

FORMAT_VERSION = 2  # 2: validity bitmaps (nulls), logical types, null and nested fields
READABLE_VERSIONS = (1, 2)

SHARD_MAGIC = b"FLSHARD\x00"
TRAILER_MAGIC = b"FLTRAIL\x00"
MANIFEST_NAME = "manifest.json"
PACK_JOURNAL = ".fastload-pack.json"  # an unfinished pack's resume journal (see docs/format.md)
SHARD_SUFFIX = ".fls"

ALIGN = 64  # block and index starts are 64-byte aligned, so column views are aligned too
COLUMN_ALIGN = 8  # each column inside a block's raw bytes starts 8-byte aligned

# header: magic, version, header JSON length, then JSON, zero padded to ALIGN
HEADER_PREFIX = np.dtype([("magic", "S8"), ("version", "<u4"), ("json_len", "<u4")])

# codecs of a stored block
CODEC_NONE = 0
CODEC_ZSTD = 1
CODEC_NAMES = {"none": CODEC_NONE, "zstd": CODEC_ZSTD}

# one row of the block table in the shard's index
BLOCK_DTYPE = np.dtype(
    [
        ("offset", "<u8"),  # file offset of the stored bytes
        ("stored_size", "<u8"),  # bytes in the file (compressed size when zstd)
        ("raw_size", "<u8"),  # bytes once decompressed
        ("first_record", "<u8"),  # shard-local number of the block's first record
        ("n_records", "<u4"),
        ("codec", "u1"),
        ("_pad", "V3"),
        ("checksum", "<u8"),  # xxh3_64 of the stored bytes
    ]
)
assert BLOCK_DTYPE.itemsize == 48

# the last 64 bytes of every shard
TRAILER_DTYPE = np.dtype(
    [
        ("magic", "S8"),
        ("version", "<u4"),
        ("n_fields", "<u4"),
        ("index_offset", "<u8"),  # file offset of the index (block table + column offsets)
        ("index_size", "<u8"),
        ("n_blocks", "<u8"),
        ("n_records", "<u8"),
        ("index_checksum", "<u8"),  # xxh3_64 of the index bytes
        ("header_checksum", "<u8"),  # xxh3_64 of the header (prefix + JSON + padding)
    ]
)
assert TRAILER_DTYPE.itemsize == 64

# variable-size columns store n+1 little-endian uint32 offsets, relative to the column's data
VAR_OFFSET_DTYPE = np.dtype("<u4")
MAX_BLOCK_RAW = 2**32 - 1

# the index holds, per block and field, a uint32 column start; from version 2 also a bitmap start
NO_BITMAP = 0xFFFFFFFF  # the bitmap start of a field without nulls in the block


def offsets_per_field(version: int) -> int:
    """uint32 start offsets the index holds per block and field: the column's, and from version 2
    its validity bitmap's."""
    return 1 if version == 1 else 2


def align_up(n: int, a: int = ALIGN) -> int:
    return (n + a - 1) // a * a


def shard_name(index: int) -> str:
    return f"shard-{index:06d}{SHARD_SUFFIX}"
