"""ShardWriter.add_copy: blocks copied from a pack worker's spill file make the same shard, byte
for byte and checksum, as blocks written from memory, with or without copy_file_range."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest

from fastload import Schema
from fastload.format.block import BlockBuilder, SpilledBlock
from fastload.format.columns import convert_columns
from fastload.format.shard_reader import ShardReader
from fastload.format.shard_writer import ShardWriter, SpillFile
from fastload.format.spec import CODEC_NAMES

SCHEMA = Schema.parse("id:int64,text:str")
SETTINGS = {"block_size": 500, "compression": "zstd", "level": 3}


def _blocks():
    n = 400
    columns = {"id": np.arange(n, dtype=np.int64), "text": [f"row {i} " * (i % 7) for i in range(n)]}
    conv, _ = convert_columns(SCHEMA, columns, n)
    builder = BlockBuilder(SCHEMA, SETTINGS["block_size"], CODEC_NAMES["zstd"], 3)
    return builder.add(conv, n) + builder.flush()


def _refuse(*args, **kwargs):
    raise OSError(errno.EXDEV, "Invalid cross-device link")


@pytest.mark.parametrize("copy", ["copy_file_range", "refused", "absent"])
def test_copied_blocks_make_the_same_shard(tmp_path, monkeypatch, copy):
    if copy == "refused":
        monkeypatch.setattr(os, "copy_file_range", _refuse, raising=False)
    elif copy == "absent":
        monkeypatch.delattr(os, "copy_file_range", raising=False)
    blocks = _blocks()
    assert len(blocks) > 3 and len({b.codec for b in blocks}) >= 1

    direct = ShardWriter(tmp_path / "direct.fls", SCHEMA, SETTINGS)
    for b in blocks:
        direct.add(b)
    want = direct.close()

    spill_path = tmp_path / ".spill.tmp-1-abcd"
    spilled, pos = [], 1  # one leading byte: block offsets in the spill are not aligned
    with open(spill_path, "wb") as f:
        f.write(b"\xff")
        for b in blocks:
            data = bytes(memoryview(b.stored).cast("B"))
            f.write(data)
            spilled.append(SpilledBlock(str(spill_path), pos, len(data), b.raw_size, b.n_records, b.codec,
                                        b.checksum, b.col_offsets))
            pos += len(data)
    copied = ShardWriter(tmp_path / "copied.fls", SCHEMA, SETTINGS)
    with SpillFile(spill_path) as spill:
        for b in spilled:
            copied.add_copy(spill, b)
    got = copied.close()

    assert not spill_path.exists()  # closing the spill file deletes it
    assert (tmp_path / "copied.fls").read_bytes() == (tmp_path / "direct.fls").read_bytes()
    assert (got.n_records, got.n_bytes, got.n_blocks, got.checksum) == \
        (want.n_records, want.n_bytes, want.n_blocks, want.checksum)
    ShardReader.open(tmp_path / "copied.fls").verify_all()


def test_truncated_spill_file_is_an_error(tmp_path):
    b = _blocks()[0]
    spill_path = tmp_path / ".spill.tmp-1-abcd"
    spill_path.write_bytes(bytes(memoryview(b.stored).cast("B"))[:-1])
    w = ShardWriter(tmp_path / "x.fls", SCHEMA, SETTINGS)
    with SpillFile(spill_path) as spill, pytest.raises(OSError, match="ends before its block"):
        w.add_copy(spill, SpilledBlock(str(spill_path), 0, b.stored_size, b.raw_size, b.n_records, b.codec,
                                       b.checksum, b.col_offsets))
    w.abort()
