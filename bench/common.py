"""Shared benchmark plumbing: machine and versions, page-cache warming, interleaved repeats, tables."""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterable

# the benchmarks' scratch space: generated inputs (cached between runs) and outputs
BENCH_HOME = Path(os.environ.get("FASTLOAD_BENCH_HOME", Path.home() / ".cache" / "fastload" / "bench"))
DEFAULT_DATA_DIR = Path(os.environ.get("FASTLOAD_BENCH_DATA", BENCH_HOME / "data"))
PACKAGES = ("fastload", "numpy", "pyarrow", "numba", "mosaicml-streaming", "litdata", "webdataset",
            "torch", "pillow", "scikit-learn")


def machine_info(path: str | os.PathLike) -> dict:
    """Cores, memory, CPU model, the disk holding ``path``, and the package versions."""
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    disk = "?"
    try:
        disk = subprocess.run(["df", "-hT", str(path)], capture_output=True, text=True).stdout.splitlines()[-1]
    except (OSError, IndexError):
        pass
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    return {"cores": os.cpu_count(), "memory_gib": round(mem / 2**30, 1), "cpu": cpu, "disk": disk,
            "kernel": platform.release(), "versions": versions, "command": " ".join([sys.executable] + sys.argv)}


def print_machine(info: dict) -> None:
    print(f"# machine: {info['cores']} cores, {info['memory_gib']} GiB, {info['cpu']}, kernel {info['kernel']}")
    print(f"# disk: {info['disk']}")
    print("# versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    print(f"# command: {info['command']}")


def files_under(path: str | os.PathLike) -> list[Path]:
    p = Path(path)
    if p.is_file():
        return [p]
    return sorted(q for q in p.rglob("*") if q.is_file())


def tree_bytes(path: str | os.PathLike) -> int:
    return sum(q.stat().st_size for q in files_under(path))


def warm(paths: Iterable[str | os.PathLike], chunk: int = 16 << 20) -> int:
    """Read every file under ``paths`` once, sequentially, so it sits in the page cache."""
    buf = bytearray(chunk)
    view = memoryview(buf)
    total = 0
    for root in paths:
        for f in files_under(root):
            with open(f, "rb", buffering=0) as fh:
                while n := fh.readinto(view):
                    total += n
    return total


def flush_and_remove(path: str | os.PathLike) -> None:
    """Remove an output and flush dirty pages, so one run's writeback does not slow the next."""
    shutil.rmtree(path, ignore_errors=True)
    os.sync()


def interleaved(systems: dict[str, Callable[[], dict]], repeats: int,
                before: Callable[[str], None] | None = None, after: Callable[[str], None] | None = None,
                log: bool = True) -> dict[str, list[dict]]:
    """Run A, B, C, A, B, C, ... ``repeats`` times; each call returns a dict of measurements."""
    results: dict[str, list[dict]] = {name: [] for name in systems}
    for r in range(repeats):
        for name, fn in systems.items():
            if before is not None:
                before(name)
            res = fn()
            results[name].append(res)
            if after is not None:
                after(name)
            if log:
                shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in res.items())
                print(f"  [{r + 1}/{repeats}] {name}: {shown}", file=sys.stderr, flush=True)
    return results


def med(values: list[float]) -> float:
    return statistics.median(values)


def fmt_range(values: list[float], digits: int = 3) -> str:
    """``median (min–max)`` with ``digits`` significant figures."""
    m = med(values)
    if len(values) == 1:
        return f"{m:.{digits}g}"
    return f"{m:.{digits}g} ({min(values):.{digits}g}–{max(values):.{digits}g})"


def print_table(headers: list[str], rows: list[list[str]]) -> str:
    """Print (and return) a Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def write_json(path: str | os.PathLike | None, payload: dict) -> None:
    if path:
        Path(path).write_text(json.dumps(payload, indent=1, default=str) + "\n")


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
