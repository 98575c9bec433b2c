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
SIZES_SUFFIX = ".fls-sizes"  # a field's record sizes beside the shards (record_sizes.py)

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

# Maxima a reader enforces before any arithmetic on values read from a file or a server, so that
# int64 sums and products of them cannot wrap (docs/format.md, "Validation rules"):
MAX_BLOCK_RAW = 2**32 - 1  # raw bytes of one block: in-block offsets are u4
MAX_BLOCK_RECORDS = 2**32 - 1  # records of one block: n_records is u4
MAX_RECORDS = 2**48  # records of a dataset (and so of a shard): 2^48 + 2^32 * 2^32 stays < 2^63
MAX_BLOCKS = 2**31  # blocks of one shard: 2^31 blocks of < 2^32 records each stay < 2^63
MAX_FIELDS = 2**16  # fields of a schema
MAX_NDIM = 32  # dimensions of an array field
MAX_JSON_DEPTH = 64  # nesting of the manifest's and a header's JSON (metadata included)
MAX_MANIFEST_BYTES = 2**30  # a manifest of 100,000 shards is ~8 MB
MAX_NAME_LENGTH = 200  # characters of a shard name: the cache adds ~45 to it, and NAME_MAX is 255

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
