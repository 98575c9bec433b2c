"""The ``fastload`` command run as a real process: pack, info, head, verify, and its exit statuses."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fastload.format.shard_reader import ShardReader

pytestmark = pytest.mark.timeout(60)

N = 3000


def fastload_cli(*args: str, exe: list[str] | None = None) -> subprocess.CompletedProcess:
    cmd = (exe or [sys.executable, "-m", "fastload._cli"]) + [str(a) for a in args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def _assert_one_line_error(proc: subprocess.CompletedProcess, command: str, *needles: str) -> str:
    err = proc.stderr.strip()
    assert "Traceback" not in proc.stderr
    assert "\n" not in err, err
    assert err.startswith(f"fastload {command}: error: ")
    for needle in needles:
        assert needle in err, err
    return err


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("input") / "data.parquet"
    ids = np.arange(N, dtype=np.int64)
    table = pa.table({
        "id": ids,
        "text": [f"line {i} " * (i % 5) for i in ids],
        "tokens": pa.array([[int(i) + k for k in range(8)] for i in ids], type=pa.list_(pa.int64())),
    })
    pq.write_table(table, path, row_group_size=250)
    return path


@pytest.fixture(scope="module")
def packed(source, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("packed") / "ds"
    proc = fastload_cli("pack", source, out, "--shard-size", "8KB", "--block-size", "2KB",
                        "--compression", "zstd", "--schema", "tokens:uint16[8]", "--workers", "2",
                        "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert f"records  {N:,}" in proc.stdout and "MB/s" in proc.stdout
    assert len(list(out.glob("shard-*.fls"))) >= 3
    return out


def test_info(packed):
    proc = fastload_cli("info", packed)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"records      {N:,}" in out
    assert "format       fastload v2" in out
    assert "compression  zstd (level 3)" in out
    assert "tokens  uint16[8]" in out and "id      int64" in out and "text    str" in out


def test_info_json(packed):
    proc = fastload_cli("info", packed, "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["records"] == N
    assert info["shards"] == len(list(packed.glob("shard-*.fls")))
    assert info["bytes"] == sum(p.stat().st_size for p in packed.glob("shard-*.fls"))
    assert info["schema"] == {"id": "int64", "text": "str", "tokens": "uint16[8]"}
    assert info["settings"]["compression"] == "zstd"
    assert info["settings"]["block_size"] == 2000


def test_info_through_the_console_script(packed):
    exe = shutil.which("fastload", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("the fastload console script is not installed beside this interpreter")
    proc = fastload_cli("info", packed, "--json", exe=[exe])
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["records"] == N


def test_head(packed):
    proc = fastload_cli("head", packed, "-n", "3")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 3
    records = [json.loads(line) for line in lines]
    for i, rec in enumerate(records):
        assert rec == {"id": i, "text": f"line {i} " * i, "tokens": list(range(i, i + 8))}


def test_verify_ok(packed):
    proc = fastload_cli("verify", packed)
    assert proc.returncode == 0, proc.stderr
    n_shards = len(list(packed.glob("shard-*.fls")))
    assert f"verified {n_shards} shards, {N:,} records" in proc.stdout


def test_verify_names_the_corrupt_shard_and_block(packed, tmp_path):
    copy = tmp_path / "ds"
    shutil.copytree(packed, copy)
    shard = copy / "shard-000001.fls"
    reader = ShardReader.open(shard)
    assert reader.n_blocks >= 2
    row = reader.blocks[1]
    offset = int(row["offset"]) + int(row["stored_size"]) // 2
    del reader
    data = bytearray(shard.read_bytes())
    data[offset] ^= 0x01
    shard.write_bytes(bytes(data))

    proc = fastload_cli("verify", copy)
    assert proc.returncode == 3
    err = proc.stderr.strip().splitlines()
    assert "ok  shard-000000.fls" in err  # the shards before it passed
    assert "Traceback" not in proc.stderr
    assert str(shard) in err[-1] and "block 1 " in err[-1] and "checksum" in err[-1]
    assert err[-1].startswith("fastload verify: error: ")
    assert "verified" not in proc.stdout


def test_missing_source_is_a_one_line_error(tmp_path):
    missing = tmp_path / "nope.parquet"
    proc = fastload_cli("pack", missing, tmp_path / "out", "--no-progress")
    assert proc.returncode == 4
    _assert_one_line_error(proc, "pack", str(missing), "does not exist")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_bad_size_is_a_clear_error(source, tmp_path):
    proc = fastload_cli("pack", source, tmp_path / "out", "--shard-size", "abc", "--no-progress")
    assert proc.returncode != 0
    _assert_one_line_error(proc, "pack", "shard_size", "'abc'", "64KB")


def test_non_empty_output_exits_5(source, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    proc = fastload_cli("pack", source, out, "--no-progress")
    assert proc.returncode == 5
    _assert_one_line_error(proc, "pack", "not empty", "--overwrite")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_bad_row_exits_4_naming_file_and_row(tmp_path):
    path = tmp_path / "ragged.jsonl"
    path.write_text("".join(json.dumps({"v": [1, 2, 3] if i != 6 else [1, 2]}) + "\n" for i in range(10)))
    proc = fastload_cli("pack", path, tmp_path / "out", "--schema", "v:int32[3]", "--no-progress")
    assert proc.returncode == 4
    err = _assert_one_line_error(proc, "pack", str(path), "field 'v'")
    assert "line 7" in err or "row 6" in err, err

    proc = fastload_cli("pack", path, tmp_path / "skip", "--schema", "v:int32[3]", "--on-error", "skip",
                        "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "records  9  (1 skipped)" in proc.stdout


def test_info_on_a_directory_that_is_no_dataset(tmp_path):
    proc = fastload_cli("info", tmp_path)
    assert proc.returncode == 3
    _assert_one_line_error(proc, "info", "not a fastload dataset")
