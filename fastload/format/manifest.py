"""The dataset manifest: schema, settings and the shard table; O(shards), never per-record data.

The shard table is stored column-wise (names, records, bytes, blocks, checksums) so a dataset of
100,000 shards keeps a manifest of a few MB that parses in well under a second. The manifest holds
its own checksum over its canonical JSON form, so a damaged manifest is caught at open.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FormatError, SchemaError
from .codec import CHECKSUM_NAME, checksum
from .schema import Schema
from .shard_writer import ShardInfo, write_file_atomically
from .spec import (
    BLOCK_DTYPE, FORMAT_VERSION, HEADER_PREFIX, MANIFEST_NAME, MAX_BLOCK_RECORDS, MAX_BLOCKS, MAX_MANIFEST_BYTES,
    MAX_RECORDS, READABLE_VERSIONS, TRAILER_DTYPE,
)
from .untrusted import all_match, check_count, check_hex16, check_plain_name, is_hex16, is_plain_name, load_json


@dataclass
class Manifest:
    """Everything needed to open a dataset without touching its shards."""

    schema: Schema
    settings: dict[str, Any]  # compression, level, block_size
    shard_names: list[str]
    shard_records: np.ndarray  # int64 per shard
    shard_bytes: np.ndarray  # int64 per shard
    shard_blocks: np.ndarray  # int64 per shard
    shard_checksums: list[str]  # xxh3_64 hex of each whole shard file
    metadata: dict[str, Any] = field(default_factory=dict)
    version: int = FORMAT_VERSION

    @property
    def n_records(self) -> int:
        return int(self.shard_records.sum())

    @property
    def n_shards(self) -> int:
        return len(self.shard_names)

    @property
    def n_bytes(self) -> int:
        return int(self.shard_bytes.sum())

    @classmethod
    def from_shards(cls, schema: Schema, settings: dict[str, Any], shards: list[ShardInfo],
                    metadata: dict[str, Any] | None = None) -> "Manifest":
        """The manifest of these shards; a field is marked nullable when some shard holds a null."""
        nullable = {name for s in shards for name in s.null_fields}
        return cls(
            schema=schema.with_nullable(nullable),
            settings=dict(settings),
            shard_names=[s.name for s in shards],
            shard_records=np.array([s.n_records for s in shards], dtype=np.int64),
            shard_bytes=np.array([s.n_bytes for s in shards], dtype=np.int64),
            shard_blocks=np.array([s.n_blocks for s in shards], dtype=np.int64),
            shard_checksums=[s.checksum for s in shards],
            metadata=dict(metadata or {}),
        )

    # -- JSON ------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        body = {
            "format": "fastload",
            "version": self.version,
            "schema": self.schema.to_json(),
            "settings": self.settings,
            "checksum_algorithm": CHECKSUM_NAME,
            "num_records": self.n_records,
            "shards": {
                "name": self.shard_names,
                "records": self.shard_records.tolist(),
                "bytes": self.shard_bytes.tolist(),
                "blocks": self.shard_blocks.tolist(),
                "checksum": self.shard_checksums,
            },
            "metadata": self.metadata,
        }
        body["manifest_checksum"] = _body_checksum(body)
        return body

    def dumps(self) -> bytes:
        return (json.dumps(self.to_json(), sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode()

    @classmethod
    def loads(cls, data: bytes, where: str = MANIFEST_NAME) -> "Manifest":
        """Parse and check a manifest: every value is validated before use (docs/format.md,
        "Validation rules"), so a damaged or crafted one is a FormatError naming ``where``."""
        if len(data) > MAX_MANIFEST_BYTES:
            raise FormatError(f"manifest {where} is {len(data)} bytes, more than the {MAX_MANIFEST_BYTES} "
                              "a manifest may hold")
        body = load_json(data, f"manifest {where}")
        if not isinstance(body, dict) or body.get("format") != "fastload":
            raise FormatError(f"{where} is not a fastload manifest")
        version = body.get("version")
        if isinstance(version, bool) or version not in READABLE_VERSIONS:
            raise FormatError(
                f"manifest {where}: format version {version} is not readable by this fastload "
                f"(reads {READABLE_VERSIONS}); upgrade fastload"
            )
        if body.get("checksum_algorithm") != CHECKSUM_NAME:
            raise FormatError(f"manifest {where}: unknown checksum algorithm {body.get('checksum_algorithm')!r}")
        stored = body.pop("manifest_checksum", None)
        try:
            canonical = _body_checksum(body)
        except (ValueError, RecursionError):  # a float NaN or an object json.dumps cannot write
            raise FormatError(f"manifest {where} cannot be serialized canonically") from None
        if stored != canonical:
            raise FormatError(f"manifest {where} is corrupt (checksum mismatch): it was edited or damaged")
        try:
            schema = Schema.from_json(body.get("schema"))
        except SchemaError as exc:
            raise FormatError(f"manifest {where}: invalid schema ({exc})") from None
        settings, metadata = body.get("settings"), body.get("metadata", {})
        if not isinstance(settings, dict) or not isinstance(metadata, dict):
            raise FormatError(f"manifest {where} is malformed (settings and metadata must be objects)")
        names, records, nbytes, blocks, checksums = _check_shard_table(body.get("shards"), len(schema), where)
        if check_count(body.get("num_records"), MAX_RECORDS, f"manifest {where}: num_records") != sum(records):
            raise FormatError(f"manifest {where} is inconsistent: num_records is {body.get('num_records')}, "
                              f"the shards hold {sum(records)}")
        return cls(schema=schema, settings=settings, shard_names=names,
                   shard_records=np.array(records, dtype=np.int64), shard_bytes=np.array(nbytes, dtype=np.int64),
                   shard_blocks=np.array(blocks, dtype=np.int64), shard_checksums=checksums,
                   metadata=metadata, version=version)

    def write(self, root: str | os.PathLike) -> Path:
        """Write atomically (temporary name, fsync, rename): the manifest is the commit point."""
        final = Path(root) / MANIFEST_NAME
        write_file_atomically(final, self.dumps())
        return final


def _check_shard_table(shards: Any, n_fields: int, where: str):
    """The shard table's five lists, checked before any of it is used.

    Names are plain file names (nothing outside the dataset directory can be named), checksums 16
    lower-case hex digits, counts integers below their maxima, and each shard's counts are bounded
    by what its byte size allows: its index needs ``48 + 4 * n_fields`` bytes per block next to an
    80-byte header prefix and trailer, and a block holds 1 to 2^32 - 1 records. Checked a list at
    a time (100,000 shards in ~30 ms); the first bad entry is then named by :func:`_check_shard`.
    """
    keys = ("name", "records", "bytes", "blocks", "checksum")
    if not isinstance(shards, dict) or not all(isinstance(shards.get(k), list) for k in keys):
        raise FormatError(f"manifest {where} is malformed (the shard table needs the lists {list(keys)})")
    names, records, nbytes, blocks, checksums = (shards[k] for k in keys)
    if len({len(names), len(records), len(nbytes), len(blocks), len(checksums)}) != 1:
        raise FormatError(f"manifest {where} is inconsistent (shard table lists differ in length)")
    ok = (all_match(names, is_plain_name) and all_match(checksums, is_hex16)
          and all(_ints_within(v, top) for v, top in ((records, MAX_RECORDS), (nbytes, 2**63 - 1),
                                                       (blocks, MAX_BLOCKS))))
    if ok:  # every count is now an int64 small enough for the products below
        n, size, b = (np.array(v, dtype=np.int64) for v in (records, nbytes, blocks))
        room = size - (HEADER_PREFIX.itemsize + TRAILER_DTYPE.itemsize)
        ok = bool(np.all((room >= 0) & (b * (BLOCK_DTYPE.itemsize + 4 * n_fields) <= room)
                         & (b <= n) & (n <= b * MAX_BLOCK_RECORDS)))
    if not ok:
        for s in range(len(names)):
            _check_shard(s, names[s], records[s], nbytes[s], blocks[s], checksums[s], n_fields, where)
    if len(set(names)) != len(names):
        raise FormatError(f"manifest {where} lists a shard name twice")
    return list(names), records, nbytes, blocks, list(checksums)


def _check_shard(s: int, name, n, size, b, digest, n_fields: int, where: str) -> None:
    """One shard table entry, checked on its own so that the error names it."""
    what = f"manifest {where}: shard {s}"
    check_plain_name(name, f"{what} name")
    check_hex16(digest, f"{what} ({name}) checksum")
    check_count(n, MAX_RECORDS, f"{what} ({name}) records")
    check_count(size, 2**63 - 1, f"{what} ({name}) bytes")
    check_count(b, MAX_BLOCKS, f"{what} ({name}) blocks")
    room = size - HEADER_PREFIX.itemsize - TRAILER_DTYPE.itemsize
    if room < 0 or b * (BLOCK_DTYPE.itemsize + 4 * n_fields) > room or not b <= n <= b * MAX_BLOCK_RECORDS:
        raise FormatError(f"{what} ({name}) is inconsistent: {n} records in {b} blocks do not fit {size} bytes")


def _ints_within(values: list, top: int) -> bool:
    """All plain ints (no bools, floats or strings) in 0..top; min and max run in C."""
    return not values or (set(map(type, values)) == {int} and min(values) >= 0 and max(values) <= top)


def _body_checksum(body: dict[str, Any]) -> str:
    canon = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return f"{checksum(canon):016x}"
