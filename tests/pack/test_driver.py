"""The pack driver: deterministic output, atomic and resumable writes, output rules, report, workers."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import fastload
from fastload.errors import OutputExistsError, SourceError, WorkerError
from fastload.format.record_sizes import sized_fields, sizes_name
from fastload.format.shard_reader import ShardReader
from fastload.format.writer import PACK_JOURNAL, ShardSink
from fastload.pack.sources.arrow_files import ArrowFileSource
from fastload.pack.sources.base import Chunk, Source
from fastload.pack.sources.python_objects import ArrowTableSource

pytestmark = pytest.mark.timeout(60)

SMALL = {"shard_size": "64KB", "block_size": "8KB", "progress": False}


def _table(n: int, offset: int = 0) -> pa.Table:
    ids = np.arange(offset, offset + n, dtype=np.int64)
    return pa.table({
        "id": ids,
        "score": ids * 0.5,
        "text": [f"record {i} " * (1 + i % 4) for i in range(offset, offset + n)],
        "tokens": pa.ListArray.from_arrays(np.arange(0, 8 * n + 1, 8, dtype=np.int32),
                                           (ids[:, None] + np.arange(8)).reshape(-1)),
    })


@pytest.fixture
def parquet_file(tmp_path) -> Path:
    """6000 rows in 12 row groups."""
    path = tmp_path / "input" / "data.parquet"
    path.parent.mkdir()
    pq.write_table(_table(6000), path, row_group_size=500)
    return path


def _row_groups(path: Path) -> ArrowFileSource:
    return ArrowFileSource(path, segment_size=1)  # one segment per row group


def _contents(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())}


def _shard_names(root: Path) -> list[str]:
    return sorted(p.name for p in root.glob("shard-*.fls"))


def _temporaries(root: Path) -> list[str]:
    return [p.name for p in root.iterdir() if ".tmp-" in p.name]


def _stats(root: Path, names) -> dict[str, tuple[int, int]]:
    return {n: (os.stat(root / n).st_ino, os.stat(root / n).st_mtime_ns) for n in names}


# -- determinism ------------------------------------------------------------------------------
class SlowFirstSource(Source):
    """Segments whose reading gets faster towards the end, so workers finish them out of order."""

    mp_context = "fork"
    description = "slow-first test source"

    def segments(self):
        return list(range(6))

    def read(self, segment):
        if multiprocessing.parent_process() is not None:  # in a pack worker
            time.sleep(0.03 * (6 - segment))
        ids = np.arange(segment * 1500, segment * 1500 + 1500)
        yield Chunk({"id": ids, "text": [f"segment {segment} row {i} " * 2 for i in ids]}, f"seg{segment}", 0)


@pytest.mark.parametrize("make", [
    pytest.param(lambda path: _row_groups(path), id="parquet-row-groups"),
    pytest.param(lambda path: _split_table(), id="arrow-table"),
    pytest.param(lambda path: SlowFirstSource(), id="out-of-order-workers"),
])
def test_shards_are_byte_identical_whatever_the_workers(tmp_path, parquet_file, make):
    one = tmp_path / "w1"
    fastload.pack(make(parquet_file), one, workers=1, **SMALL)
    two = tmp_path / "w2"
    fastload.pack(make(parquet_file), two, workers=2, **SMALL)
    again = tmp_path / "w1-again"
    fastload.pack(make(parquet_file), again, workers=1, **SMALL)

    files = _contents(one)
    assert len(_shard_names(one)) >= 3
    sizes = {sizes_name(j) for j in sized_fields(fastload.open(one).schema)}  # the record sizes of array fields
    assert set(files) == set(_shard_names(one)) | {"manifest.json"} | sizes
    assert _contents(two) == files
    assert _contents(again) == files


def _split_table() -> ArrowTableSource:
    src = ArrowTableSource(_table(5000))
    src.segment_rows = 600
    return src


# -- atomic and resumable ---------------------------------------------------------------------
def test_killed_cli_pack_resumes_to_identical_bytes(tmp_path):
    src = tmp_path / "big.parquet"
    pq.write_table(_table(30_000), src, row_group_size=5_000)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "fastload._cli", "pack", str(src), str(out), "--shard-size", "48KB",
           "--block-size", "4KB", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    journal = out / PACK_JOURNAL
    deadline = time.monotonic() + 30
    while not journal.exists():  # written once the first shard is finished
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no shard was finished within 30 s"
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL

    # Nothing half-written under a final name: finished shards are whole, no manifest.
    assert not (out / "manifest.json").exists()
    names = sorted(p.name for p in out.iterdir())
    finished = _shard_names(out)
    assert finished
    for name in names:
        assert name in finished or name == PACK_JOURNAL or ".tmp-" in name, name
    for name in finished:
        ShardReader.open(out / name).verify_all()
    kept = [s["name"] for s in json.loads(journal.read_text())["shards"]]
    assert kept and set(kept) <= set(finished)
    before = _stats(out, kept)

    # Other options cannot resume this pack, and refusing touches nothing.
    with pytest.raises(OutputExistsError, match="interrupted pack"):
        fastload.pack(src, out, shard_size="48KB", block_size="8KB", progress=False)
    assert sorted(p.name for p in out.iterdir()) == names

    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"({len(kept)} kept from an interrupted run)" in done.stdout

    clean = tmp_path / "clean"
    fastload.pack(src, clean, shard_size="48KB", block_size="4KB", progress=False)
    assert _contents(out) == _contents(clean)  # no temporaries or journal left either
    assert _stats(out, kept) == before  # finished shards were kept, not rewritten


class FlakyRowGroups(ArrowFileSource):
    """Row-group segments of a Parquet file; reading segment ``fail_at`` or later fails."""

    def __init__(self, path, fail_at: int):
        super().__init__(path, segment_size=1)
        self.fail_at = fail_at

    def read(self, segment):
        if segment.start >= self.fail_at:
            raise RuntimeError("the input disk went away")
        yield from super().read(segment)


def _interrupt(path: Path, out: Path, fail_at: int = 7) -> list[str]:
    """Pack ``path`` into ``out`` until it fails midway; the journal's finished shards."""
    with pytest.raises(RuntimeError, match="disk went away"):
        fastload.pack(FlakyRowGroups(path, fail_at), out, **SMALL)
    assert not (out / "manifest.json").exists()
    assert not _temporaries(out)
    kept = [s["name"] for s in json.loads((out / PACK_JOURNAL).read_text())["shards"]]
    assert len(kept) >= 2
    return kept


def test_failed_pack_resumes_where_it_stopped(tmp_path, parquet_file):
    out = tmp_path / "out"
    kept = _interrupt(parquet_file, out)
    before = _stats(out, kept)
    # stale temporaries of a dead run and a shard past the journal's end are cleaned up
    (out / ".shard-000099.fls.tmp-4242-deadbeef").write_bytes(b"partial")
    (out / ".manifest.json.tmp-4242-0badf00d").write_bytes(b"{")
    (out / "shard-000050.fls").write_bytes(b"not finished")

    report = fastload.pack(_row_groups(parquet_file), out, **SMALL)
    assert report.resumed_shards == len(kept)
    clean = tmp_path / "clean"
    clean_report = fastload.pack(_row_groups(parquet_file), clean, **SMALL)
    assert _contents(out) == _contents(clean)
    assert _stats(out, kept) == before
    assert report.records == clean_report.records == 6000
    assert report.compression_ratio == pytest.approx(clean_report.compression_ratio, rel=0.01)


def test_interrupted_pack_refuses_other_options_and_inputs(tmp_path, parquet_file):
    plain = {"use_dictionary": False, "compression": "none", "row_group_size": 500}
    pq.write_table(_table(6000), parquet_file, **plain)  # so that other ids keep the same sizes
    out = tmp_path / "out"
    _interrupt(parquet_file, out)
    listing = sorted(p.name for p in out.iterdir())
    for options in ({**SMALL, "block_size": "16KB"}, {**SMALL, "shard_size": "128KB"},
                    {**SMALL, "compression": "zstd"}, {**SMALL, "on_error": "skip"},
                    {**SMALL, "schema": "tokens:int32[8]"}):
        with pytest.raises(OutputExistsError, match="interrupted pack"):
            fastload.pack(_row_groups(parquet_file), out, **options)
    with pytest.raises(OutputExistsError, match="interrupted pack"):  # a source that cannot resume
        fastload.pack([{"id": 1}], out, **SMALL)
    assert sorted(p.name for p in out.iterdir()) == listing

    # The input rewritten since the interruption (same size, other values): not resumed.
    size = parquet_file.stat().st_size
    changed = _table(6000).set_column(0, "id", pa.array(np.arange(6000, dtype=np.int64)[::-1]))
    pq.write_table(changed, parquet_file, **plain)
    assert parquet_file.stat().st_size == size
    with pytest.raises(OutputExistsError, match="interrupted pack"):
        fastload.pack(_row_groups(parquet_file), out, **SMALL)

    report = fastload.pack(_row_groups(parquet_file), out, overwrite=True, **SMALL)
    assert report.resumed_shards == 0
    assert fastload.open(out)[0]["id"] == 5999


def test_generator_failing_midway_leaves_no_partial_files(tmp_path):
    def records(fail: bool):
        for i in range(6000):
            if fail and i == 5000:
                raise RuntimeError("generator broke")
            yield {"i": i, "text": "x" * (i % 50)}

    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="generator broke"):
        fastload.pack(records(True), out, shard_size="16KB", block_size="4KB", progress=False)
    assert _shard_names(out)  # finished shards stay ...
    assert not (out / "manifest.json").exists()  # ... but the dataset is not committed
    assert not _temporaries(out)
    with pytest.raises(fastload.FormatError):
        fastload.open(out)

    fastload.pack(records(False), out, shard_size="16KB", block_size="4KB", progress=False)
    assert len(fastload.open(out)) == 6000


@pytest.mark.parametrize("kind", ["generator", "record-batch-stream"])
def test_one_segment_sources_are_written_while_read(tmp_path, kind):
    """A generator or stream is one segment: its shards reach the disk while it is read, not at its end."""
    out = tmp_path / "out"
    seen = []

    def look():
        seen.append(len(_shard_names(out)) if out.exists() else 0)

    if kind == "generator":
        def source():
            for i in range(20_000):
                if i % 5000 == 0:
                    look()
                yield {"i": i, "text": "y" * 40}
        src = source()
    else:
        def batches():
            for k in range(0, 20_000, 1000):
                if k % 5000 == 0:
                    look()
                yield pa.record_batch({"i": np.arange(k, k + 1000), "text": ["y" * 40] * 1000})
        schema = pa.schema([("i", pa.int64()), ("text", pa.string())])
        src = pa.RecordBatchReader.from_batches(schema, batches())

    report = fastload.pack(src, out, shard_size="64KB", block_size="8KB", progress=False)
    assert report.records == 20_000
    assert seen[0] == 0 and seen[-1] >= 5, seen


class FailingSource(Source):
    """Segment 5 raises a SourceError; read by forked workers."""

    mp_context = "fork"
    description = "failing test source"

    def segments(self):
        return list(range(8))

    def read(self, segment):
        if segment == 5:
            raise SourceError("failing.bin row 3500: unreadable")
        ids = np.arange(segment * 700, segment * 700 + 700)
        yield Chunk({"id": ids, "text": [f"row {i}" for i in ids]}, "failing.bin", segment * 700)


def test_worker_error_leaves_no_partial_files(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(SourceError, match="failing.bin row 3500"):
        fastload.pack(FailingSource(), out, workers=2, shard_size="16KB", block_size="4KB", progress=False)
    assert not (out / "manifest.json").exists()
    assert not _temporaries(out)
    assert not multiprocessing.active_children()


def test_write_error_stops_the_workers_at_once(tmp_path, monkeypatch):
    calls = []
    real_add = ShardSink.add

    def add(self, block):
        calls.append(1)
        if len(calls) == 5:
            raise OSError(28, "No space left on device")
        return real_add(self, block)

    monkeypatch.setattr(ShardSink, "add", add)
    out = tmp_path / "out"
    with pytest.raises(OSError, match="No space left") as excinfo:
        fastload.pack(SlowFirstSource(), out, workers=2, shard_size="16KB", block_size="4KB", progress=False)
    assert excinfo.traceback  # the traceback (and the driver's frames) are still alive here
    assert not multiprocessing.active_children()
    assert not _temporaries(out)
    assert not (out / "manifest.json").exists()


# -- output rules -----------------------------------------------------------------------------
def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_output_rules(tmp_path, parquet_file):
    rows = [{"i": i, "t": f"v{i}"} for i in range(3000)]
    foreign = tmp_path / "busy" / "notes.txt"
    foreign.parent.mkdir()
    foreign.write_text("mine")
    with pytest.raises(OutputExistsError, match="not empty"):
        fastload.pack(rows, foreign.parent, progress=False)
    assert sorted(p.name for p in foreign.parent.iterdir()) == ["notes.txt"]

    out = tmp_path / "out"
    fastload.pack(rows, out, shard_size="8KB", block_size="2KB", progress=False)
    first = _contents(out)
    assert len(first) > 3
    with pytest.raises(OutputExistsError, match="finished dataset"):
        fastload.pack(rows[:10], out, progress=False)
    assert _contents(out) == first

    # overwrite replaces fastload's files only
    (out / "notes.txt").write_text("keep me")
    (out / ".shard-000009.fls.tmp-1-00000000").write_bytes(b"stale")
    fastload.pack(rows[:10], out, overwrite=True, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "notes.txt", "shard-000000.fls"]
    assert (out / "notes.txt").read_text() == "keep me"
    assert len(fastload.open(out)) == 10


def test_pack_never_modifies_its_input(tmp_path, parquet_file):
    jsonl = parquet_file.parent / "rows.jsonl"
    jsonl.write_text("".join(json.dumps({"a": i, "b": f"s{i}"}) + "\n" for i in range(500)))
    before = {p: (_sha(p), p.stat().st_mtime_ns) for p in parquet_file.parent.iterdir()}
    fastload.pack(str(parquet_file), tmp_path / "a", workers=2, compression="zstd", **SMALL)
    fastload.pack(str(jsonl), tmp_path / "b", **SMALL)
    fastload.pack(_row_groups(parquet_file), tmp_path / "a", overwrite=True, workers=2, **SMALL)
    after = {p: (_sha(p), p.stat().st_mtime_ns) for p in parquet_file.parent.iterdir()}
    assert after == before


# -- schema overrides -------------------------------------------------------------------------
def test_schema_override_stores_a_fixed_uint16_array(tmp_path, parquet_file):
    assert fastload.pack(str(parquet_file), tmp_path / "inferred", progress=False).records == 6000
    assert fastload.open(tmp_path / "inferred").schema["tokens"].spec == "int64[-1]"

    fastload.pack(str(parquet_file), tmp_path / "out", schema="tokens:uint16[8]", progress=False)
    ds = fastload.open(tmp_path / "out")
    assert ds.schema["tokens"].spec == "uint16[8]"
    batch = ds.get_batch(np.arange(6000))
    assert batch["tokens"].dtype == np.uint16 and batch["tokens"].shape == (6000, 8)
    np.testing.assert_array_equal(batch["tokens"], np.arange(6000)[:, None] + np.arange(8))
    np.testing.assert_array_equal(ds[1234]["tokens"], np.arange(1234, 1242, dtype=np.uint16))


def test_row_not_fitting_the_override_names_file_and_row(tmp_path):
    table = _table(3000)
    tokens = table.column("tokens").to_pylist()
    tokens[1234] = tokens[1234][:5]  # ragged
    path = tmp_path / "ragged.parquet"
    pq.write_table(table.set_column(3, "tokens", pa.array(tokens, type=pa.list_(pa.int64()))), path,
                   row_group_size=1000)
    with pytest.raises(SourceError, match=rf"{path} row 1234: field 'tokens'"):
        fastload.pack(str(path), tmp_path / "raise", schema="tokens:uint16[8]", progress=False)
    assert not (tmp_path / "raise" / "manifest.json").exists()

    report = fastload.pack(str(path), tmp_path / "skip", schema="tokens:uint16[8]", on_error="skip",
                           progress=False)
    assert (report.skipped, report.records) == (1, 2999)
    assert report.skip_examples[0].startswith(f"{path} row 1234: field 'tokens'")
    ds = fastload.open(tmp_path / "skip")
    assert ds[1233]["id"] == 1233 and ds[1234]["id"] == 1235


# -- report -----------------------------------------------------------------------------------
def test_report_counts_and_speed(tmp_path):
    rows = [{"id": i, "text": "the same words again and again " * 4} for i in range(20_000)]
    out = tmp_path / "out"
    report = fastload.pack(rows, out, compression="zstd", shard_size="32KB", block_size="64KB",
                           progress=False)
    assert report.records == 20_000 and report.skipped == 0
    assert report.shards == len(_shard_names(out)) >= 2
    assert report.bytes_out == sum(p.stat().st_size for p in out.glob("shard-*.fls"))
    assert report.bytes_in >= 20_000 * 124
    assert report.compression_ratio > 2
    assert report.seconds > 0 and report.mb_per_s_in > 0
    text = str(report)
    assert "records  20,000" in text and "MB/s" in text and f"shards   {report.shards}" in text

    plain = fastload.pack(rows, tmp_path / "plain", progress=False)
    assert plain.compression_ratio == pytest.approx(1.0, abs=0.05)


# -- workers ----------------------------------------------------------------------------------
class DyingSource(Source):
    """Its worker process exits abruptly while reading segment 2."""

    mp_context = "fork"
    description = "dying test source"

    def __init__(self, delay: float = 0.0):
        self.delay = delay

    def segments(self):
        return list(range(8))

    def read(self, segment):
        if segment == 2:
            time.sleep(self.delay)
            os._exit(1)
        yield Chunk({"x": np.arange(10) + 10 * segment}, "dying", 10 * segment)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("while_writing", [False, True], ids=["while-waited-for", "while-parent-writes"])
def test_dead_worker_raises_worker_error(tmp_path, monkeypatch, while_writing):
    if while_writing:
        # The death is noticed while the parent writes an earlier result: the pool breaks between
        # two of its calls, so the next submit() (not a result()) is what fails.
        real_add = ShardSink.add
        slept = []

        def slow_add(self, block):
            if not slept:  # the first block of segment 0
                slept.append(True)
                time.sleep(0.5)
            return real_add(self, block)

        monkeypatch.setattr(ShardSink, "add", slow_add)
    start = time.monotonic()
    with pytest.raises(WorkerError, match="worker process died"):
        fastload.pack(DyingSource(delay=0.1 if while_writing else 0.0), tmp_path / "out", workers=2,
                      progress=False)
    assert time.monotonic() - start < 30
    assert not (tmp_path / "out" / "manifest.json").exists()
    assert not _temporaries(tmp_path / "out")
    assert not multiprocessing.active_children()
