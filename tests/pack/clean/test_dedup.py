"""Exact dedup: the records kept are pandas ``drop_duplicates(keep="first")``'s, whatever the
number of workers and whether the seen set fits in memory or spills to disk."""

from __future__ import annotations

import json
import multiprocessing
import time
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastload
from fastload.pack.sources.arrow_files import ArrowFileSource
from fastload.pack.sources.base import Chunk, Source

pytestmark = pytest.mark.timeout(120)


def _records(root: Path) -> list[dict]:
    ds = fastload.Dataset(root)
    return [ds[i] for i in range(len(ds))]


rows = st.lists(st.fixed_dictionaries({
    "a": st.integers(-2, 2),
    "b": st.sampled_from(["", "x", "y", "xy", "é", "e\u0301"]),
    "c": st.sampled_from([0.0, -0.0, 1.5, -1.5, 1e300]),
    "d": st.booleans(),
}), min_size=1, max_size=60)
subsets = st.one_of(st.none(), st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=4, unique=True))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=rows, subset=subsets, parts=st.integers(1, 4))
def test_dedup_keeps_what_pandas_drop_duplicates_keeps(tmp_path_factory, records, subset, parts):
    df = pd.DataFrame(records)
    expected = df.drop_duplicates(subset=subset, keep="first")
    out = tmp_path_factory.mktemp("ds")
    # several record batches: dedup must also hold across chunks
    table = pa.Table.from_pandas(df, preserve_index=False)
    step = -(-len(df) // parts)
    source = pa.concat_tables([table.slice(k, step) for k in range(0, len(df), step)])
    report = fastload.pack(source, out / "x", dedup=subset if subset else True, progress=False)
    got = pd.DataFrame(_records(out / "x"))
    assert report.records == len(expected)
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected.reset_index(drop=True), check_dtype=False)
    assert report.cleaning.rules["dedup"].records == len(df) - len(expected)


def _key(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).lower().split())


def test_normalized_dedup_is_drop_duplicates_on_the_normalized_text(tmp_path):
    texts = ["Hello  world", "hello world", " HELLO\tWORLD ", "caf\u00e9", "cafe\u0301", "CAF\u00c9 ", "other",
             "hello\u00a0world", "Other", "", "  ", "e\u0301t\u00e9"] * 3
    df = pd.DataFrame({"text": texts, "i": np.arange(len(texts))})
    expected = df.assign(key=df["text"].map(_key)).drop_duplicates("key")["i"].tolist()
    fastload.pack(df, tmp_path / "ds", dedup="text", normalize="nfc,case,whitespace", progress=False)
    assert [r["i"] for r in _records(tmp_path / "ds")] == expected
    # the stored text is the first occurrence's, unchanged
    assert [r["text"] for r in _records(tmp_path / "ds")] == [texts[i] for i in expected]


def _segments_file(tmp_path: Path, n: int = 6000, groups: int = 12) -> Path:
    rng = np.random.default_rng(7)
    ids = rng.integers(0, n // 3, n)  # about two thirds are repeats, spread over every segment
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": ids, "text": [f"text {i} " * (1 + i % 5) for i in ids],
                             "score": (ids % 10) / 10.0}), path, row_group_size=n // groups)
    return path


def _contents(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())}


@pytest.mark.parametrize("options", [
    {"dedup": "text"},
    {"dedup": True, "filter": "score >= 0.2", "dedup_memory": "16KiB"},
], ids=["dedup", "dedup-filter-spilled"])
def test_output_is_byte_identical_for_one_and_more_workers(tmp_path, options):
    path = _segments_file(tmp_path)
    outs = []
    for workers in (1, 2, 3):
        out = tmp_path / f"w{workers}"
        report = fastload.pack(ArrowFileSource(path, segment_size=1), out, workers=workers, shard_size="64KB",
                               block_size="8KB", progress=False, **options)
        assert report.dedup_table["spilled"] == ("dedup_memory" in options)
        outs.append(_contents(out))
        assert not [p for p in out.iterdir() if ".tmp-" in p.name]  # no rows, blocks or table files left
    assert outs[0] == outs[1] == outs[2]
    df = pq.read_table(path).to_pandas()
    if "filter" in options:
        df = df[df["score"] >= 0.2]
    subset = None if options["dedup"] is True else [options["dedup"]]
    expected = df.drop_duplicates(subset=subset)
    assert [r["id"] for r in _records(tmp_path / "w2")] == expected["id"].tolist()


class _FailingAt(ArrowFileSource):
    """Row-group segments; reading segment ``fail_at`` fails once per process run (a flag file)."""

    def __init__(self, path, flag: Path, fail_at: int):
        super().__init__(path, segment_size=1)
        self.flag, self.fail_at = str(flag), fail_at

    def read(self, segment):
        if segment.start >= self.fail_at and not Path(self.flag).exists():
            raise RuntimeError("the input disk went away")
        yield from super().read(segment)


@pytest.mark.parametrize("workers", [1, 2])
def test_an_interrupted_dedup_pack_resumes_to_the_same_bytes(tmp_path, workers):
    path = _segments_file(tmp_path, n=12000, groups=12)
    flag = tmp_path / "disk-is-back"
    options = {"shard_size": "64KB", "block_size": "8KB", "progress": False, "dedup": "text",
               "filter": "score > 0.1", "workers": workers}
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="disk went away"):
        fastload.pack(_FailingAt(path, flag, 8), out, **options)
    assert json.loads((out / ".fastload-pack.json").read_text())["next_segment"] > 0
    flag.write_text("")
    report = fastload.pack(_FailingAt(path, flag, 8), out, **options)
    clean = tmp_path / "clean"
    clean_report = fastload.pack(_FailingAt(path, flag, 8), clean, **options)
    assert report.resumed_shards > 0
    assert _contents(out) == _contents(clean)
    assert report.cleaning.to_json() == clean_report.cleaning.to_json()


class _DyingDedupSource(Source):
    mp_context = "fork"
    description = "dies in a worker"

    def segments(self):
        return list(range(4))

    def read(self, segment):
        if segment == 2 and multiprocessing.parent_process() is not None:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
        yield Chunk({"text": [f"row {i % 50}" for i in range(200)]}, f"seg{segment}", 0)


def test_a_dead_worker_of_a_dedup_pack_is_a_worker_error(tmp_path):
    start = time.monotonic()
    with pytest.raises(fastload.errors.WorkerError, match="worker process died"):
        fastload.pack(_DyingDedupSource(), tmp_path / "out", workers=2, dedup="text", progress=False)
    assert time.monotonic() - start < 60  # a hang guard, not a speed test (a loaded CI machine)
    assert not [p for p in (tmp_path / "out").iterdir() if ".tmp-" in p.name]
    assert not multiprocessing.active_children()
