"""pack_sequences: windows read from a real dataset equal the pure-Python reference, with their outputs."""

from __future__ import annotations


import numpy as np
import pytest

import fastload
from fastload.errors import FormatError, SchemaError
from fastload.lm import pack_sequences
from fastload.lm.packing_index import document_lengths
from fastload.plan.packing import document_order

from .conftest import in_another_process, write_docs
from .reference import cut_reference, cut_reference_spans
from .test_packing_plan import render

SEP, PAD = 65535, 0


@pytest.fixture(scope="module", params=["none", "zstd"])
def ds(request, tmp_path_factory, docs):
    ds = write_docs(tmp_path_factory.mktemp(request.param) / "docs", docs, compression=request.param)
    assert ds.n_shards >= 2
    return ds


def test_cut_windows_are_the_reference_windows(ds, docs):
    packed = pack_sequences(ds, seq_len=96, separator=SEP, pad_id=PAD, tail="pad", seed=11)
    expect = np.array(cut_reference(docs, document_order(len(docs), 11), 96, SEP, PAD, "pad"))
    assert len(packed) == len(expect)
    rng = np.random.default_rng(0)
    for _ in range(5):  # shuffled batches across documents, shards and blocks
        idx = rng.permutation(len(packed))[:32]
        assert np.array_equal(packed.get_batch(idx)["input_ids"], expect[idx])
    assert np.array_equal(packed.get_batch(np.arange(len(packed)))["input_ids"], expect)
    assert np.array_equal(packed[-1]["input_ids"], expect[-1])


def test_best_fit_windows_are_those_the_index_describes(ds, docs):
    packed = pack_sequences(ds, seq_len=128, policy="best-fit", separator=SEP, seed=2)
    expect = np.array(render(packed.index, docs, SEP, PAD))
    assert np.array_equal(packed.get_batch(np.arange(len(packed))[::-1])["input_ids"], expect[::-1])


def test_position_ids_cu_seqlens_and_masks_follow_the_documents(ds, docs):
    outputs = ("input_ids", "position_ids", "cu_seqlens", "attention_mask")
    packed = pack_sequences(ds, seq_len=64, separator=SEP, tail="pad", outputs=outputs, dtype="int64")
    windows, spans = cut_reference_spans(docs, document_order(len(docs), 0), 64, SEP, PAD, "pad")
    idx = np.array([3, 0, len(packed) - 1, 7])
    batch = packed.get_batch(idx)
    assert batch["input_ids"].dtype == np.int64 and batch["position_ids"].dtype == np.int64
    assert np.array_equal(batch["input_ids"], np.array(windows)[idx])
    cu, offset = [0], 0
    for b, w in enumerate(idx):
        pos = np.concatenate([np.arange(s) for s in spans[w]])
        assert np.array_equal(batch["position_ids"][b], pos)
        seg = np.repeat(np.arange(len(spans[w])), spans[w])
        mask = (seg[:, None] == seg[None, :]) & np.tri(64, dtype=bool)
        assert np.array_equal(batch["attention_mask"][b], mask)
        for s in spans[w]:
            offset += s
            cu.append(offset)
    assert batch["cu_seqlens"].dtype == np.int32 and batch["cu_seqlens"].tolist() == cu
    assert batch["max_seqlen"] == max(np.diff(cu))
    one = packed[int(idx[0])]
    assert one["cu_seqlens"].tolist() == np.cumsum([0] + spans[idx[0]]).tolist()


def test_gather_writes_into_out_and_checks_it(ds):
    packed = pack_sequences(ds, seq_len=32, outputs=("input_ids", "position_ids"))
    out = {"input_ids": np.empty((4, 32), np.uint16), "position_ids": np.empty((4, 32), np.int64)}
    cols = packed.gather([0, 1, 2, 3], out=out)
    assert cols["input_ids"] is out["input_ids"]
    assert np.array_equal(out["input_ids"], packed.get_batch([0, 1, 2, 3])["input_ids"])
    with pytest.raises(ValueError, match="out"):
        packed.gather([0, 1], out={"input_ids": np.empty((2, 31), np.uint16)})
    with pytest.raises(IndexError):
        packed.gather([len(packed)])


def test_the_index_is_stored_once_and_reused(ds):
    a = pack_sequences(ds, seq_len=40, seed=9)
    stamp = (a.index_path / "bounds.npy").stat().st_mtime_ns
    b = pack_sequences(ds, seq_len=40, seed=9)
    assert b.index_path == a.index_path and (b.index_path / "bounds.npy").stat().st_mtime_ns == stamp
    assert isinstance(b.index.bounds.base, np.memmap)  # mapped, not read
    assert sorted(p.name for p in b.index_path.iterdir()) == ["bounds.npy", "meta.json"]  # the order is not stored
    assert pack_sequences(ds, seq_len=40, seed=10).index_path != a.index_path
    assert pack_sequences(ds, seq_len=41, seed=9).index_path != a.index_path
    assert not [p for p in a.index_path.parent.iterdir() if p.name.startswith(".tmp")]


def test_a_damaged_index_is_rebuilt(ds, tmp_path):
    a = pack_sequences(ds, seq_len=48, index_dir=tmp_path)
    expect = a.get_batch(np.arange(len(a)))["input_ids"]
    path = a.index_path / "bounds.npy"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="damaged"):
        b = pack_sequences(ds, seq_len=48, index_dir=tmp_path)
    assert np.array_equal(b.get_batch(np.arange(len(b)))["input_ids"], expect)


def test_an_index_that_does_not_match_the_documents_never_reads_past_them(ds):
    packed = pack_sequences(ds, seq_len=48)
    # every document 10 tokens longer than it is: the stream positions no longer match the data
    longer = packed.index.bounds + 10 * np.arange(len(packed.index.bounds), dtype=packed.index.bounds.dtype)
    object.__setattr__(packed, "index", type(packed.index)(seq_len=48, stride=48, separator=False, tail="drop",
                                                           order=packed.index.order, bounds=longer))
    with pytest.raises(FormatError, match="does not match"):
        packed.get_batch([0])


def test_an_interrupted_build_leaves_no_index(ds, tmp_path, monkeypatch):
    from fastload.lm import index_store

    def failing_write(path, parts):  # the array reaches the disk, the disk fills up after it
        original(path, parts)
        raise OSError("disk full")

    original = index_store.write_new_file
    monkeypatch.setattr(index_store, "write_new_file", failing_write)
    with pytest.raises(OSError, match="disk full"):
        pack_sequences(ds, seq_len=20, index_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_dataset_we_cannot_write_to_gets_its_index_in_the_cache(tmp_path, docs, monkeypatch):
    ds = write_docs(tmp_path / "ro", docs[:50])
    monkeypatch.setenv("FASTLOAD_CACHE_DIR", str(tmp_path / "cache"))
    # tests run as root, who may write anywhere: the permission check itself answers "read-only"
    monkeypatch.setattr("fastload.lm.index_store.os.access", lambda path, mode: False)
    packed = pack_sequences(ds, seq_len=16)
    assert packed.index_path.parent == tmp_path / "cache" / "packing"
    assert not (tmp_path / "ro" / ".fastload-packing").exists()


def test_bad_settings_are_clear_errors(ds, tmp_path):
    with pytest.raises(SchemaError, match="no field"):
        pack_sequences(ds, field="text", seq_len=8)
    with pytest.raises(ValueError, match="policy"):
        pack_sequences(ds, seq_len=8, policy="greedy")
    with pytest.raises(ValueError, match="separator"):
        pack_sequences(ds, seq_len=8, separator=70000)  # does not fit uint16
    with pytest.raises(ValueError, match="outputs"):
        pack_sequences(ds, seq_len=8, outputs=("position_ids",))
    fixed = tmp_path / "fixed"
    with fastload.Writer(fixed, schema="tokens:uint16[4]") as w:
        w.write({"tokens": np.zeros(4, np.uint16)})
    with pytest.raises(SchemaError, match="variable-length integer"):
        pack_sequences(fastload.open(fixed), seq_len=8)


def test_a_worker_process_reopens_it_from_its_spec(ds):
    packed = pack_sequences(ds, seq_len=56, separator=SEP, outputs=("input_ids", "position_ids"))
    n, (tokens, pos) = in_another_process(packed, ["input_ids", "position_ids"])
    batch = packed.get_batch(np.arange(len(packed)))
    assert n == len(packed)
    assert np.array_equal(tokens, batch["input_ids"]) and np.array_equal(pos, batch["position_ids"])


def test_torch_dataloader_reads_it_as_a_map_style_dataset(ds):
    torch = pytest.importorskip("torch")
    packed = pack_sequences(ds, seq_len=32, outputs=("input_ids", "position_ids"), dtype="int64")
    loader = torch.utils.data.DataLoader(packed, batch_size=8, shuffle=False)
    expect = packed.get_batch(np.arange(16))
    batches = [b for _, b in zip(range(2), loader)]
    for name in ("input_ids", "position_ids"):
        assert np.array_equal(torch.cat([b[name] for b in batches]).numpy(), expect[name])


@pytest.mark.parametrize("sizes", [False, True], ids=["tables-read", "sizes-file"])
def test_a_corrupt_offset_table_is_a_format_error_naming_the_shard_and_block(tmp_path, docs, sizes):
    """Without a record sizes file the build reads the damaged table and names it; with one (the
    damage came after it was written) the build plans from it, and the first read of the damaged
    block names it (its checksum): no window is silently cut wrong either way."""
    ds = write_docs(tmp_path / "docs", docs, sizes=sizes)
    reader = ds.shard(1)
    at = int(reader.block_offset[2] + reader.col_offsets64[2, 0]) + 4 * 3  # block 2's 4th offset
    path = tmp_path / "docs" / ds.manifest.shard_names[1]
    raw = bytearray(path.read_bytes())
    raw[at:at + 4] = (0xFFFFFF).to_bytes(4, "little")  # far past the block
    path.write_bytes(bytes(raw))
    with pytest.raises(FormatError, match=rf"{ds.manifest.shard_names[1]}:? block 2"):
        packed = pack_sequences(fastload.open(tmp_path / "docs"), seq_len=32, index_dir=tmp_path / "index")
        assert sizes  # built from the sizes file: the damage shows when the block is read
        packed.get_batch(np.arange(len(packed)))


@pytest.mark.parametrize("policy", ["cut", "best-fit"])
@pytest.mark.parametrize("change", [-3, 2], ids=["shorter", "longer"])
def test_a_sizes_file_that_miscounts_a_document_is_named_when_its_end_is_read(tmp_path, docs, policy, change):
    """A record sizes file whose checksums hold but whose count of one document is wrong (written
    by a faulty tool): the index is built from it, and the window that ends that document raises
    instead of cutting it short or reading past it."""
    from fastload.format.codec import checksum
    from fastload.format.record_sizes import SIZES_HEADER, sizes_name

    write_docs(tmp_path / "docs", docs)
    k = next(i for i, d in enumerate(docs) if len(d) > 5)
    path = tmp_path / "docs" / sizes_name(0)
    raw = bytearray(path.read_bytes())
    counts = np.frombuffer(raw, "<u4", offset=SIZES_HEADER.itemsize).copy()
    counts[k] = int(counts[k]) + change
    header = np.frombuffer(bytes(raw[:SIZES_HEADER.itemsize]), SIZES_HEADER).copy()
    header["counts_checksum"] = checksum(counts.tobytes())
    path.write_bytes(header.tobytes() + counts.tobytes())
    packed = pack_sequences(tmp_path / "docs", seq_len=32, policy=policy, separator=SEP, index_dir=tmp_path / "ix")
    with pytest.raises(FormatError, match=rf"of record {k}( as its end)?, which holds {len(docs[k])}\b"):
        packed.get_batch(np.arange(len(packed)))


def test_document_lengths_are_the_documents_lengths(ds, docs, tmp_path):
    """From the record sizes file, and from the offset tables read in place (raw blocks) or
    copied out (zstd) without one: the written lengths."""
    tables = write_docs(tmp_path / "tables", docs, compression=ds.manifest.settings["compression"], sizes=False)
    for each in (ds, tables):
        lengths = document_lengths(each, "tokens")
        assert lengths.dtype == np.uint32 and lengths.tolist() == [len(d) for d in docs]


def test_a_record_with_a_partial_token_is_a_schema_error_naming_it(tmp_path, docs):
    ds = write_docs(tmp_path / "docs", docs, sizes=False)  # the tables are read (with sizes: as above)
    reader = ds.shard(1)
    table = int(reader.block_offset[2] + reader.col_offsets64[2, 0])
    path = tmp_path / "docs" / ds.manifest.shard_names[1]
    raw = bytearray(path.read_bytes())
    offsets = np.frombuffer(bytes(raw[table:table + 4 * 3]), "<u4")
    k = 1 if offsets[1] < offsets[2] else 2  # an offset that can move by a byte and still rise
    raw[table + 4 * k:table + 4 * k + 4] = int(offsets[k] + 1).to_bytes(4, "little")
    path.write_bytes(bytes(raw))
    record = int(reader.first_record[2]) + k - 1  # the shard's own record number
    with pytest.raises(SchemaError, match=rf"{ds.manifest.shard_names[1]} block 2 record {record}\b.*partial uint16"):
        pack_sequences(fastload.open(tmp_path / "docs"), seq_len=32, index_dir=tmp_path / "index")


def test_an_index_of_another_format_version_is_rebuilt_not_read(ds, tmp_path):
    a = pack_sequences(ds, seq_len=24, index_dir=tmp_path)
    expect = a.get_batch(np.arange(len(a)))["input_ids"]
    meta = a.index_path / "meta.json"
    meta.write_text(meta.read_text().replace("fastload-packing/3", "fastload-packing/2"))
    with pytest.warns(UserWarning, match="another dataset or settings"):
        b = pack_sequences(ds, seq_len=24, index_dir=tmp_path)
    assert np.array_equal(b.get_batch(np.arange(len(b)))["input_ids"], expect)


def test_offset_tables_read_again_after_a_short_read_are_the_files_bytes(tmp_path):
    """_read_tables (the fallback after a table not read whole) against Python's own reads."""
    from fastload.lm.packing_index import _read_tables

    data = np.random.default_rng(5).integers(0, 256, 10_000, dtype=np.uint8).tobytes()
    (tmp_path / "shard").write_bytes(data)
    where = np.array([4000, 8, 9996, 8], dtype=np.int64)
    at = np.array([0, 400, 400, 404, 420])  # an empty range too
    words = _read_tables(str(tmp_path / "shard"), where, at, "shard")
    expect = b"".join(data[w:w + at[b + 1] - at[b]] for b, w in enumerate(where.tolist()))
    assert words.tobytes() == expect
    with pytest.raises(FormatError, match="shard x: ended while its offset tables were read"):
        _read_tables(str(tmp_path / "shard"), np.array([8, 9990], dtype=np.int64), np.array([0, 8, 24]), "x")


def test_tables_read_from_the_file_count_as_tables_in_memory(tmp_path):
    """block_lengths reading each table from a file (one pread each) against it over the same
    tables in memory, good and bad, and status 3 for a table past the file's end."""
    import os

    from fastload._kernels.packing_build import block_lengths

    records = np.array([3, 0, 2, 2])
    tables = [[0, 4, 4, 10], [0], [0, 2, 8], [0, 6, 3]]  # the last decreases
    payload = np.array([10, 0, 8, 6])
    words = np.array([w for t in tables for w in t], dtype=np.uint32)
    table_at = np.concatenate([[0], np.cumsum(records + 1)[:-1]])
    (tmp_path / "shard").write_bytes(b"\xff" * 12 + words.astype("<u4").tobytes())
    fd = os.open(tmp_path / "shard", os.O_RDONLY)
    try:
        for blocks in (slice(0, 3), slice(0, 4)):
            expect, got = np.zeros(7, np.uint32), np.zeros(7, np.uint32)
            want = block_lengths(words, table_at[blocks], records[blocks], payload[blocks], 2, expect)
            found = block_lengths(np.empty(4, np.uint32), 12 + 4 * table_at[blocks], records[blocks], payload[blocks], 2,
                                  got, np.full(len(records[blocks]), fd, np.int32))
            assert found == want and got.tolist() == expect.tolist()
        assert want[:2] == (1, 3) and found[:2] == (1, 3)  # the decreasing block named
        assert block_lengths(np.empty(6, np.uint32), np.array([12 + 4 * 8]), np.array([5]), np.array([99]), 2, got,
                             np.array([fd], np.int32))[:2] == (3, 0)
    finally:
        os.close(fd)


@pytest.mark.parametrize("itemsize", [1, 2, 4])
def test_block_lengths_match_numpys_differences_and_name_the_first_fault(itemsize):
    """Random tables, good and with one fault each (a first offset not 0, a decrease, an offset past
    the payload, a partial token), against np.diff and a vectorised search for the first bad record."""
    from fastload._kernels.packing_build import block_lengths

    rng = np.random.default_rng(itemsize)
    for trial in range(60):
        records = rng.integers(0, 40, 5)
        tables = [np.concatenate([[0], np.cumsum(rng.integers(0, 50, n) * itemsize)]) for n in records]
        payload = np.array([t[-1] + rng.integers(0, 3) * itemsize for t in tables])
        b = int(rng.integers(0, 5))
        fault = trial % 5  # 0: none
        if fault and records[b]:
            t, i = tables[b], int(rng.integers(0 if fault == 1 else 1, records[b] + 1))
            t[i] = (t[i] + 1 if fault == 1 else t[i - 1] - 1 if fault == 2 else payload[b] + itemsize
                    if fault == 3 else t[i] + 1 if itemsize > 1 else t[i])
        words = np.concatenate(tables).astype(np.uint32)
        table_at = np.concatenate([[0], np.cumsum(records + 1)[:-1]])
        out = np.zeros(int(records.sum()), np.uint32)
        status, where, total = block_lengths(words, table_at, records, payload, itemsize, out)
        expect, r = (0, -1), 0
        for k, t in enumerate(tables):
            t = t.astype(np.int64)
            d = np.diff(t)
            bad_range = (d < 0) | (t[1:] > payload[k])
            bad = bad_range | (d % itemsize != 0)
            if t[0] != 0 or bad.any():
                first = int(np.argmax(bad))
                expect = (1, k) if t[0] != 0 or bad_range[first] else (2, r + first)
                break
            assert out[r:r + len(d)].tolist() == (d // itemsize).tolist()
            r += len(d)
        assert (status, where) == expect
        if status == 0:
            assert total == sum(int(t[-1]) for t in tables) // itemsize


def test_the_build_hashes_no_block_of_the_dataset(tmp_path, docs):
    """The lengths come from the offset tables: a raw local dataset is scanned as opened with none
    of its blocks verified, and a block whose tokens are damaged is found when a window reads it,
    not by the build."""
    ds = write_docs(tmp_path / "docs", docs)
    reader = ds.shard(1)
    start = int(reader.block_offset[1] + reader.col_offsets64[1, 0]) + 4 * (int(reader.block_records[1]) + 1)
    path = tmp_path / "docs" / ds.manifest.shard_names[1]
    raw = bytearray(path.read_bytes())
    raw[start] ^= 0xFF  # the block's first token byte: its checksum no longer matches
    path.write_bytes(bytes(raw))
    ds = fastload.open(tmp_path / "docs")
    packed = pack_sequences(ds, seq_len=32, seed=None, index_dir=tmp_path / "index")
    assert not any(ds.shard(s).verified_flags.any() for s in range(ds.n_shards))
    with pytest.raises(FormatError, match=rf"{ds.manifest.shard_names[1]}: block 1 .*checksum mismatch"):
        packed.get_batch(np.arange(len(packed)))


def test_a_build_in_threads_is_the_build_in_one(ds, docs, tmp_path, monkeypatch):
    """Shards scanned and grid rows laid out in threads (as for a dataset of many millions of
    documents) give the reference windows, and the jobs do run in several threads."""
    import os
    import threading

    from fastload.lm import packing_index

    monkeypatch.setattr(packing_index, "DOCUMENTS_PER_THREAD", 1)
    if len(os.sched_getaffinity(0)) > 1:
        barrier = threading.Barrier(2, timeout=10)  # passes only when two jobs run at once
        assert len(set(packing_index.in_threads(lambda: (barrier.wait(), threading.get_ident())[1], [()] * 2, 2))) == 2
    packed = pack_sequences(ds, seq_len=96, separator=SEP, seed=11, index_dir=tmp_path)
    expect = np.array(cut_reference(docs, document_order(len(docs), 11), 96, SEP, PAD, "drop"))
    assert np.array_equal(packed.get_batch(np.arange(len(packed)))["input_ids"], expect)
