"""Read one shard: check trailer, index and header, then hand out verified raw blocks."""

from __future__ import annotations

import json
import mmap
import os
import numpy as np

from ..errors import FormatError
from .codec import CHECKSUM_NAME, checksum, decompress
from .schema import Schema
from .spec import (
    BLOCK_DTYPE, CODEC_NONE, CODEC_ZSTD, HEADER_PREFIX, NO_BITMAP, VAR_OFFSET_DTYPE, READABLE_VERSIONS, SHARD_MAGIC,
    TRAILER_DTYPE, TRAILER_MAGIC, align_up, offsets_per_field,
)

VERIFY_MODES = ("first", "always", "never")


def map_file(path: str | os.PathLike) -> np.ndarray:
    """Memory-map a file read-only as a uint8 array (empty files give an empty array)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return np.zeros(0, np.uint8)
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    return np.frombuffer(mm, dtype=np.uint8)


class ShardReader:
    """The index of one shard and access to its blocks.

    ``verify="first"`` checks a block's checksum the first time this reader touches it (so an
    epoch pays the hashing once, ~15 GB/s), ``"always"`` on every access, ``"never"`` not at all.
    """

    def __init__(self, buf: np.ndarray, name: str, *, verify: str = "first"):
        if verify not in VERIFY_MODES:
            raise ValueError(f"verify must be one of {VERIFY_MODES}, not {verify!r}")
        self.buf = buf
        self.name = name
        self.verify = verify
        self._parse()
        self._verified = np.zeros(self.n_blocks, dtype=bool)
        self._all_verified = verify == "never" or self.n_blocks == 0
        self._column_addresses: dict[int, np.ndarray] = {}

    @classmethod
    def open(cls, path: str | os.PathLike, *, verify: str = "first") -> "ShardReader":
        try:
            buf = map_file(path)
        except OSError as exc:
            raise FormatError(f"shard {path}: cannot be opened ({exc.strerror or exc})") from exc
        return cls(buf, str(path), verify=verify)

    # -- parsing ---------------------------------------------------------------------------
    def _fail(self, what: str) -> FormatError:
        return FormatError(f"shard {self.name}: {what}")

    def _parse(self) -> None:
        buf = self.buf
        size = len(buf)
        if size < HEADER_PREFIX.itemsize + TRAILER_DTYPE.itemsize:
            raise self._fail(f"truncated ({size} bytes is too short for a shard)")
        trailer = np.frombuffer(buf[size - TRAILER_DTYPE.itemsize :], dtype=TRAILER_DTYPE)[0]
        if bytes(trailer["magic"]) != TRAILER_MAGIC.rstrip(b"\x00"):
            raise self._fail("truncated or not a fastload shard (no trailer at its end)")
        if int(trailer["version"]) not in READABLE_VERSIONS:
            raise self._fail(
                f"format version {int(trailer['version'])} is newer than this fastload reads "
                f"({READABLE_VERSIONS}); upgrade fastload"
            )
        prefix = np.frombuffer(buf[: HEADER_PREFIX.itemsize], dtype=HEADER_PREFIX)[0]
        if bytes(prefix["magic"]) != SHARD_MAGIC.rstrip(b"\x00"):
            raise self._fail("not a fastload shard (bad magic bytes at its start)")
        json_len = int(prefix["json_len"])
        header_end = align_up(HEADER_PREFIX.itemsize + json_len)
        if header_end > size or checksum(buf[:header_end]) != int(trailer["header_checksum"]):
            raise self._fail("header is corrupt (checksum mismatch)")
        try:
            self.header = json.loads(bytes(buf[HEADER_PREFIX.itemsize : HEADER_PREFIX.itemsize + json_len]))
            self.schema = Schema.from_json(self.header["schema"])
        except (ValueError, KeyError, TypeError) as exc:
            raise self._fail(f"header is malformed ({exc})") from None
        versions = {int(prefix["version"]), self.header.get("format_version"), int(trailer["version"])}
        if len(versions) != 1:
            raise self._fail(f"header and trailer disagree on the format version ({sorted(map(str, versions))})")
        if self.header.get("checksum") != CHECKSUM_NAME:
            raise self._fail(f"unknown checksum {self.header.get('checksum')!r}")
        self.n_blocks = int(trailer["n_blocks"])
        self.n_records = int(trailer["n_records"])
        n_fields = int(trailer["n_fields"])
        if n_fields != len(self.schema):
            raise self._fail("index and header disagree on the number of fields")
        start, length = int(trailer["index_offset"]), int(trailer["index_size"])
        per_field = offsets_per_field(int(trailer["version"]))
        expected = self.n_blocks * (BLOCK_DTYPE.itemsize + 4 * per_field * n_fields)
        if length != expected or start + length > size - TRAILER_DTYPE.itemsize:
            raise self._fail("index is truncated or misplaced")
        index = buf[start : start + length]
        if checksum(index) != int(trailer["index_checksum"]):
            raise self._fail("index is corrupt (checksum mismatch)")
        table_bytes = self.n_blocks * BLOCK_DTYPE.itemsize
        self.blocks = np.frombuffer(index[:table_bytes], dtype=BLOCK_DTYPE)
        starts = np.frombuffer(index[table_bytes:], dtype="<u4").reshape(self.n_blocks, per_field * n_fields)
        self.col_offsets = starts[:, :n_fields]
        # where each field's validity bitmap starts in each block (NO_BITMAP: no null there)
        self.bitmap_offsets = starts[:, n_fields:] if per_field == 2 else np.full((self.n_blocks, n_fields),
                                                                                   NO_BITMAP, np.uint32)
        has_bitmap = (self.bitmap_offsets != NO_BITMAP).any(axis=0)
        self.null_fields = tuple(f.name for f, nulls in zip(self.schema, has_bitmap) if nulls)
        self.first_record = self.blocks["first_record"].astype(np.int64)
        self.block_records = self.blocks["n_records"].astype(np.int64)
        self._check_index(header_end, start)
        self.all_raw = bool(np.all(self.blocks["codec"] == CODEC_NONE))
        self.block_offset = self.blocks["offset"].astype(np.int64)
        self.block_codec = self.blocks["codec"].astype(np.int64)
        self.col_offsets64 = self.col_offsets.astype(np.int64)
        self.bitmap_offsets64 = np.where(self.bitmap_offsets == NO_BITMAP, -1, self.bitmap_offsets.astype(np.int64))
        self.block_raw_size = self.blocks["raw_size"].astype(np.int64)

    def _check_index(self, data_start: int, data_end: int) -> None:
        """Reject an index whose blocks or columns would make reads leave the block or the file.

        Checksums catch accidents; these bounds make a damaged or crafted index an error rather
        than a read out of bounds (verify="never" skips checksums, never these checks).
        """
        if not self.n_blocks:
            if self.n_records:
                raise self._fail("index lists no blocks but a non-zero record count")
            return
        b = self.blocks
        offset = b["offset"].astype(np.int64)
        stored = b["stored_size"].astype(np.int64)
        raw = b["raw_size"].astype(np.int64)
        n = self.block_records
        expected_first = np.concatenate([[0], np.cumsum(n)[:-1]])
        problems = []
        if offset.min() < data_start or (offset + stored).max() > data_end:
            problems.append("blocks outside the data area")
        if not np.array_equal(self.first_record, expected_first) or int(n.sum()) != self.n_records:
            problems.append("a wrong record count (block record numbers do not add up)")
        if not np.all(np.isin(b["codec"], (CODEC_NONE, CODEC_ZSTD))):
            problems.append("an unknown codec")
        if np.any((b["codec"] == CODEC_NONE) & (stored != raw)):
            problems.append("a raw block whose stored and raw sizes differ")
        for j, f in enumerate(self.schema):
            col = self.col_offsets[:, j].astype(np.int64)
            need = n * f.itemsize if f.is_fixed else (n + 1) * VAR_OFFSET_DTYPE.itemsize
            if np.any(col + need > raw):
                problems.append(f"column {f.name!r} running past its block")
            bitmap = self.bitmap_offsets[:, j].astype(np.int64)
            has = bitmap != NO_BITMAP
            if np.any(has & (bitmap + (n + 7) // 8 > raw)):
                problems.append(f"validity bitmap of {f.name!r} running past its block")
            if f.kind == "null" and has.any():
                problems.append(f"a validity bitmap for the null field {f.name!r}")
        if problems:
            raise self._fail("index is inconsistent: " + ", ".join(problems))

    # -- access ----------------------------------------------------------------------------
    def locate(self, local: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Block number and position within the block of shard-local record numbers."""
        block = np.searchsorted(self.first_record, local, side="right") - 1
        return block, local - self.first_record[block]

    def stored(self, b: int) -> np.ndarray:
        row = self.blocks[b]
        off = int(row["offset"])
        return self.buf[off : off + int(row["stored_size"])]

    def check_block(self, b: int) -> None:
        """Verify block ``b``'s checksum according to the verify mode."""
        if self.verify == "never" or (self.verify == "first" and self._verified[b]):
            return
        if checksum(self.stored(b)) != int(self.blocks[b]["checksum"]):
            first = int(self.first_record[b])
            last = first + int(self.block_records[b]) - 1
            raise self._fail(f"block {b} (records {first}..{last} of this shard) is corrupt: checksum mismatch")
        self._verified[b] = True

    def check_blocks(self, blocks: np.ndarray) -> None:
        """Verify the given blocks (per the verify mode); cheap once every block has been checked."""
        if self._all_verified and self.verify != "always":
            return
        todo = blocks if self.verify == "always" else blocks[~self._verified[blocks]]
        if todo.size:
            for b in np.unique(todo):
                self.check_block(int(b))
            if self.verify == "first" and self._verified.all():
                self._all_verified = True

    def raw_block(self, b: int) -> np.ndarray:
        """The raw (decompressed, verified) bytes of block ``b``; a view into the file when stored raw."""
        self.check_block(b)
        row = self.blocks[b]
        stored = self.stored(b)
        if int(row["codec"]) == CODEC_NONE:
            return stored
        try:
            raw = decompress(stored, int(row["codec"]), int(row["raw_size"]))
        except Exception as exc:  # zstd raises its own error type on garbage
            raise self._fail(f"block {b} cannot be decompressed ({exc})") from exc
        if len(raw) != int(row["raw_size"]):
            raise self._fail(f"block {b} decompressed to {len(raw)} bytes, expected {int(row['raw_size'])}")
        return np.frombuffer(raw, dtype=np.uint8)

    def block_address(self, b: int) -> int:
        """Address of a raw-stored block's first byte in this process (valid while the map lives)."""
        return self.base_address + int(self.block_offset[b])

    @property
    def fully_verified(self) -> bool:
        """True when no block needs checking before it is read (all checked, or verify="never")."""
        return self._all_verified and self.verify != "always"

    def verified_blocks(self) -> np.ndarray:
        """Which blocks need no check before reading (all of them with verify="never")."""
        if self.verify == "never":
            return np.ones(self.n_blocks, dtype=bool)
        return self._verified.copy()

    def column_address(self, column: int) -> np.ndarray:
        """Absolute address of a column's start in every block (raw-stored shards only)."""
        cached = self._column_addresses.get(column)
        if cached is None:
            cached = self.base_address + self.block_offset + self.col_offsets64[:, column]
            self._column_addresses[column] = cached
        return cached

    @property
    def base_address(self) -> int:
        """Address of the shard's first byte in this process (valid while the map lives)."""
        return self.buf.ctypes.data

    def verify_all(self) -> None:
        """Check every block checksum (``fastload verify``)."""
        for b in range(self.n_blocks):
            if checksum(self.stored(b)) != int(self.blocks[b]["checksum"]):
                first = int(self.first_record[b])
                raise self._fail(
                    f"block {b} (records {first}..{first + int(self.block_records[b]) - 1}) is corrupt: checksum mismatch"
                )
