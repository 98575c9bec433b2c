"""``bench.images --merge``: split runs of the image benchmark combined into one table."""

from __future__ import annotations

import json

import pytest

from bench import images


def _run(path, thread: list[float], torch: list[float], systems=("fastload-thread", "torch")) -> None:
    rates = {"fastload-thread": thread, "torch": torch}
    results = {f"{s}|train": [{"images_s": r, "first_batch_s": 1.0} for r in rates[s]] for s in systems}
    results["limit"] = [{"pillow": 1000.0, "simplejpeg": 1500.0} for _ in thread]
    path.write_text(json.dumps({"results": results, "skipped": {}, "command": "x",
                                "machine": {"cores": 2, "memory_gib": 1, "cpu": "c", "disk": "d", "kernel": "k",
                                            "versions": {}, "command": "x"}}))


def test_merge_pairs_each_repeat_within_its_run(tmp_path, capsys):
    _run(tmp_path / "a.json", [300.0, 400.0, 900.0], [100.0, 100.0, 300.0])
    _run(tmp_path / "b.json", [250.0, 500.0], [100.0, 100.0])
    images.main(["--merge", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--json", str(tmp_path / "all.json")])
    merged = json.loads((tmp_path / "all.json").read_text())
    assert merged["repeats"] == 5 and len(merged["results"]["torch|train"]) == 5
    row = next(r for r in merged["rows"] if r[0] == "fastload-thread")
    # the ratios 3, 4, 3, 2.5, 5 (each repeat against its own torch run): median 3
    assert row[2] == "400 (250–900)" and row[4] == "3.00 (2.50–5.00)"
    assert "merged 2 runs" in capsys.readouterr().out


def test_merge_refuses_runs_of_other_systems(tmp_path):
    _run(tmp_path / "a.json", [300.0], [100.0])
    _run(tmp_path / "b.json", [300.0], [100.0], systems=("fastload-thread",))
    with pytest.raises(SystemExit, match="different systems or transforms"):
        images.main(["--merge", str(tmp_path / "a.json"), str(tmp_path / "b.json")])
