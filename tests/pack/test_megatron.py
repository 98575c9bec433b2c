"""The Megatron/NeMo/fairseq source: files written by megatron-core's own builder, read back exactly."""

from __future__ import annotations

import struct
import warnings

import numpy as np
import pytest

import fastload
from fastload.errors import SourceError
from fastload.pack.sources.megatron import MegatronSource

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # megatron-core warns that Transformer Engine and Apex are absent
    indexed = pytest.importorskip("megatron.core.datasets.indexed_dataset")
torch = pytest.importorskip("torch")


def build(prefix, dtype, docs, multimodal=False):
    """docs: list of documents, each a list of sequences (arrays); written by megatron-core."""
    builder = indexed.IndexedDatasetBuilder(f"{prefix}.bin", dtype=dtype, multimodal=multimodal)
    for d, doc in enumerate(docs):
        for s, seq in enumerate(doc):
            builder.add_item(torch.from_numpy(np.asarray(seq)), mode=(d + s) % 3)
        builder.end_document()
    builder.finalize(f"{prefix}.idx")
    return indexed.IndexedDataset(str(prefix), multimodal=multimodal)


def random_docs(rng, n_docs, dtype, max_seqs=3):
    hi = 120 if np.dtype(dtype).kind == "i" and np.dtype(dtype).itemsize == 1 else 30000
    return [[rng.integers(0, hi, size=int(rng.integers(0, 40))).astype(dtype)
             for _ in range(int(rng.integers(1, max_seqs + 1)))] for _ in range(n_docs)]


@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.int64, np.uint8, np.int8, np.int16, np.float32])
def test_sequences_round_trip_against_megatrons_reader(tmp_path, dtype):
    rng = np.random.default_rng(0)
    ref = build(tmp_path / "corpus", dtype, random_docs(rng, 60, dtype))
    fastload.pack(str(tmp_path / "corpus.idx"), tmp_path / "out", progress=False)
    ds = fastload.open(tmp_path / "out")
    assert len(ds) == len(ref)
    assert ds.schema["tokens"].dtype == np.dtype(dtype).name
    batch = ds.get_batch(np.arange(len(ds)))
    doc_of = np.searchsorted(ref.document_indices, np.arange(len(ref)), side="right") - 1
    for i in range(len(ref)):
        assert np.array_equal(batch["tokens"][i], ref[i]), i
        assert batch["tokens"][i].dtype == np.dtype(dtype)
    assert batch["document"].tolist() == doc_of.tolist()
    assert ds.metadata["megatron"]["records"] == "sequence"


def test_documents_and_multimodal_modes(tmp_path):
    rng = np.random.default_rng(1)
    docs = random_docs(rng, 40, np.uint16, max_seqs=4)
    ref = build(tmp_path / "mm", np.uint16, docs, multimodal=True)
    fastload.pack(MegatronSource(tmp_path / "mm.bin", records="document"), tmp_path / "docs", progress=False)
    ds = fastload.open(tmp_path / "docs")
    assert len(ds) == len(docs)
    b = ds.get_batch(np.arange(len(ds)))
    for d in range(len(docs)):
        lo, hi = ref.document_indices[d], ref.document_indices[d + 1]
        seqs = [ref[i][0] for i in range(lo, hi)]
        assert np.array_equal(b["tokens"][d], np.concatenate(seqs))
        assert b["sequence_lengths"][d].tolist() == [len(s) for s in seqs]
        assert b["modes"][d].tolist() == ref.index.sequence_modes[lo:hi].tolist()
    fastload.pack(str(tmp_path / "mm.idx"), tmp_path / "seqs", progress=False)
    seq = fastload.open(tmp_path / "seqs")
    assert seq.get_batch(np.arange(len(seq)))["mode"].tolist() == ref.index.sequence_modes.tolist()  # (its sequence_modes property asserts on an array)


def test_several_pairs_number_documents_across_them_and_pack_deterministically(tmp_path):
    rng = np.random.default_rng(2)
    (tmp_path / "in").mkdir()
    a = build(tmp_path / "in" / "a", np.uint16, random_docs(rng, 30, np.uint16))
    b = build(tmp_path / "in" / "b", np.uint16, random_docs(rng, 20, np.uint16))
    for out, workers in (("one", 1), ("two", 2)):  # segments of ~256 bytes: several per pair
        fastload.pack(MegatronSource(tmp_path / "in", segment_size=256), tmp_path / out, workers=workers,
                      progress=False, block_size="2KB")
    m1, m2 = fastload.open(tmp_path / "one").manifest, fastload.open(tmp_path / "two").manifest
    assert m1.shard_checksums == m2.shard_checksums
    ds = fastload.open(tmp_path / "one")
    assert len(ds) == len(a) + len(b)
    docs = ds.get_batch(np.arange(len(ds)))["document"]
    assert docs[len(a)] == 30 and docs[-1] == 49
    assert np.array_equal(ds[len(a)]["tokens"], b[0])


def test_packed_megatron_tokens_feed_pack_sequences(tmp_path):
    rng = np.random.default_rng(3)
    docs = random_docs(rng, 50, np.int32, max_seqs=1)
    build(tmp_path / "c", np.int32, docs)
    fastload.pack(str(tmp_path / "c.idx"), tmp_path / "ds", progress=False)
    packed = fastload.pack_sequences(tmp_path / "ds", seq_len=32, separator=0, seed=None)
    stream = np.concatenate([np.append(d[0], 0) for d in docs])
    assert np.array_equal(packed.get_batch(np.arange(len(packed)))["input_ids"].ravel(),
                          stream[:len(packed) * 32])


def corrupt(path, offset, data):
    raw = bytearray(path.read_bytes())
    raw[offset:offset + len(data)] = data
    path.write_bytes(bytes(raw))


def test_damaged_pairs_are_source_errors_naming_the_file(tmp_path):
    rng = np.random.default_rng(4)
    build(tmp_path / "x", np.uint16, random_docs(rng, 10, np.uint16))
    idx = tmp_path / "x.idx"
    good = idx.read_bytes()
    cases = {
        "magic": (0, b"NOTMMID"),
        "version": (9, struct.pack("<Q", 2)),
        "dtype code": (17, b"\x63"),
        "holds": (18 + 8 + 8 + 4 * 5 + 8 * 3, struct.pack("<q", 10**9)),  # a pointer past the .bin
    }
    for what, (offset, data) in cases.items():
        idx.write_bytes(good)
        corrupt(idx, offset, data)
        with pytest.raises(SourceError, match="x.idx"):
            fastload.pack(str(idx), tmp_path / f"bad-{what.replace(' ', '-')}", progress=False)
    idx.write_bytes(good[:-5])
    with pytest.raises(SourceError, match="truncated"):
        fastload.pack(str(idx), tmp_path / "bad-short", progress=False)
    idx.write_bytes(good)
    (tmp_path / "x.bin").unlink()
    with pytest.raises(SourceError, match="x.bin is missing"):
        fastload.pack(str(idx), tmp_path / "bad-missing", progress=False)
