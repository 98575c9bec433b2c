"""Write one shard file: header, aligned blocks, index, trailer; published by an atomic rename."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .block import EncodedBlock
from .codec import CHECKSUM_NAME, checksum, new_hasher
from .schema import Schema
from .spec import (
    BLOCK_DTYPE, FORMAT_VERSION, HEADER_PREFIX, SHARD_MAGIC, TRAILER_DTYPE, TRAILER_MAGIC,
    align_up,
)

TEMP_MARK = ".tmp-"


@dataclass(frozen=True)
class ShardInfo:
    """What the manifest records of a finished shard."""

    name: str
    n_records: int
    n_bytes: int
    n_blocks: int
    checksum: str  # xxh3_64 of the whole file, 16 hex digits


def shard_header(schema: Schema, settings: dict[str, Any]) -> bytes:
    """The header bytes: deterministic (sorted keys, no timestamps), padded to ALIGN."""
    body = {"format_version": FORMAT_VERSION, "schema": schema.to_json(), "checksum": CHECKSUM_NAME,
            **settings}
    text = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    prefix = np.zeros(1, HEADER_PREFIX)
    prefix["magic"], prefix["version"], prefix["json_len"] = SHARD_MAGIC, FORMAT_VERSION, len(text)
    head = prefix.tobytes() + text
    return head + b"\x00" * (align_up(len(head)) - len(head))


def temp_path_for(final: Path) -> Path:
    """A unique hidden temporary name beside ``final`` (never mistaken for a finished shard)."""
    return final.with_name(f".{final.name}{TEMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}")


class ShardWriter:
    """Append encoded blocks to a temporary file; ``close()`` writes the index and renames it."""

    def __init__(self, path: str | os.PathLike, schema: Schema, settings: dict[str, Any]):
        self.path = Path(path)
        self.schema = schema
        self._tmp = temp_path_for(self.path)
        self._file = open(self._tmp, "wb")
        self._hasher = new_hasher()
        self._pos = 0
        self._blocks: list[tuple] = []
        self._col_offsets: list[np.ndarray] = []
        self.n_records = 0
        self._header = shard_header(schema, settings)
        self._write(self._header)

    @property
    def n_bytes(self) -> int:
        return self._pos

    @property
    def n_blocks(self) -> int:
        return len(self._blocks)

    def _write(self, data) -> None:
        self._file.write(data)
        self._hasher.update(data)
        self._pos += len(memoryview(data).cast("B"))

    def _pad_to(self, pos: int) -> None:
        if pos > self._pos:
            self._write(b"\x00" * (pos - self._pos))

    def add(self, block: EncodedBlock) -> None:
        self._pad_to(align_up(self._pos))
        offset = self._pos
        self._write(block.stored)
        self._blocks.append(
            (offset, len(memoryview(block.stored).cast("B")), block.raw_size, self.n_records,
             block.n_records, block.codec, b"\x00" * 3, block.checksum)
        )
        self._col_offsets.append(block.col_offsets)
        self.n_records += block.n_records

    def close(self) -> ShardInfo:
        """Write index and trailer, flush to disk, and publish the shard under its final name."""
        self._pad_to(align_up(self._pos))
        index_offset = self._pos
        table = np.array(self._blocks, dtype=BLOCK_DTYPE)
        cols = (np.stack(self._col_offsets) if self._col_offsets
                else np.zeros((0, len(self.schema)), np.uint32)).astype("<u4")
        index = table.tobytes() + cols.tobytes()
        self._write(index)
        trailer = np.zeros(1, TRAILER_DTYPE)
        trailer["magic"] = TRAILER_MAGIC
        trailer["version"] = FORMAT_VERSION
        trailer["n_fields"] = len(self.schema)
        trailer["index_offset"] = index_offset
        trailer["index_size"] = len(index)
        trailer["n_blocks"] = len(self._blocks)
        trailer["n_records"] = self.n_records
        trailer["index_checksum"] = checksum(index)
        trailer["header_checksum"] = checksum(self._header)
        self._write(trailer.tobytes())
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._tmp, self.path)
        return ShardInfo(self.path.name, self.n_records, self._pos, len(self._blocks),
                         f"{self._hasher.intdigest():016x}")

    def abort(self) -> None:
        """Drop the temporary file (used when the write fails or is interrupted)."""
        if not self._file.closed:
            self._file.close()
        self._tmp.unlink(missing_ok=True)
