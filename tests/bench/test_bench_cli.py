"""``fastload bench`` end to end on tiny synthetic datasets: structure and sanity, never speed."""

from __future__ import annotations

import functools
import http.server
import json
import subprocess
import sys
import threading

import pytest

from fastload._cli import main
from fastload.bench import synthetic

pytestmark = pytest.mark.timeout(90)

# tiny and short: one repeat, runs of 0.1 s, a 5 ms step
FAST = ["--quick", "--no-progress", "--run-seconds", "0.1", "--step-ms", "5"]


def bench(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastload._cli", "bench", *map(str, args)],
                          capture_output=True, text=True, timeout=80)


def one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    err = proc.stderr.strip()
    assert proc.returncode not in (0, 2), (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [x for x in err.splitlines() if x.startswith("fastload bench: error: ")]
    assert len(lines) == 1 and err.endswith(lines[0]), err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def check_sane(m: dict, *, fields: set[str]) -> None:
    assert m["fastload_bench"] == 1
    mach = m["machine"]
    assert mach["cores"] >= 1 and mach["memory"]["total_gib"] > 0
    assert mach["disk"]["remote"] or mach["disk"]["fs"]
    assert mach["versions"]["fastload"] and mach["versions"]["numpy"]
    assert m["dataset"]["records"] > 0 and m["dataset"]["bytes_per_record"] > 0
    st = m["storage"]
    assert all(x > 0 for x in st["mb_s"]) and all(x > 0 for x in st["memcpy_mb_s"])
    dec = m["decode"]
    assert set(dec["fields"]) == fields
    for f in dec["fields"].values():
        assert f["gather_samples_s"] > 0 and f["bytes_per_record"] > 0
    assert dec["codec"]["checksum_mb_s"] > 0
    assert sum(dec["per_sample_s"].values()) > 0
    assert m["loader"]
    for r in m["loader"]:
        assert r["samples_s"] > 0 and r["mb_s"] > 0 and r["first_batch_s"] > 0
        assert 0 < r["fraction_of_storage"]
    s = m["stall"]
    assert 0.0 <= s["stall_pct"] <= 100.0 and s["samples_s"] > 0 and s["step_ms"] == pytest.approx(5.0)
    assert m["advice"] and all(isinstance(a, str) and a for a in m["advice"])
    assert "num_workers=" in m["advice"][0]


def test_tokens_end_to_end_as_a_process(tmp_path):
    out = tmp_path / "bench.json"
    proc = bench("--synthetic", "tokens", "--records", 800, "--synthetic-dir", tmp_path / "data",
                 "--workers", "0,1", "--json", out, *FAST)
    assert proc.returncode == 0, proc.stderr
    m = json.loads(out.read_text())
    check_sane(m, fields={"tokens"})
    assert {(r["num_workers"], r["worker_type"]) for r in m["loader"]} == {(0, "thread"), (1, "thread"), (1, "process")}
    for heading in ("1. storage limit", "2. decode cost", "3. loader", "4. data stall", "5. advice"):
        assert heading in proc.stdout
    assert m["dataset"]["synthetic"] == "tokens" and (tmp_path / "data" / "synthetic-tokens" / "manifest.json").exists()


def test_records_zstd_and_var_fields(tmp_path, capsys):
    out = tmp_path / "b.json"
    args = ["bench", "--synthetic", "records", "--records", "3000", "--synthetic-dir", str(tmp_path),
            "--workers", "0", "--target-samples-per-s", "20000", "--json", str(out), *FAST[:-2]]
    assert main(args) == 0
    m = json.loads(out.read_text())
    check_sane({**m, "stall": {**m["stall"], "step_ms": 5.0}}, fields={"id", "text", "label"})
    assert m["stall"]["step_ms"] == pytest.approx(64 / 20000 * 1e3)
    assert m["decode"]["codec"]["zstd_mb_s"] > 0 and m["decode"]["codec"]["ratio"] > 1
    assert m["decode"]["fields"]["text"]["decode_samples_s"] > 0
    assert "decompression" in m["decode"]["per_sample_s"]


def test_images_decode_cost(tmp_path, capsys):
    out = tmp_path / "b.json"
    code = main(["bench", "--synthetic", "images", "--records", "80", "--synthetic-dir", str(tmp_path),
                 "--workers", "0", "--batch-sizes", "16", "--json", str(out), *FAST])
    assert code == 0
    m = json.loads(out.read_text())
    check_sane(m, fields={"image", "label"})
    img = m["decode"]["fields"]["image"]
    assert img["decode_samples_s"] > 0 and img["megapixels_per_image"] > 0.03
    assert "image decode" in m["decode"]["per_sample_s"]
    assert any(n.startswith("image fields") for n in m["notes"])
    from fastload.image.decode import missing_decoders

    if not missing_decoders():  # the loader decodes: advice judges those rows
        assert any(r["decoded"] for r in m["loader"]) and m["stall"]["setting"]["decoded"]
        assert m["advice"][0].startswith("Decoding images in the loader, use num_workers=")


def test_cold_says_what_it_did(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert main(["bench", "--synthetic", "tokens", "--records", "300", "--synthetic-dir", str(tmp_path),
                 "--workers", "0", "--cold", "--json", str(out), *FAST]) == 0
    st = json.loads(out.read_text())["storage"]
    assert st["cold_method"] != "none" or "cold_skipped" in st
    assert ("cold_mb_s" in st and all(x > 0 for x in st["cold_mb_s"])) or "could not drop" in st["cold_skipped"]
    assert "disk (cold)" in capsys.readouterr().out


def test_json_to_stdout_and_plot(tmp_path, capsys):
    png = tmp_path / "p.png"
    args = ["bench", "--synthetic", "tokens", "--records", "300", "--synthetic-dir", str(tmp_path),
            "--workers", "0", "--json", "-", "--plot", str(png), *FAST]
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert main(args) == 4  # refused before measuring, in one line
        assert "--plot needs matplotlib" in capsys.readouterr().err
        return
    assert main(args) == 0
    json.loads(capsys.readouterr().out)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_not_a_dataset(tmp_path):
    one_line_error(bench(tmp_path, *FAST), "not a fastload dataset")
    proc = bench(tmp_path / "missing", *FAST)
    assert proc.returncode == 3
    one_line_error(proc, "missing")


@pytest.mark.parametrize("spec, needle", [
    ("no_such_module_xyz:make", "cannot import 'no_such_module_xyz'"),
    ("json:no_such_factory", "has no attribute 'no_such_factory'"),
    ("nocolon", "MODULE:FACTORY"),
])
def test_bad_torch_dataset(spec, needle):
    proc = bench("--torch-dataset", spec, *FAST)
    one_line_error(proc, needle)
    assert proc.returncode in (1, 4)


USER_MODULE = '''
import torch
from torch.utils.data import Dataset

class Squares(Dataset):
    def __len__(self):
        return 500
    def __getitem__(self, i):
        return torch.full((16,), float(i)), i * i

def make():
    return Squares()

def broken():
    raise RuntimeError("no data here")
'''


def test_torch_dataset_side_by_side(tmp_path, monkeypatch, capsys):
    (tmp_path / "user_ds_mod.py").write_text(USER_MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "b.json"
    assert main(["bench", "--torch-dataset", "user_ds_mod:make", "--torch-samples", "300", "--workers", "0",
                 "--synthetic-dir", str(tmp_path / "w"), "--json", str(out), *FAST]) == 0
    m = json.loads(out.read_text())
    tc = m["torch_compare"]
    assert tc["samples"] == 300 and {r["system"] for r in tc["rows"]} == {"torch DataLoader", "fastload.DataLoader"}
    assert all(r["samples_s"] > 0 for r in tc["rows"]) and tc["speedup"] > 0
    check_sane(m, fields={"f0", "f1"})
    assert "your torch Dataset" in capsys.readouterr().out
    assert main(["bench", "--torch-dataset", "user_ds_mod:broken", *FAST]) == 4
    assert "the factory raised RuntimeError: no data here" in capsys.readouterr().err


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_remote_http_dataset(tmp_path):
    """A dataset served over HTTP on 127.0.0.1, read through the cache at --cache-dir under --cache-limit."""
    from fastload._sizes import parse_size

    synthetic.generate("tokens", tmp_path / "ds", 200)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/ds"
        out = tmp_path / "b.json"
        proc = bench(url, "--workers", "0", "--cache-dir", tmp_path / "cache", "--cache-limit", "64MB",
                     "--json", out, *FAST)
        assert proc.returncode == 0, proc.stderr
        m = json.loads(out.read_text())
        assert m["storage"]["remote"] is True and all(x > 0 for x in m["storage"]["mb_s"])
        assert m["cache"]["storage"]["cache_limit"] == parse_size("64MB")
        check_sane(m, fields={"tokens"})
        unreachable = bench("http://127.0.0.1:9/nothing", "--workers", "0", *FAST)
        one_line_error(unreachable)
    finally:
        server.shutdown()


def test_the_cli_does_not_import_torch():
    """Every ``fastload`` command builds the parser, bench's included: that must not cost torch's import."""
    code = "import fastload._cli, sys; fastload._cli._parser(); assert 'torch' not in sys.modules, 'torch imported'"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
