"""Cleaning through the ``fastload`` command: pack options, the JSON report, and ``fastload info``
showing how the dataset was cleaned (from the manifest's metadata)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(180)  # CLI subprocesses start cold; a hang guard, not a speed test


def fastload_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastload._cli", *map(str, args)], capture_output=True,
                          text=True, timeout=60)


@pytest.fixture
def jsonl(tmp_path):
    path = tmp_path / "in.jsonl"
    rows = [{"text": t, "lang": lang} for t, lang in [
        ("a long enough text", "en"), ("short", "en"), ("a long enough text", "en"), ("", "fr"),
        ("another long text", "fr"), ("A LONG ENOUGH TEXT", "de"), ("another long text", "en")]]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_pack_cleans_and_reports_as_json_and_info_shows_it(tmp_path, jsonl):
    out = tmp_path / "ds"
    proc = fastload_cli("pack", jsonl, out, "--no-progress", "--filter", "len(text) > 5", "--filter",
                        "lang != 'de'", "--dedup", "text", "--normalize", "case", "--json", "--drop-invalid")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["records"] == 2
    dropped = {t["rule"]: t["records"] for t in report["cleaning"]}
    assert dropped == {"drop-invalid utf8": 0, "drop-invalid empty": 1, "filter len(text) > 5": 1,
                       "filter lang != 'de'": 1, "dedup": 2}
    examples = {t["rule"]: t["examples"] for t in report["cleaning"]}
    assert examples["dedup"] == [f"{jsonl} line 3", f"{jsonl} line 7"]  # 1-based lines

    info = fastload_cli("info", out)
    assert info.returncode == 0, info.stderr
    assert "dedup        on text (xxh3_128, text normalised: case)" in info.stdout
    assert "filter       len(text) > 5" in info.stdout and "drop-invalid image, utf8, empty, nan" in info.stdout
    assert "cleaning 5 of 7 records dropped" in info.stdout
    as_json = json.loads(fastload_cli("info", out, "--json").stdout)
    assert as_json["cleaning"]["settings"]["dedup"] == {"fields": ["text"], "normalize": ["case"], "hash": "xxh3_128"}
    assert as_json["cleaning"]["dropped"] == report["cleaning"]


def test_whole_record_dedup_from_the_command_line(tmp_path, jsonl):
    proc = fastload_cli("pack", jsonl, tmp_path / "ds", "--no-progress", "--dedup")
    assert proc.returncode == 0, proc.stderr
    assert "dedup" in proc.stdout and "records  6" in proc.stdout
    proc = fastload_cli("pack", jsonl, tmp_path / "ds2", "--no-progress", "--dedup=*")
    assert proc.returncode == 0 and "records  6" in proc.stdout


def test_a_filter_syntax_error_points_at_its_column(tmp_path, jsonl):
    proc = fastload_cli("pack", jsonl, tmp_path / "ds", "--no-progress", "--filter", "len(text) >> 3")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.rstrip("\n").splitlines()
    assert lines[0].startswith("fastload pack: error: invalid filter at column 12: ")
    assert lines[1] == "  len(text) >> 3" and lines[2] == "             ^"
    assert not (tmp_path / "ds").exists() or not any((tmp_path / "ds").iterdir())
