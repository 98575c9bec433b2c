"""The machine a benchmark ran on: cores, memory, disk, CPU and package versions (JSON-ready)."""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
from pathlib import Path

PACKAGES = ("fastload", "numpy", "torch", "zstandard", "fsspec", "simplejpeg", "pillow", "matplotlib")


def memory() -> dict[str, float]:
    """Total and available memory in GiB, from /proc/meminfo (sysconf where that is missing)."""
    out = {"total_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                out["available_gib"] = int(line.split()[1]) * 1024 / 2**30
    except OSError:
        pass
    return {k: round(v, 1) for k, v in out.items()}


def disk(path: str | None) -> dict:
    """The filesystem holding ``path``: mount point, type, device, size and free space."""
    if path is not None and path.startswith("file://"):
        path = path[len("file://"):]
    if path is None or "://" in path:
        return {"path": path, "remote": path is not None}
    p = Path(path).resolve()
    best = ("/", "?", "?")
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            dev, mnt, fstype = line.split()[:3]
            if (str(p) == mnt or str(p).startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best[0]):
                best = (mnt, fstype, dev)
    except OSError:
        pass
    info = {"path": str(p), "mount": best[0], "fs": best[1], "device": best[2], "remote": False}
    try:
        st = os.statvfs(p)
        info["size_gb"] = round(st.f_blocks * st.f_frsize / 1e9, 1)
        info["free_gb"] = round(st.f_bavail * st.f_frsize / 1e9, 1)
    except OSError:
        pass
    return info


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def machine_info(path: str | None) -> dict:
    """Everything above in one dict; ``path`` is the dataset whose disk is described."""
    return {"cores": os.cpu_count(), "cpu": cpu_model(), "memory": memory(), "disk": disk(path),
            "os": f"{platform.system()} {platform.release()}", "versions": versions()}
