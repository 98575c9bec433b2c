"""Read one shard: check trailer, index and header, then hand out verified raw blocks."""

from __future__ import annotations

import os

import numpy as np

from ..errors import FormatError, SchemaError
from .codec import CHECKSUM_NAME, checksum, decompress
from .files import map_file
from .schema import Schema
from .spec import (
    BLOCK_DTYPE, CODEC_NONE, CODEC_ZSTD, HEADER_PREFIX, MAX_BLOCK_RAW, MAX_BLOCKS, MAX_FIELDS, MAX_RECORDS,
    NO_BITMAP, READABLE_VERSIONS, SHARD_MAGIC, TRAILER_DTYPE, TRAILER_MAGIC, VAR_OFFSET_DTYPE, align_up,
    offsets_per_field,
)
from .untrusted import load_json

VERIFY_MODES = ("first", "always", "never")
MAX_KNOWN_HEADERS = 16  # distinct shard headers a dataset keeps parsed (its shards normally share one)


class ShardReader:
    """The index of one shard and access to its blocks.

    ``verify="first"`` checks a block's checksum the first time this reader touches it (so an
    epoch pays the hashing once, ~15 GB/s), ``"always"`` on every access, ``"never"`` not at all.
    ``verified``: the flags of an earlier reader of the same file (:attr:`verified_flags`), shared
    and updated in place, so a shard mapped again (a cache smaller than the data releases and
    maps shards batch after batch) does not hash its blocks again. ``headers``: the headers
    other shards of the dataset parsed, by their JSON text (the shards of a dataset share theirs),
    shared and added to: a header seen is checked but not parsed again (40 us of a shard's ~200 us
    opening).
    """

    def __init__(self, buf: np.ndarray, name: str, *, verify: str = "first", verified: np.ndarray | None = None,
                 headers: dict[bytes, tuple[dict, Schema]] | None = None):
        if verify not in VERIFY_MODES:
            raise ValueError(f"verify must be one of {VERIFY_MODES}, not {verify!r}")
        self.buf = buf
        self.name = name
        self.verify = verify
        self._parse({} if headers is None else headers)
        fresh = verified is None or verified.shape != (self.n_blocks,) or verified.dtype != bool
        self._verified = np.zeros(self.n_blocks, dtype=bool) if fresh else verified
        self.verified_flags = self._verified
        self._all_verified = verify == "never" or self.n_blocks == 0 or bool(self._verified.all())
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

    def _parse(self, headers: dict[bytes, tuple[dict, Schema]]) -> None:
        """Trailer, header, index: each checked before anything it declares is used.

        Values from the file are read as Python integers or bounded before any NumPy arithmetic,
        so no sum or product of them can wrap (docs/format.md, "Validation rules").
        """
        size = len(self.buf)
        if size < HEADER_PREFIX.itemsize + TRAILER_DTYPE.itemsize:
            raise self._fail(f"truncated ({size} bytes is too short for a shard)")
        trailer = self._check_trailer(size)
        header_end = self._check_header(trailer, size, headers)
        start, length = trailer["index_offset"], trailer["index_size"]
        k = len(self.schema)
        per_field = offsets_per_field(trailer["version"])
        expected = self.n_blocks * (BLOCK_DTYPE.itemsize + 4 * per_field * k)
        if length != expected or not header_end <= start <= size - TRAILER_DTYPE.itemsize - length:
            raise self._fail("index is truncated or misplaced")
        index = self.buf[start : start + length]
        if checksum(index) != trailer["index_checksum"]:
            raise self._fail("index is corrupt (checksum mismatch)")
        table_bytes = self.n_blocks * BLOCK_DTYPE.itemsize
        self.blocks = np.frombuffer(index[:table_bytes], dtype=BLOCK_DTYPE)
        starts = np.frombuffer(index[table_bytes:], dtype="<u4").reshape(self.n_blocks, per_field * k)
        self.col_offsets = starts[:, :k]
        # where each field's validity bitmap starts in each block (NO_BITMAP: no null there)
        self.bitmap_offsets = starts[:, k:] if per_field == 2 else np.full((self.n_blocks, k), NO_BITMAP, np.uint32)
        has_bitmap = (self.bitmap_offsets != NO_BITMAP).any(axis=0)
        self.null_fields = tuple(f.name for f, nulls in zip(self.schema, has_bitmap) if nulls)
        self._check_index(header_end, start)  # sets the block table's int64 columns

    def _check_trailer(self, size: int) -> dict[str, int]:
        """The trailer's fields as Python integers, each counts within its maximum."""
        raw = np.frombuffer(self.buf[size - TRAILER_DTYPE.itemsize :], dtype=TRAILER_DTYPE)[0]
        if bytes(raw["magic"]) != TRAILER_MAGIC.rstrip(b"\x00"):
            raise self._fail("truncated or not a fastload shard (no trailer at its end)")
        t = {name: int(raw[name]) for name in TRAILER_DTYPE.names if name != "magic"}
        if t["version"] not in READABLE_VERSIONS:
            raise self._fail(f"format version {t['version']} is newer than this fastload reads "
                             f"({READABLE_VERSIONS}); upgrade fastload")
        for name, top in (("n_fields", MAX_FIELDS), ("n_blocks", MAX_BLOCKS), ("n_records", MAX_RECORDS)):
            if t[name] > top:
                raise self._fail(f"trailer declares {t[name]} {name[2:]}, more than the {top} allowed")
        self.n_blocks, self.n_records = t["n_blocks"], t["n_records"]
        return t

    def _check_header(self, trailer: dict[str, int], size: int, headers: dict[bytes, tuple[dict, Schema]]) -> int:
        """Parse and check the header (prefix, checksum, JSON, schema); returns where it ends.
        A JSON text in ``headers`` is not parsed again (its checks against the trailer still run);
        one parsed here is added."""
        buf = self.buf
        prefix = np.frombuffer(buf[: HEADER_PREFIX.itemsize], dtype=HEADER_PREFIX)[0]
        if bytes(prefix["magic"]) != SHARD_MAGIC.rstrip(b"\x00"):
            raise self._fail("not a fastload shard (bad magic bytes at its start)")
        json_len = int(prefix["json_len"])
        header_end = align_up(HEADER_PREFIX.itemsize + json_len)
        if header_end > size - TRAILER_DTYPE.itemsize or checksum(buf[:header_end]) != trailer["header_checksum"]:
            raise self._fail("header is corrupt (checksum mismatch)")
        text = bytes(buf[HEADER_PREFIX.itemsize : HEADER_PREFIX.itemsize + json_len])
        parsed = headers.get(text)
        if parsed is None:
            header = load_json(text, f"shard {self.name} header")
            if not isinstance(header, dict):
                raise self._fail("header is malformed (not a JSON object)")
            try:
                parsed = header, Schema.from_json(header.get("schema"))
            except SchemaError as exc:
                raise self._fail(f"header is malformed ({exc})") from None
            if len(headers) < MAX_KNOWN_HEADERS:
                headers[text] = parsed
        self.header, self.schema = parsed
        versions = {int(prefix["version"]), self.header.get("format_version"), trailer["version"]}
        if len(versions) != 1:
            raise self._fail(f"header and trailer disagree on the format version ({sorted(map(str, versions))})")
        if self.header.get("checksum") != CHECKSUM_NAME:
            raise self._fail(f"unknown checksum {str(self.header.get('checksum'))[:40]!r}")
        if trailer["n_fields"] != len(self.schema):
            raise self._fail("index and header disagree on the number of fields")
        return header_end

    def _check_index(self, data_start: int, data_end: int) -> None:
        """Reject a block table that would make a read leave its block or the file.

        Checksums catch accidents; these bounds make a damaged or crafted index an error rather
        than a read out of bounds (verify="never" skips checksums, never these checks). Each
        unsigned value is first compared, unsigned, with a bound below 2^62; only then is it
        converted to int64 for sums, which therefore cannot wrap.
        """
        b = self.blocks
        if not self.n_blocks:
            if self.n_records:
                raise self._fail("index lists no blocks but a non-zero record count")
        for problem, ok in (("blocks outside the data area",
                             (b["offset"] <= data_end).all() and (b["stored_size"] <= data_end).all()),
                            (f"a raw size over the maximum of {MAX_BLOCK_RAW} bytes", (b["raw_size"] <= MAX_BLOCK_RAW).all()),
                            ("a wrong record count (a record number over the maximum)",
                             (b["first_record"] <= MAX_RECORDS).all())):
            if not ok:
                raise self._fail(f"index is inconsistent: {problem}")
        # kept for reading: each converted once, after its bound check
        offset, stored, raw = (b[k].astype(np.int64) for k in ("offset", "stored_size", "raw_size"))
        n = b["n_records"].astype(np.int64)  # at most MAX_BLOCKS * (2^32 - 1) < 2^63 in all
        self.block_offset, self.block_raw_size, self.block_records = offset, raw, n
        self.first_record = b["first_record"].astype(np.int64)
        self.col_offsets64 = self.col_offsets.astype(np.int64)
        bitmaps = self.bitmap_offsets.astype(np.int64)
        self.bitmap_offsets64 = np.where(self.bitmap_offsets == NO_BITMAP, -1, bitmaps)
        self.block_codec = b["codec"].astype(np.int64)
        raw_codec = b["codec"] == CODEC_NONE
        self.all_raw = bool(raw_codec.all())
        if not self.n_blocks:
            return
        problems = []
        if offset.min() < data_start or (offset + stored).max() > data_end:
            problems.append("blocks outside the data area")
        if (n.min() < 1 or self.first_record[0] != 0 or np.any(self.first_record[1:] != np.cumsum(n[:-1]))
                or int(n.sum()) != self.n_records):
            problems.append("a wrong record count (block record numbers do not add up)")
        if not np.all(raw_codec | (b["codec"] == CODEC_ZSTD)):  # np.isin: 40 us a shard
            problems.append("an unknown codec")
        if np.any(raw_codec & (stored != raw)):
            problems.append("a raw block whose stored and raw sizes differ")
        problems += self._check_columns(n, raw, bitmaps)
        if problems:
            raise self._fail("index is inconsistent: " + ", ".join(problems))

    def _check_columns(self, n: np.ndarray, raw: np.ndarray, bitmaps: np.ndarray) -> list[str]:
        """Column offsets: in schema order from 0, each column (and its validity bitmap, where the
        block has one) fitting before the next, the last ending inside the block, and a block
        ending with a fixed column or a bitmap ending exactly with it; so a block's raw size is no
        larger than its records imply (docs/format.md).

        ``n``, ``raw`` and ``bitmaps`` (each field's bitmap start per block, NO_BITMAP for none) are
        int64 and at most 2^32 - 1, so every quantity here stays below 2^62;
        a column's record count is compared with the room divided by the item size, never
        multiplied, because ``n * itemsize`` may reach 2^64.
        """
        problems = []
        col = self.col_offsets64
        end = np.zeros(len(n), dtype=np.int64)  # where the previous column ends, per block
        bitmap_len = (n + 7) // 8
        for j, f in enumerate(self.schema):
            start = col[:, j]
            room = raw - start
            width = f.itemsize if f.is_fixed else VAR_OFFSET_DTYPE.itemsize  # per record; 0: a null field
            slots = n if f.is_fixed else n + 1
            if np.any(room < 0) or (width and np.any(slots > room // width)):
                return problems + [f"column {f.name!r} running past its block"]
            if np.any(start < end):
                return problems + [f"column {f.name!r} overlapping the column before it"]
            end = start + slots * width  # at most raw: checked just above
            has = bitmaps[:, j] != NO_BITMAP
            if has.any():
                if f.kind == "null":
                    return problems + [f"a validity bitmap for the null field {f.name!r}"]
                if np.any(has & ((bitmaps[:, j] < end) | (bitmaps[:, j] + bitmap_len > raw))):
                    return problems + [f"validity bitmap of {f.name!r} running past its block or into its column"]
                end = np.where(has, bitmaps[:, j] + bitmap_len, end)
        last = self.schema.fields[-1]
        ends_exactly = last.is_fixed | (self.bitmap_offsets[:, -1] != NO_BITMAP)  # no payload after it
        if np.any(ends_exactly & (end != raw)):
            problems.append(f"a raw size beyond its last column {last.name!r}")
        if np.any(col[:, 0] != 0):
            problems.append("a first column not at the block's start")
        return problems

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
