"""The data stall: the % of a simulated training step's time spent waiting for the next batch.

The step is a sleep, not a busy loop: while a GPU computes, the training process only waits on
it, leaving its CPU core to the loader, which is what a real step does to the CPU. The first
batch is left out (its wait is the time to first batch, reported apart).
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from .grid import Setting, run_one


def measure(ds, setting: Setting, *, step_s: float, seconds: float, repeats: int,
            tick: Callable[[], None] = lambda: None) -> dict:
    """Median stall % of ``setting`` under a ``step_s`` step, and the rate it sustained."""
    runs = []
    for _ in range(repeats):
        runs.append(run_one(ds, setting, seconds, step=lambda: time.sleep(step_s)))
        tick()
    stall = [r["stall_pct"] for r in runs]
    return {"setting": {**setting.as_dict(), "label": setting.label}, "step_ms": step_s * 1e3,
            "step_samples_s": setting.batch_size / step_s if step_s > 0 else None,
            "stall_pct": float(np.median(stall)), "runs_pct": stall,
            "samples_s": float(np.median([r["samples_s"] for r in runs]))}
