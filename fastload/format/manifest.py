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

from ..errors import FormatError
from .codec import CHECKSUM_NAME, checksum
from .schema import Schema
from .shard_writer import ShardInfo, fsync_dir, temp_path_for
from .spec import FORMAT_VERSION, MANIFEST_NAME, READABLE_VERSIONS


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
        try:
            body = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise FormatError(f"manifest {where} is not valid JSON ({exc})") from None
        if not isinstance(body, dict) or body.get("format") != "fastload":
            raise FormatError(f"{where} is not a fastload manifest")
        version = body.get("version")
        if version not in READABLE_VERSIONS:
            raise FormatError(
                f"manifest {where}: format version {version} is not readable by this fastload "
                f"(reads {READABLE_VERSIONS}); upgrade fastload"
            )
        if body.get("checksum_algorithm") != CHECKSUM_NAME:
            raise FormatError(f"manifest {where}: unknown checksum algorithm {body.get('checksum_algorithm')!r}")
        stored = body.pop("manifest_checksum", None)
        if stored != _body_checksum(body):
            raise FormatError(f"manifest {where} is corrupt (checksum mismatch): it was edited or damaged")
        try:
            shards = body["shards"]
            m = cls(
                schema=Schema.from_json(body["schema"]),
                settings=body["settings"],
                shard_names=list(shards["name"]),
                shard_records=np.asarray(shards["records"], dtype=np.int64),
                shard_bytes=np.asarray(shards["bytes"], dtype=np.int64),
                shard_blocks=np.asarray(shards["blocks"], dtype=np.int64),
                shard_checksums=list(shards["checksum"]),
                metadata=body.get("metadata", {}),
                version=version,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"manifest {where} is malformed ({exc!r})") from None
        lengths = {len(m.shard_names), len(m.shard_records), len(m.shard_bytes), len(m.shard_blocks),
                   len(m.shard_checksums)}
        if len(lengths) != 1 or m.n_records != body.get("num_records"):
            raise FormatError(f"manifest {where} is inconsistent (shard table lengths or record count)")
        return m

    def write(self, root: str | os.PathLike) -> Path:
        """Write atomically (temporary name, fsync, rename): the manifest is the commit point."""
        final = Path(root) / MANIFEST_NAME
        tmp = temp_path_for(final)
        with open(tmp, "wb") as f:
            f.write(self.dumps())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        fsync_dir(final.parent)
        return final


def _body_checksum(body: dict[str, Any]) -> str:
    canon = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return f"{checksum(canon):016x}"
