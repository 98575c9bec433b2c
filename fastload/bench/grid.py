"""The loader grid: fastload.DataLoader's samples/s, MB/s and time to first batch per setting.

Each run builds a fresh loader (so time to first batch includes starting its workers), consumes
batches the way a training loop does (touch and drop) for ``seconds`` after the first batch,
over as many epochs as that takes, and reports the rate after the first batch. MB/s counts the
dataset's stored bytes per record, so it compares directly with the storage read bandwidth.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np


@dataclass(frozen=True, kw_only=True)
class Setting:
    """One point of the grid (worker_type is moot with 0 workers and is then "thread")."""

    num_workers: int
    batch_size: int
    shuffle: str
    worker_type: str
    decoded: bool = False  # image fields decoded and augmented in the loader (IMAGE_TRANSFORMS)

    @property
    def label(self) -> str:
        kind = "" if self.num_workers == 0 else f" {self.worker_type}"
        return f"w{self.num_workers}{kind} b{self.batch_size} {self.shuffle}" + (" +decode" if self.decoded else "")

    def as_dict(self) -> dict[str, Any]:
        return {"num_workers": self.num_workers, "batch_size": self.batch_size, "shuffle": self.shuffle,
                "worker_type": self.worker_type, "decoded": self.decoded}


def settings(workers, batch_sizes, shuffles, worker_types) -> list[Setting]:
    """The grid, without duplicates: worker types only vary where there are workers."""
    out = []
    for w, b, s in itertools.product(workers, batch_sizes, shuffles):
        for t in (worker_types if w > 0 else ("thread",)):
            out.append(Setting(num_workers=w, batch_size=b, shuffle=s, worker_type=t))
    return out


IMAGE_TRANSFORMS = "RandomResizedCrop(224), RandomHorizontalFlip()"  # ImageNet training's pair


def image_transforms(ds) -> dict | None:
    """``transforms=`` decoding every image field as ImageNet training does, or None without the
    ``images`` extra (simplejpeg and Pillow; image fields then stay encoded bytes)."""
    from ..image import RandomHorizontalFlip, RandomResizedCrop
    from ..image.decode import missing_decoders

    if missing_decoders():
        return None
    return {f.name: [RandomResizedCrop(224), RandomHorizontalFlip()] for f in ds.schema if f.kind == "image"} or None


def decoded_settings(grid: list[Setting]) -> list[Setting]:
    """The grid's worker counts and types at its first batch size and shuffle, with decoding."""
    first = grid[0]
    seen = {(s.num_workers, s.worker_type) for s in grid}
    return [Setting(num_workers=w, batch_size=first.batch_size, shuffle=first.shuffle, worker_type=t, decoded=True)
            for w, t in sorted(seen)]


def make_loader(ds, setting: Setting, *, seed: int = 0, fields=None, persistent: bool = True):
    from ..loader import DataLoader

    extra = {"transforms": image_transforms(ds)} if setting.decoded else {}
    return DataLoader(ds, batch_size=setting.batch_size, shuffle=setting.shuffle,
                      num_workers=setting.num_workers, worker_type=setting.worker_type, seed=seed,
                      persistent_workers=persistent and setting.num_workers > 0, fields=fields, **extra)


def touch(batch: dict) -> int:
    """Consume a batch minimally (its length and one value), as every measured loop does."""
    value = next(iter(batch.values()))
    n = len(value)
    last = value[-1]
    if hasattr(last, "reshape"):
        last.reshape(-1)[:1].tolist()
    return n


def run_one(ds, setting: Setting, seconds: float, *, seed: int = 0,
            step: Callable[[], None] | None = None) -> dict[str, Any]:
    """One measured run of ``setting``; with ``step`` the loop also simulates a training step and
    the result holds the measured data stall (waits after the first batch / wall time)."""
    t0 = time.perf_counter()
    loader = make_loader(ds, setting, seed=seed)
    samples = batches = 0
    first = None
    wait_s = 0.0
    try:
        t_first = None
        epoch = 0
        while True:
            it = iter(loader)
            t_ask = time.perf_counter()
            empty = True
            for batch in it:
                empty = False
                got = time.perf_counter()
                n = touch(batch)
                if t_first is None:
                    t_first, first = got, got - t0
                else:
                    samples += n
                    batches += 1
                    wait_s += got - t_ask
                if step is not None:
                    step()
                if got - t_first >= seconds:
                    break
                t_ask = time.perf_counter()
            else:
                if empty:
                    raise ValueError(f"the loader yields no batches ({len(ds)} records, {setting.label})")
                epoch += 1
                loader.set_epoch(epoch)
                continue
            break
        wall = time.perf_counter() - t_first
    finally:
        loader.close()
    # a dataset of one batch per epoch: the rate is all we can say after the first batch
    wall = max(wall, 1e-9)
    out = {"first_batch_s": first, "samples": samples, "batches": batches, "seconds": wall,
           "samples_s": samples / wall, "epochs": epoch + 1}
    if step is not None:
        out["stall_pct"] = min(100.0, 100.0 * wait_s / wall)
        out["wait_s"] = wait_s
    return out


def warm_up(ds, setting: Setting) -> None:
    """One untimed batch, so one-time costs (torch import, JIT compiles, shard maps and checksums)
    land on no measured setting: on the first run they added 1.6 s to a first batch of 6 ms."""
    loader = make_loader(ds, Setting(num_workers=0, batch_size=setting.batch_size, shuffle=setting.shuffle,
                                     worker_type="thread", decoded=setting.decoded))
    try:
        touch(next(iter(loader)))
    finally:
        loader.close()


def measure(ds, grid: list[Setting], *, seconds: float, repeats: int, bytes_per_record: float,
            storage_mb_s: float | None, tick: Callable[[str], None] = lambda label: None) -> list[dict]:
    """All settings, interleaved (A, B, C, A, B, C...) so drift hits them alike; medians."""
    runs: dict[Setting, list[dict]] = {s: [] for s in grid}
    for _ in range(repeats):
        for s in grid:
            runs[s].append(run_one(ds, s, seconds))
            tick(s.label)
    out = []
    for s, rs in runs.items():
        rate = float(np.median([r["samples_s"] for r in rs]))
        mb_s = rate * bytes_per_record / 1e6
        out.append({**s.as_dict(), "label": s.label, "samples_s": rate, "mb_s": mb_s,
                    "first_batch_s": float(np.median([r["first_batch_s"] for r in rs])),
                    "fraction_of_storage": (mb_s / storage_mb_s) if storage_mb_s else None,
                    "runs": [r["samples_s"] for r in rs]})
    return out

