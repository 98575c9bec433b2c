"""The ``fastload`` command run as a real process: pack, info, head, verify, and its exit statuses."""

from __future__ import annotations

import argparse
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


# -- what a new user meets first -------------------------------------------------------------------
def test_report_names_the_input_as_users_know_it(source, tmp_path):
    proc = fastload_cli("pack", source, tmp_path / "plain", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert f"packed   Parquet: {source}" in proc.stdout
    assert "compression ratio" not in proc.stdout and "arrow files" not in proc.stdout
    proc = fastload_cli("pack", source, tmp_path / "zstd", "--compression", "zstd", "--no-progress")
    assert "zstd compression ratio" in proc.stdout


def test_head_prints_valid_json_with_shortest_floats(tmp_path):
    path = tmp_path / "f.parquet"
    pq.write_table(pa.table({"x": pa.array([0.1, float("nan"), float("inf")], pa.float32()),
                             "y": [0.1, float("-inf"), 2.5]}), path)
    assert fastload_cli("pack", path, tmp_path / "ds", "--no-progress").returncode == 0
    proc = fastload_cli("head", tmp_path / "ds")
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line, parse_constant=lambda c: pytest.fail(f"bare {c} in head output"))
               for line in proc.stdout.splitlines()]
    assert records == [{"x": 0.1, "y": 0.1}, {"x": "NaN", "y": "-Infinity"}, {"x": "Infinity", "y": 2.5}]


def test_output_piped_into_head_ends_quietly(packed):
    cmd = f"{sys.executable} -m fastload._cli head {packed} -n 3000 | head -n 1"
    proc = subprocess.run(["bash", "-c", f"set -o pipefail; {cmd}"], capture_output=True, text=True, timeout=60)
    assert proc.stdout.count("\n") == 1
    assert proc.stderr == ""  # no "Broken pipe", no traceback
    assert proc.returncode == 141  # 128 + SIGPIPE, as Unix tools end


def test_every_positional_has_help_and_pack_help_lists_every_source_kind():
    from fastload._cli import _parser

    def walk(parser):
        yield parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from walk(sub)

    for parser in walk(_parser()):
        for action in parser._actions:
            if not action.option_strings and not isinstance(action, argparse._SubParsersAction):
                assert action.help, f"{parser.prog} {action.dest} has no help"
    text = fastload_cli("pack", "--help").stdout.replace("\n", " ")
    text = " ".join(text.split())
    readme = " ".join((Path(__file__).parents[1] / "README.md").read_text().replace("`", "").split())
    for kind in ("Parquet", "Arrow", "Feather", "JSON Lines", "JSON-array", "CSV", ".npy/.npz", "WebDataset",
                 "MDS", "LitData", "Hugging Face", "image folder", ".gz"):
        assert kind in text, kind
        assert kind in readme, kind


def test_exit_statuses_for_schema_and_skip_problems(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"name": f"n{i}"}) + "\n" for i in range(5)))
    proc = fastload_cli("pack", path, tmp_path / "a", "--schema", "name:int64", "--no-progress")
    assert proc.returncode == 6
    _assert_one_line_error(proc, "pack", str(path), "'name'")
    path.write_text("oops\n" * 3)
    proc = fastload_cli("pack", path, tmp_path / "b", "--on-error", "skip", "--no-progress")
    assert proc.returncode == 9
    _assert_one_line_error(proc, "pack", "every row (3) was skipped", "line 1")
    path.write_text("".join(json.dumps({"v": i}) + "\n" if i % 10 else "oops\n" for i in range(100)))
    proc = fastload_cli("pack", path, tmp_path / "c", "--on-error", "skip", "--no-progress")
    assert proc.returncode == 0 and "WARNING  10 of 100 rows (10.0%) were skipped" in proc.stdout
    assert "SkippedRowsWarning" not in proc.stderr  # said once, in the report
