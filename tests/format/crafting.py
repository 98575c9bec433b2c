"""Crafting hostile datasets: edit a shard's header, block table, column offsets or trailer, or the
manifest, and recompute every checksum over the result, so that only the structural checks stand
between the edit and a read (the regression tests of issue 10 and the fuzzers use this).

Nothing here imports the reader's validation: the layout comes from fastload.format.spec, and the
checksums are xxhash's own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xxhash

from fastload.format.spec import BLOCK_DTYPE, HEADER_PREFIX, MANIFEST_NAME, TRAILER_DTYPE, offsets_per_field


def xxh(data) -> int:
    return xxhash.xxh3_64_intdigest(bytes(data))


def write_manifest(root: Path, body: dict, text=None) -> None:
    """Write ``body`` as the manifest with a valid ``manifest_checksum`` (``text`` may rewrite the
    JSON text after the checksum is computed, to add what json.dumps would not write)."""
    body = {k: v for k, v in body.items() if k != "manifest_checksum"}
    canon = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    body["manifest_checksum"] = f"{xxh(canon):016x}"
    out = json.dumps(body)
    (Path(root) / MANIFEST_NAME).write_text(text(out) if text else out)


def edit_manifest(root: Path, edit) -> dict:
    body = json.loads((Path(root) / MANIFEST_NAME).read_bytes())
    edit(body)
    write_manifest(root, body)
    return body


@dataclass
class Shard:
    """A shard file cut into its parts; :meth:`save` reassembles it with fresh checksums."""

    head: bytearray  # header prefix + JSON + padding
    data: bytearray  # from the end of the header to the index: the blocks
    table: np.ndarray  # BLOCK_DTYPE rows
    cols: np.ndarray  # (n_blocks, n_fields) uint32 column starts; from v2, then n_fields bitmap starts
    trailer: np.ndarray  # TRAILER_DTYPE, one row

    @classmethod
    def load(cls, path: Path) -> "Shard":
        raw = Path(path).read_bytes()
        trailer = np.frombuffer(raw[-TRAILER_DTYPE.itemsize:], TRAILER_DTYPE).copy()
        start, nb, nf = (int(trailer[k][0]) for k in ("index_offset", "n_blocks", "n_fields"))
        json_len = int(np.frombuffer(raw[:HEADER_PREFIX.itemsize], HEADER_PREFIX)["json_len"][0])
        head_end = -(-(HEADER_PREFIX.itemsize + json_len) // 64) * 64
        table = np.frombuffer(raw[start:start + nb * BLOCK_DTYPE.itemsize], BLOCK_DTYPE).copy()
        width = nf * offsets_per_field(int(trailer["version"][0]))  # v2: column starts, then bitmap starts
        cols = np.frombuffer(raw[start + table.nbytes:start + table.nbytes + 4 * nb * width], "<u4").reshape(nb, width).copy()
        return cls(bytearray(raw[:head_end]), bytearray(raw[head_end:start]), table, cols, trailer)

    @property
    def header_json(self) -> dict:
        n = int(np.frombuffer(bytes(self.head[:HEADER_PREFIX.itemsize]), HEADER_PREFIX)["json_len"][0])
        return json.loads(bytes(self.head[HEADER_PREFIX.itemsize:HEADER_PREFIX.itemsize + n]))

    def set_header_json(self, text: bytes) -> None:
        prefix = np.frombuffer(bytes(self.head[:HEADER_PREFIX.itemsize]), HEADER_PREFIX).copy()
        prefix["json_len"] = len(text)
        head = prefix.tobytes() + text
        self.head = bytearray(head + b"\0" * (-len(head) % 64))

    def stored(self, b: int) -> bytearray:
        at = int(self.table["offset"][b]) - len(self.head)
        return self.data[at:at + int(self.table["stored_size"][b])]

    def save(self, path: Path, *, block_checksums: bool = True, keep_trailer: tuple[str, ...] = ()) -> bytes:
        """Write the shard back: blocks where the table says (when inside the data), block, index
        and header checksums recomputed, trailer offsets and counts from the parts (except the
        fields named in ``keep_trailer``, which keep their crafted value)."""
        if block_checksums:
            for b in range(len(self.table)):
                at, size = int(self.table["offset"][b]) - len(self.head), int(self.table["stored_size"][b])
                if 0 <= at <= at + size <= len(self.data):
                    self.table["checksum"][b] = xxh(self.data[at:at + size])
        index = self.table.tobytes() + self.cols.tobytes()
        t = self.trailer
        derived = {"index_offset": len(self.head) + len(self.data), "index_size": len(index),
                   "n_blocks": len(self.table), "index_checksum": xxh(index), "header_checksum": xxh(self.head)}
        for k, v in derived.items():
            if k not in keep_trailer:
                t[k] = v
        raw = bytes(self.head) + bytes(self.data) + index + t.tobytes()
        Path(path).write_bytes(raw)
        return raw


def refresh_manifest(root: Path) -> None:
    """Make the manifest's shard sizes and checksums match the files (as a crafted manifest would)."""
    def edit(body):
        for s, name in enumerate(body["shards"]["name"]):
            path = Path(root) / name
            if path.is_file() and not path.is_symlink():
                raw = path.read_bytes()
                body["shards"]["bytes"][s] = len(raw)
                body["shards"]["checksum"][s] = f"{xxh(raw):016x}"
    edit_manifest(root, edit)


def craft_shard(root: Path, s: int, edit, **save) -> None:
    """Edit shard ``s`` of the dataset at ``root`` through a :class:`Shard`, then fix every checksum
    (block, index, header, file, manifest)."""
    body = json.loads((Path(root) / MANIFEST_NAME).read_bytes())
    path = Path(root) / body["shards"]["name"][s]
    shard = Shard.load(path)
    edit(shard)
    shard.save(path, **save)
    refresh_manifest(root)


def run_isolated(code: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter, so that a crash or a hang fails the test, not pytest."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONFAULTHANDLER": "1"})
