"""The document lengths scan over each kind of shard (raw read from the files, zstd, a mix), in one
thread and in several, against the documents' own lengths; faults named by shard and block."""

from __future__ import annotations

import numpy as np
import pytest

import fastload
from fastload.errors import FormatError, SchemaError
from fastload.lm import packing_index
from fastload.lm.packing_index import document_lengths

from .conftest import write_docs


@pytest.fixture(params=[False, True], ids=["one-thread", "threads"])
def threads(request, monkeypatch):
    if request.param:  # a thread per document: as many stretches as the scan makes
        monkeypatch.setattr(packing_index, "DOCUMENTS_PER_THREAD", 1)
    return request.param


def mixed_docs(seed: int = 3) -> list[np.ndarray]:
    """Runs of random documents (their blocks stay raw under zstd) between runs of constant ones
    (compressed), so that a zstd dataset has both raw and compressed shards."""
    rng = np.random.default_rng(seed)
    docs = []
    for run in range(5):
        for _ in range(40):
            if run % 2 == 0:  # zstd cannot save 3% of a block of these
                docs.append(rng.integers(0, 65536, int(rng.integers(100, 400))))
            else:
                docs.append(np.full(int(rng.integers(0, 400)), 7))
    return [d.astype(np.uint16) for d in docs]


@pytest.mark.parametrize("sizes", [False, True], ids=["tables-read", "sizes-file"])
@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_lengths_of_raw_compressed_and_mixed_shards_are_the_documents(tmp_path, compression, threads, sizes):
    docs = mixed_docs()
    ds = write_docs(tmp_path / "docs", docs, compression=compression, sizes=sizes)
    raw = [ds.shard(s).all_raw for s in range(ds.n_shards)]
    if compression == "zstd":  # both kinds, and raw shards that are not one run: read in several calls
        assert any(raw) and not all(raw) and any(a and not b for a, b in zip(raw, raw[1:]))
    lengths = document_lengths(fastload.open(tmp_path / "docs"), "tokens")
    assert lengths.dtype == np.uint32 and lengths.tolist() == [len(d) for d in docs]


def damage_offset(root, ds, shard: int, block: int, k: int, value: int) -> None:
    """Set offset ``k`` of block ``block``'s table in shard ``shard`` to ``value``."""
    reader = ds.shard(shard)
    at = int(reader.block_offset[block] + reader.col_offsets64[block, 0]) + 4 * k
    path = root / ds.manifest.shard_names[shard]
    raw = bytearray(path.read_bytes())
    raw[at:at + 4] = int(value).to_bytes(4, "little")
    path.write_bytes(bytes(raw))


def test_the_first_corrupt_table_in_dataset_order_is_named(tmp_path, docs, threads):
    """Tables damaged in a later block of shard 1 and in shard 2: the scan (one call, or stretches
    in threads) names shard 1's block, however the stretches cut the shards."""
    ds = write_docs(tmp_path / "docs", docs, sizes=False)
    assert ds.n_shards >= 3 and ds.shard(1).n_blocks >= 4
    damage_offset(tmp_path / "docs", ds, 2, 0, 2, 0xFFFFFF)
    damage_offset(tmp_path / "docs", ds, 1, 3, 2, 0xFFFFFF)
    with pytest.raises(FormatError, match=rf"shard \S*{ds.manifest.shard_names[1]} block 3: field 'tokens'"):
        document_lengths(fastload.open(tmp_path / "docs"), "tokens")


def test_a_table_whose_first_offset_is_not_zero_is_refused(tmp_path, docs, threads):
    ds = write_docs(tmp_path / "docs", docs, sizes=False)
    last = ds.n_shards - 1
    damage_offset(tmp_path / "docs", ds, last, ds.shard(last).n_blocks - 1, 0, 2)
    with pytest.raises(FormatError, match=rf"{ds.manifest.shard_names[last]} block {ds.shard(last).n_blocks - 1}:"):
        document_lengths(fastload.open(tmp_path / "docs"), "tokens")


def test_a_partial_token_in_a_later_shard_names_its_record(tmp_path, docs, threads):
    ds = write_docs(tmp_path / "docs", docs, sizes=False)
    reader = ds.shard(2)
    table = int(reader.block_offset[1] + reader.col_offsets64[1, 0])
    offsets = np.frombuffer((tmp_path / "docs" / ds.manifest.shard_names[2]).read_bytes()[table:table + 12], "<u4")
    k = 1 if offsets[1] < offsets[2] else 2  # an offset that can move by a byte and still rise
    damage_offset(tmp_path / "docs", ds, 2, 1, k, offsets[k] + 1)
    record = int(reader.first_record[1]) + k - 1
    with pytest.raises(SchemaError, match=rf"{ds.manifest.shard_names[2]} block 1 record {record}\b.*partial uint16"):
        document_lengths(fastload.open(tmp_path / "docs"), "tokens")


def test_a_table_past_the_end_of_a_shrunk_file_names_the_shard(tmp_path, docs, threads):
    """A shard cut short after it was opened (its map still whole): the table read from the file
    comes back short, and the tables are read again to name the shard."""
    ds = write_docs(tmp_path / "docs", docs, sizes=False)
    ds = fastload.open(tmp_path / "docs")
    ds.shard(1)  # mapped while whole
    path = tmp_path / "docs" / ds.manifest.shard_names[1]
    with open(path, "r+b") as f:
        f.truncate(int(ds.shard(1).block_offset[2]))
    with pytest.raises(FormatError, match=rf"{ds.manifest.shard_names[1]}: ended while its offset tables were read"):
        document_lengths(ds, "tokens")


def test_a_job_that_fails_in_a_helper_thread_is_raised_in_the_caller(monkeypatch):
    """in_threads' helpers run jobs the caller never waits to start; an error in any job is raised,
    and the results of the others come back in the jobs' order."""
    import time

    monkeypatch.setattr(packing_index, "DOCUMENTS_PER_THREAD", 1)

    def job(k):
        time.sleep(0.01)  # long enough for a helper to take some of the jobs
        if k == 5:
            raise ValueError(f"job {k}")
        return k * k

    with pytest.raises(ValueError, match="job 5"):
        packing_index.in_threads(job, [(k,) for k in range(8)], 8)
    assert packing_index.in_threads(job, [(k,) for k in range(5)], 8) == [k * k for k in range(5)]
