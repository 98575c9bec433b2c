"""Shared-memory segments of loaders killed with their process group are swept by the next loader,
and only those (issue 10, defect 10): another live process's, another pid namespace's, another
user's and other programs' segments stay."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import fastload
from fastload.loader.segments import new_name, owner_is_dead, pid_namespace, start_time, sweep_dead
from fastload.loader.slots import SlotLayout, SlotRing

pytestmark = [pytest.mark.timeout(90),
              pytest.mark.skipif(not os.path.isdir("/proc/self/ns") or not os.path.isdir("/dev/shm"),
                                 reason="owners are named through /proc, segments listed in /dev/shm")]


def test_a_name_names_this_process():
    pid, started, ns, rand = new_name().removeprefix("fastload-").split("-")
    assert int(pid) == os.getpid() and int(started) == start_time(os.getpid()) and int(ns) == pid_namespace()
    assert len(rand) == 12 and not owner_is_dead(new_name())


def test_only_provably_dead_owners_count_as_dead():
    ns = pid_namespace()
    me, started = os.getpid(), start_time(os.getpid())
    free_pid = max(int(p) for p in os.listdir("/proc") if p.isdigit()) + 100_000
    assert start_time(free_pid) is None
    assert owner_is_dead(f"fastload-{free_pid}-{started}-{ns}-0123456789ab")  # the pid is free
    assert owner_is_dead(f"fastload-{me}-{started + 1}-{ns}-0123456789ab")  # the pid was reused
    assert not owner_is_dead(f"fastload-{me}-{started}-{ns}-0123456789ab")  # alive
    assert not owner_is_dead(f"fastload-{free_pid}-{started}-{ns + 1}-0123456789ab")  # another namespace
    assert not owner_is_dead(f"fastload-{free_pid}-0123456789ab")  # an older name: the owner is unknown
    assert not owner_is_dead(f"fastload-{free_pid}-{started}-{ns}-0123456789ab-x")
    assert not owner_is_dead(f"other-{free_pid}-{started}-{ns}-0123456789ab")


def test_the_sweep_removes_only_dead_owners_segments_of_this_user(tmp_path):
    ns, started = pid_namespace(), start_time(os.getpid())
    free_pid = max(int(p) for p in os.listdir("/proc") if p.isdigit()) + 100_000
    dead = f"fastload-{free_pid}-{started}-{ns}-0123456789ab"
    kept = {
        "live": f"fastload-{os.getpid()}-{started}-{ns}-0123456789ab",
        "other namespace": f"fastload-{free_pid}-{started}-{ns + 1}-0123456789ab",
        "old name": f"fastload-{free_pid}-0123456789ab",
        "not ours": f"psm_{free_pid}",
    }
    for name in [dead, *kept.values()]:
        (tmp_path / name).write_bytes(b"x")
    link = f"fastload-{free_pid + 1}-{started}-{ns}-0123456789ab"
    (tmp_path / link).symlink_to(tmp_path / "not ours")  # a link is never followed nor removed
    other_user = f"fastload-{free_pid + 2}-{started}-{ns}-0123456789ab"
    (tmp_path / other_user).write_bytes(b"x")
    if os.geteuid() == 0:  # root may give it away; otherwise it is ours and swept
        os.chown(tmp_path / other_user, 65534, -1)
    swept = sweep_dead(str(tmp_path))
    expected = {dead} | (set() if os.geteuid() == 0 else {other_user})
    assert set(swept) == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(set(kept.values()) | {link, other_user} - expected)


def _killed_group(code: str) -> list[str]:
    """Run ``code`` (which prints ``ready`` once its segments exist) in a new session, then SIGKILL
    the whole process group, resource tracker and workers included; returns the segments it left."""
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        left = sorted(n for n in os.listdir("/dev/shm") if n.startswith(f"fastload-{proc.pid}-"))
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    time.sleep(0.2)
    return left


def test_a_loader_killed_with_its_process_group_is_swept_by_the_next(tmp_path):
    """The r9 reproduction: a DataLoader with process workers, the whole group SIGKILLed (as a
    scheduler or the OOM killer does): its slots stay in /dev/shm until a new loader starts."""
    root = tmp_path / "ds"
    with fastload.Writer(root, "tokens:uint16[512]") as w:
        w.write_batch({"tokens": np.zeros((2048, 512), np.uint16)})
    left = _killed_group(f"""
        import time, fastload
        it = iter(fastload.DataLoader({str(root)!r}, batch_size=256, num_workers=2, worker_type="process"))
        next(it)
        print("ready", flush=True)
        time.sleep(60)
    """)
    # the killed group left its slots (another fastload process on this machine may sweep them
    # first, with the same sweep: only their absence after a new loader starts is asserted)
    assert left
    mine = SlotRing(SlotLayout(4, (("x", "<i8", ()),)), 2)  # a new loader's slots: the sweep runs first
    try:
        assert not any(os.path.exists(f"/dev/shm/{n}") for n in left)
        assert os.path.exists(f"/dev/shm/{mine.name}")
    finally:
        mine.close()
    assert not os.path.exists(f"/dev/shm/{mine.name}")


def test_a_live_loaders_slots_are_kept(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys
        from fastload.loader.slots import SlotLayout, SlotRing
        ring = SlotRing(SlotLayout(4, (("x", "<i8", ()),)), 2)
        print(ring.name, flush=True)
        sys.stdin.readline()  # until the test is done
        ring.close()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        name = proc.stdout.readline().strip()
        assert Path(f"/dev/shm/{name}").exists()
        assert name not in sweep_dead()
        assert Path(f"/dev/shm/{name}").exists()
    finally:
        proc.communicate("\n", timeout=30)
    assert not Path(f"/dev/shm/{name}").exists()
