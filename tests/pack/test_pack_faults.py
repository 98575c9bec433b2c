"""Pack under faults, with real processes (issue 10's r6): a full disk with workers, and the main
process killed while its workers run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and tmpfs")]

SLOW_PACK = textwrap.dedent("""
    import sys, time
    import numpy as np
    import fastload
    from fastload.format.schema import Schema
    from fastload.pack.sources.base import Chunk, Source, SourceInfo

    class Slow(Source):
        description = "slow"
        def info(self):
            return SourceInfo(schema=Schema.parse("v:int64"))
        def segments(self):
            return list(range(2000))
        def read(self, segment):
            time.sleep(0.05)
            yield Chunk({"v": np.arange(10)}, "slow", segment * 10)

    if __name__ == "__main__":
        fastload.pack(Slow(), sys.argv[1], workers=2, progress=False)
""")


def _children(pid: int) -> set[int]:
    kids: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids |= {int(k) for k in (task / "children").read_text().split()}
        except OSError:
            pass
    return kids


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie no one has reaped yet is dead too


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killing_pack_ends_its_workers(tmp_path, sig):
    script = tmp_path / "slow_pack.py"
    script.write_text(SLOW_PACK)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "out")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 60
        while len(workers) < 2 and time.monotonic() < deadline and proc.poll() is None:
            workers = _children(proc.pid)
            time.sleep(0.05)
        assert len(workers) == 2, f"the pack did not start 2 workers: {workers}"
        proc.send_signal(sig)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(_running(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [w for w in workers if _running(w)], "pack workers outlived their parent"
    finally:
        proc.kill()
        for w in workers:
            try:
                os.kill(w, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture()
def small_tmpfs(tmp_path):
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_with_workers_is_a_clear_storage_error(tmp_path, small_tmpfs):
    src = tmp_path / "src"
    src.mkdir()
    for k in range(4):
        with open(src / f"part-{k}.jsonl", "w") as f:
            for i in range(6000):
                f.write(json.dumps({"id": i, "text": f"{k} {i} " * 20}) + "\n")
    out = small_tmpfs / "out"
    proc = subprocess.run([sys.executable, "-m", "fastload._cli", "pack", str(src), str(out), "--workers", "2",
                           "--shard-size", "512KB", "--no-progress"], capture_output=True, text=True, timeout=100)
    assert proc.returncode == 7, proc.stderr
    assert "Traceback" not in proc.stderr and "BufferError" not in proc.stderr
    assert "no space left" in proc.stderr and str(out) in proc.stderr
    # finished shards and the journal stay for a resume; no worker spill or temporary file is left
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".") and p.name != ".fastload-pack.json"]
    assert leftovers == []
