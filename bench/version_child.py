"""One measured run of ``bench/versions.py``, in a fresh process of the fastload under test.

Run as a script (``PY bench/version_child.py WORKLOAD SOURCE OUT``) by the Python environment
whose fastload is measured: it imports only fastload and the standard library, so the fastload
found is that environment's. A pack is timed the second time it runs, a loader epoch is the
second epoch of the process: the first pays lazy imports, which move between versions (numpy.ma,
pandas), first maps and checksums. Prints one JSON line: wall and CPU seconds, records.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def warm(path: Path) -> None:
    """Read every file under ``path`` once (page cache)."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        with open(f, "rb") as fh:
            while fh.read(16 << 20):
                pass


def main(workload: str, source: str, out: str) -> dict:
    import fastload

    src, dst = Path(source), Path(out)
    if workload == "pack":
        fastload.pack(str(src), str(dst), shard_size="64MB", progress=False, overwrite=True)  # imports, first use
        warm(src)
        wall, cpu = time.perf_counter(), time.process_time()
        report = fastload.pack(str(src), str(dst), shard_size="64MB", progress=False, overwrite=True)
        return {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu, "records": report.records}
    # loader-<shuffle>: one epoch, batches of 64 (tokens) or 256 (records), 0 workers
    if not (dst / "manifest.json").exists():
        fastload.pack(str(src), str(dst), shard_size="64MB", progress=False, overwrite=True)
    warm(dst)
    ds = fastload.open(str(dst))
    batch = 64 if "tokens" in ds.schema else 256
    first = ds.schema.names[0]
    shuffle = workload.split("-", 1)[1]
    for _ in fastload.DataLoader(ds, batch_size=batch, shuffle=shuffle, seed=0):
        pass  # first epoch: lazy imports (np.unique imports numpy.ma), first maps and checksums
    loader = fastload.DataLoader(ds, batch_size=batch, shuffle=shuffle, seed=1)
    wall, cpu = time.perf_counter(), time.process_time()
    n = sum(len(b[first]) for b in loader)
    return {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu, "records": n}


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    print(json.dumps(main(*sys.argv[1:4])))
