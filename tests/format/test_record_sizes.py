"""Record sizes files: written with a dataset for its variable-length array fields, counts equal to
pyarrow's list lengths, bound to their manifest, refused (None) when missing, damaged or stale,
and never left half-written."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import fastload
from fastload import Manifest
from fastload.format import record_sizes
from fastload.format.record_sizes import SIZES_HEADER, read_record_sizes, sizes_name
from fastload.format.spec import MANIFEST_NAME, SIZES_SUFFIX


def table(n: int = 700, seed: int = 0) -> pa.Table:
    """Token lists (some empty, some null), a float array field, text and a fixed field."""
    rng = np.random.default_rng(seed)
    tokens = [None if i % 97 == 5 else rng.integers(0, 50000, int(rng.integers(0, 90))).tolist() for i in range(n)]
    return pa.table({
        "tokens": pa.array(tokens, pa.list_(pa.uint16())),
        "text": pa.array([f"row {i}" * (i % 5) for i in range(n)]),
        "vec": pa.array([rng.random(int(rng.integers(0, 6))).tolist() for _ in range(n)], pa.list_(pa.float32())),
        "id": pa.array(np.arange(n)),
    })


def write(root, t: pa.Table, compression: str = "none"):
    with fastload.Writer(root, schema="tokens:uint16[-1],text:str,vec:float32[-1],id:int64", block_size="2KB",
                         shard_size="8KB", compression=compression) as w:
        w.write_batch(t)
    return fastload.open(root)


def lengths(column: pa.ChunkedArray) -> list[int]:
    """pyarrow's count of each list's values (a null list holds none)."""
    return pc.fill_null(pc.list_value_length(column), 0).to_pylist()


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_the_writer_writes_each_array_fields_counts(tmp_path, compression):
    t = table()
    ds = write(tmp_path / "ds", t, compression)
    assert ds.n_shards >= 3
    assert sorted(p.name for p in (tmp_path / "ds").glob(f"*{SIZES_SUFFIX}")) == [sizes_name(0), sizes_name(2)]
    for field in ("tokens", "vec"):
        counts = read_record_sizes(ds, field)
        assert counts.dtype == np.uint32 and counts.tolist() == lengths(t.column(field))
    assert read_record_sizes(ds, "text") is None and read_record_sizes(ds, "id") is None  # not array fields


def test_pack_writes_them_too(tmp_path):
    import pyarrow.parquet as pq

    t = table(900, seed=3)
    pq.write_table(t.select(["tokens", "id"]), tmp_path / "in.parquet", row_group_size=200)
    fastload.pack(tmp_path / "in.parquet", tmp_path / "ds", shard_size="8KB", block_size="2KB", progress=False)
    assert read_record_sizes(fastload.open(tmp_path / "ds"), "tokens").tolist() == lengths(t.column("tokens"))


def damage(path, at: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[at] ^= 0x10
    path.write_bytes(bytes(raw))


def test_a_missing_damaged_truncated_or_stale_file_is_not_used(tmp_path):
    t = table()
    ds = write(tmp_path / "ds", t)
    path = tmp_path / "ds" / sizes_name(0)
    good = path.read_bytes()
    damage(path, SIZES_HEADER.itemsize + 41)  # a count
    assert read_record_sizes(ds, "tokens") is None
    path.write_bytes(good[:-4])
    assert read_record_sizes(ds, "tokens") is None
    path.write_bytes(good)
    m = Manifest.loads((tmp_path / "ds" / MANIFEST_NAME).read_bytes())
    m.metadata["edited"] = True  # another manifest: the file was written for the one before
    m.write(tmp_path / "ds")
    assert read_record_sizes(fastload.open(tmp_path / "ds"), "tokens") is None
    path.unlink()
    assert read_record_sizes(ds, "tokens") is None
    os.symlink(tmp_path / "elsewhere", path)  # never followed
    (tmp_path / "elsewhere").write_bytes(good)
    assert read_record_sizes(ds, "tokens") is None


def test_a_failed_write_leaves_no_sizes_file_and_no_manifest(tmp_path, monkeypatch):
    calls = []
    real = record_sizes.shard_counts

    def failing(reader, column):
        calls.append(reader.name)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(reader, column)

    monkeypatch.setattr(record_sizes, "shard_counts", failing)
    with pytest.raises(OSError, match="No space left"):
        write(tmp_path / "ds", table())
    names = os.listdir(tmp_path / "ds")
    assert MANIFEST_NAME not in names and not [n for n in names if SIZES_SUFFIX in n]


def test_a_packing_build_reads_the_file_not_the_tables(tmp_path, monkeypatch):
    from fastload.lm import packing_index

    t = table()
    ds = write(tmp_path / "ds", t)

    def no_tables(*args):
        raise AssertionError("the offset tables were read")

    monkeypatch.setattr(packing_index, "_file_lengths", no_tables)
    assert packing_index.document_lengths(ds, "tokens").tolist() == lengths(t.column("tokens"))
    damage(tmp_path / "ds" / sizes_name(0), SIZES_HEADER.itemsize + 7)
    with pytest.raises(AssertionError, match="tables were read"):  # a damaged file: the tables instead
        packing_index.document_lengths(fastload.open(tmp_path / "ds"), "tokens")


def test_a_manifest_rewritten_with_other_whitespace_keeps_its_sizes(tmp_path):
    """The binding is the manifest's checksum (its canonical form), not the file's bytes."""
    import json

    t = table()
    write(tmp_path / "ds", t)
    path = tmp_path / "ds" / MANIFEST_NAME
    path.write_text(json.dumps(json.loads(path.read_text()), indent=4))
    assert read_record_sizes(fastload.open(tmp_path / "ds"), "tokens").tolist() == lengths(t.column("tokens"))


def test_decompress_prefix_is_the_blocks_first_bytes():
    import zstandard

    from fastload.format.codec import decompress_prefix
    from fastload.format.spec import CODEC_NONE, CODEC_ZSTD

    raw = np.random.default_rng(1).integers(0, 40, 600_000, dtype=np.uint8).tobytes()  # > 4 zstd blocks
    stored = zstandard.ZstdCompressor(level=3).compress(raw)
    for n in (0, 1, 4097, 131_072, 300_001, len(raw), len(raw) + 10):
        assert bytes(decompress_prefix(stored, CODEC_ZSTD, len(raw), n)) == raw[:n]
        assert bytes(decompress_prefix(raw, CODEC_NONE, len(raw), n)) == raw[:n]


def test_verify_finds_a_sizes_file_written_wrong(tmp_path):
    """A file whose checksums hold but whose counts disagree with the blocks (a faulty tool wrote
    it): ``verify_all`` (``fastload verify``) names it and the first record it miscounts."""
    from fastload.format.codec import checksum

    t = table()
    ds = write(tmp_path / "ds", t)
    ds.verify_all()  # as written: sound
    path = tmp_path / "ds" / sizes_name(0)
    raw = bytearray(path.read_bytes())
    counts = np.frombuffer(raw, "<u4", offset=SIZES_HEADER.itemsize).copy()
    counts[300] += 1
    raw[SIZES_HEADER.itemsize:] = counts.tobytes()
    header = np.frombuffer(bytes(raw[:SIZES_HEADER.itemsize]), SIZES_HEADER).copy()
    header["counts_checksum"] = checksum(counts.tobytes())
    raw[:SIZES_HEADER.itemsize] = header.tobytes()
    path.write_bytes(bytes(raw))
    ds = fastload.open(tmp_path / "ds")
    assert read_record_sizes(ds, "tokens")[300] == counts[300]  # trusted by a reader: its checksums hold
    with pytest.raises(fastload.FormatError, match=rf"{sizes_name(0)}: .*record \d+ holds {counts[300] - 1} values "
                                                   rf"of 'tokens', the file says {counts[300]}"):
        ds.verify_all()


def test_a_shard_that_is_not_the_manifests_gets_no_counts(tmp_path):
    """Counts bound to a manifest are its shards': a shard replaced before the commit (a late write
    of a distributed task) is refused, not counted."""
    from fastload.format.record_sizes import write_record_sizes

    ds = write(tmp_path / "ds", table())
    other = write(tmp_path / "other", table(900, seed=5))
    name = ds.manifest.shard_names[1]
    (tmp_path / "ds" / name).write_bytes((tmp_path / "other" / other.manifest.shard_names[1]).read_bytes())
    with pytest.raises(fastload.FormatError, match=rf"{name} is not the shard the manifest describes"):
        write_record_sizes(tmp_path / "ds", ds.manifest)


def test_only_its_own_names_are_taken_for_sizes_files():
    from fastload.format.writer import is_fastload_file

    assert is_fastload_file("field-0.fls-sizes") and is_fastload_file("field-12.fls-sizes")
    assert not any(is_fastload_file(n) for n in ("notes.fls-sizes", "field-.fls-sizes", "field-1x.fls-sizes",
                                                 "field-\u00b2.fls-sizes"))
