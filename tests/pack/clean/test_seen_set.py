"""The dedup building blocks: the seen set (in memory and spilled), the hash-partitioned form
of the same decisions, and the documented hash of a record (nulls apart from any value)."""

from __future__ import annotations

import numpy as np
import pytest

import fastload
from fastload.format.columns import VarColumn
from fastload.pack.clean.dedup import SeenHashes, first_in_partition, partition_of
from fastload.pack.clean.hashing import NULL_DIGEST, record_hashes

from .helpers import Nullable

pytestmark = pytest.mark.timeout(60)


def test_the_seen_set_spills_to_a_file_beyond_its_memory_limit(tmp_path):
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 3000, (2000, 2)).astype(np.uint64) for _ in range(8)]
    batches[0][5] = 0  # the zero hash (an empty slot's value) is a hash like any other
    batches[3][7] = 0
    seen = SeenHashes(memory_limit=16 * 1024, spill_dir=tmp_path)
    reference: set = set()
    for batch in batches:
        keep = seen.first(batch)
        expected = []
        for h in map(tuple, batch.tolist()):
            expected.append(h not in reference)
            reference.add(h)
        assert keep.tolist() == expected
    assert seen.spilled and seen.distinct == len(reference)
    assert seen.table_bytes >= 32 * len(reference)  # 16-byte slots, at most half full
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].name.startswith(".dedup-table") and ".tmp-" in files[0].name
    seen.close()
    assert not list(tmp_path.iterdir())


def test_without_a_spill_directory_the_limit_is_an_error():
    seen = SeenHashes(memory_limit=16 * 1024)
    with pytest.raises(MemoryError, match="spill directory"):
        seen.first(np.arange(4000, dtype=np.uint64).reshape(-1, 2) + 1)


def test_a_hash_partitioned_shuffle_keeps_the_same_records_as_the_ordered_set():
    """The distributed form: route (hash, position) by partition, keep each partition's smallest
    position per hash, in any arrival order."""
    rng = np.random.default_rng(1)
    segments = [rng.integers(0, 500, (rng.integers(0, 400), 2)).astype(np.uint64) for _ in range(9)]
    seen = SeenHashes(memory_limit=1 << 20)
    ordered = np.concatenate([seen.first(h) for h in segments])
    hashes = np.concatenate(segments)
    positions = np.concatenate([(np.int64(s) << 32) | np.arange(len(h)) for s, h in enumerate(segments)])
    keep = np.zeros(len(hashes), bool)
    part = partition_of(hashes, 7)
    assert set(np.unique(part)) <= set(range(7))
    for p in range(7):
        rows = np.flatnonzero(part == p)
        rows = rng.permutation(rows)  # a shuffle delivers rows in any order
        keep[rows] = first_in_partition(hashes[rows], positions[rows])
    assert np.array_equal(keep, ordered)


def test_a_null_hashes_unlike_an_empty_text_or_a_zero():
    schema = fastload.Schema.parse("t:str,x:int32")
    conv = Nullable({"t": VarColumn.from_payloads([b"", b"", b"a"]), "x": np.array([0, 0, 5], np.int32)},
                     {"t": np.array([True, False, True]), "x": np.array([True, False, True])})
    t = record_hashes(schema, conv, 3, ["t"])
    x = record_hashes(schema, conv, 3, ["x"])
    both = record_hashes(schema, conv, 3, ["t", "x"])
    for h in (t, x, both):
        assert len({tuple(r) for r in h.tolist()}) == 3
    assert (int(t[1, 0]) << 64 | int(t[1, 1])) == NULL_DIGEST


def test_hashes_are_the_documented_xxh3_128_of_canonical_bytes():
    import xxhash

    schema = fastload.Schema.parse("t:str,f:float64")
    conv = {"t": VarColumn.from_payloads([b"ab", b"ab"]), "f": np.array([-0.0, np.nan])}
    one = record_hashes(schema, conv, 2, ["t"])
    assert (int(one[0, 0]) << 64 | int(one[0, 1])) == xxhash.xxh3_128_intdigest(b"ab")
    two = record_hashes(schema, conv, 2, ["t", "f"])
    ref = xxhash.xxh3_128_intdigest(xxhash.xxh3_128_digest(b"ab") + xxhash.xxh3_128_digest(np.float64(0.0).tobytes()))
    assert (int(two[0, 0]) << 64 | int(two[0, 1])) == ref


def test_the_table_holds_32_to_64_bytes_per_distinct_record():
    """The documented bound: 16-byte slots, kept between 25% and 50% full as the set grows."""
    rng = np.random.default_rng(2)
    seen = SeenHashes(memory_limit=1 << 30)
    for _ in range(40):
        seen.first(rng.integers(1, 2**63, (rng.integers(1, 3000), 2), dtype=np.int64).astype(np.uint64))
        if seen.distinct >= 512:  # past the first table (1,024 slots)
            assert 32 <= seen.table_bytes / seen.distinct <= 64
    assert not seen.spilled


def test_a_batch_of_repeats_does_not_grow_the_table():
    """The table grows with the distinct hashes, not with the batch size."""
    seen = SeenHashes(memory_limit=1 << 30)
    same = np.tile(np.array([[5, 7]], np.uint64), (200_000, 1))
    keep = seen.first(same)
    assert keep[0] and not keep[1:].any()
    assert seen.distinct == 1 and seen.table_bytes == 16 * 1024
