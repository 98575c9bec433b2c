"""Before/after: two fastload installations on the same pack and loader workloads.

Each measured run is a fresh process of one installation's Python (``bench/version_child.py``),
so each side runs its own fastload; runs alternate (before, after, before, after, ...) for every
workload, ``--repeats`` times, each after its input was read once (warm page cache). Wall seconds
show what a user waits; CPU seconds of the process (``time.process_time``) show the work done and
move less when other programs share the cores. Each side packs (and then loads) its own copy of
the data, in its own format version.

Workloads: ``pack`` of the token ``.npy`` (200,000 × 2049 uint16) and of the records Parquet
(1,000,000 rows, ``bench/datasets.py``), and a loader epoch (0 workers; batches of 64 tokens or
256 records) with ``shuffle="full"`` and ``"block"``: steady state, the second of the process
(``bench/loader_throughput.py`` measures first epochs of fresh processes).

    .venv/bin/python -m bench.versions --before /path/to/main/.venv/bin/python \\
        --after .venv/bin/python [--repeats 5] [--scale 1.0] [--json out.json]
    # or one environment and two checkouts (git worktree / git archive of two commits):
    .venv/bin/python -m bench.versions --before .venv/bin/python --before-src /tmp/old \\
        --after .venv/bin/python --after-src /tmp/new
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from . import datasets
from .common import DEFAULT_DATA_DIR, fmt_range, machine_info, med, print_machine, print_table, write_json

CHILD = Path(__file__).with_name("version_child.py")
WORKLOADS = ("pack", "loader-full", "loader-block")


def run(side: tuple[str, str | None], workload: str, source: Path, out: Path) -> dict:
    python, src = side
    env = {**os.environ, "PYTHONPATH": src} if src else None  # a checkout's fastload before the installed one
    # cwd is the output's parent, so a checkout in the current directory is not imported by accident
    proc = subprocess.run([python, str(CHILD), workload, str(source), str(out)], capture_output=True,
                          text=True, timeout=900, cwd=out.parent, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{python} {workload} {source.name} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def version_of(side: tuple[str, str | None], cwd: Path) -> str:
    python, src = side
    env = {**os.environ, "PYTHONPATH": src} if src else None
    code = "import fastload; print(fastload.__file__)"
    return subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=cwd, env=env).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="the Python executable of the installation before")
    ap.add_argument("--after", required=True, help="the Python executable of the installation after")
    ap.add_argument("--before-src", help="a checkout whose fastload the before side imports (PYTHONPATH)")
    ap.add_argument("--after-src", help="the same for the after side")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the full inputs")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    # absolute, but not resolved: a virtual environment's python is a symlink that must stay one
    sides = {"before": (os.path.abspath(a.before), a.before_src and os.path.abspath(a.before_src)),
             "after": (os.path.abspath(a.after), a.after_src and os.path.abspath(a.after_src))}
    a.data_dir.mkdir(parents=True, exist_ok=True)
    info = machine_info(a.data_dir)
    info.update(repeats=a.repeats, scale=a.scale, **{side: version_of(s, a.data_dir) for side, s in sides.items()})
    print_machine(info)
    for side, (python, src) in sides.items():
        print(f"# {side}: {info[side]} ({python}{', PYTHONPATH=' + src if src else ''})", flush=True)
    inputs = {"tokens": datasets.tokens(a.data_dir, a.scale), "records": datasets.records(a.data_dir, a.scale)}
    results: dict = {}
    for r in range(a.repeats):
        for data, src in inputs.items():
            for workload in WORKLOADS:
                for side, python in sides.items():  # python: (executable, checkout or None)
                    out = a.data_dir / "versions" / side / f"{data}-{'pack' if workload == 'pack' else 'ds'}"
                    out.parent.mkdir(parents=True, exist_ok=True)
                    res = run(python, workload, src, out)
                    results.setdefault(f"{data} {workload}", {}).setdefault(side, []).append(res)
                    print(f"  [{r + 1}/{a.repeats}] {data} {workload} {side}: wall {res['wall_s']:.3f} s, "
                          f"cpu {res['cpu_s']:.3f} s", file=sys.stderr, flush=True)
    rows = []
    for name, runs in results.items():
        n = runs["before"][0]["records"]
        rate = {side: [x["records"] / x["wall_s"] / 1e3 for x in xs] for side, xs in runs.items()}
        cpu = {side: [x["cpu_s"] for x in xs] for side, xs in runs.items()}
        rows.append([name, f"{n:,}", fmt_range(rate["before"]), fmt_range(rate["after"]),
                     f"{med(rate['after']) / med(rate['before']):.2f}", fmt_range(cpu["before"]),
                     fmt_range(cpu["after"]), f"{med(cpu['after']) / med(cpu['before']):.2f}"])
    print()
    print_table(["workload", "records", "before k rec/s", "after k rec/s", "after/before", "before CPU s",
                 "after CPU s", "CPU after/before"], rows)
    write_json(a.json, {"machine": info, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
