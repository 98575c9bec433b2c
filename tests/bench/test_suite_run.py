"""``python -m bench.run``: the suite's plumbing on a tiny selection, without peers installed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(90)


def suite(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.run", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=80)


def test_dry_run_lists_every_step_within_the_budgets(tmp_path):
    full = suite("--suite", "peers", "--dry-run", "--work-dir", tmp_path)
    quick = suite("--suite", "peers", "--dry-run", "--quick", "--work-dir", tmp_path)
    assert full.returncode == 0 and quick.returncode == 0, full.stderr + quick.stderr
    for out, limit in ((full.stdout, 15 * 60), (quick.stdout, 120)):
        steps = [ln.split()[0] for ln in out.splitlines()[:-1]]
        assert steps == ["pack", "tokens", "records", "images", "remote"]
        assert 0 < float(out.splitlines()[-1].split()[2]) < limit


def test_tiny_pack_step_writes_the_generated_section(tmp_path):
    docs = tmp_path / "benchmarks.md"
    from bench.run import BEGIN, END

    docs.write_text(f"# Benchmarks\n\nhand-written intro\n\n{BEGIN}\nold figures\n{END}\n\nhand-written outro\n")
    proc = suite("--suite", "peers", "--quick", "--only", "pack", "--scale", "0.001",
                 "--systems", "fastload,copy,mds", "--data-dir", tmp_path / "data",
                 "--work-dir", tmp_path / "work", "--docs", docs, "--json", tmp_path / "suite.json")
    assert proc.returncode == 0, proc.stderr
    text = docs.read_text()
    assert text.startswith("# Benchmarks\n\nhand-written intro\n\n" + BEGIN)
    assert text.rstrip().endswith("hand-written outro") and "old figures" not in text
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    assert "| pack | ok |" in text and "fastload w1" in text and "| copy |" in text
    assert str(tmp_path) not in text  # the page names datasets and sizes, never this machine's paths
    record = json.loads((tmp_path / "suite.json").read_text())
    steps = {s["step"]: s for s in record["steps"]}
    assert steps["pack"]["status"] == "ok" and steps["pack"]["seconds"] > 0
    assert record["machine"]["cores"] >= 1
    import importlib.util

    if importlib.util.find_spec("streaming") is None:
        assert "skipped: mds: not installed" in text


def test_a_missing_script_is_reported_as_skipped(tmp_path):
    from bench.run import STEPS, Step, run_step

    class Args:  # what main() passes run_step, for a step whose script does not exist
        quick, scale, repeats, systems = True, None, None, ""
        data_dir, work_dir = tmp_path / "data", tmp_path

    res = run_step(Step(name="ghost", module="bench.no_such_script_here"), Args)
    assert res["status"] == "skipped: bench/no_such_script_here.py is not in this tree yet"
    assert set(STEPS) == {"pack", "tokens", "records", "images", "remote"}


def test_unknown_step_is_a_usage_error(tmp_path):
    proc = suite("--only", "pack,nonsense", "--work-dir", tmp_path)
    assert proc.returncode == 2 and "unknown step(s) ['nonsense']" in proc.stderr
