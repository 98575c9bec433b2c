"""BenchConfig: what one ``fastload bench`` run measures and for how long, validated once."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

SYNTHETIC_KINDS = ("tokens", "images", "records")
SHUFFLES = ("none", "block", "full")
WORKER_TYPES = ("thread", "process")
# A simulated step of 50 ms is a mid-sized model's step on one GPU; the issue's own example.
DEFAULT_STEP_MS = 50.0


def default_workers() -> tuple[int, ...]:
    """0 (the training process itself), 1, and one worker per core: the grid a user first needs."""
    cores = os.cpu_count() or 1
    return tuple(sorted({0, 1, min(cores, 8)}))


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    """One run of ``fastload bench``: the dataset, the grid, the budgets and the outputs.

    ``url`` is a dataset (local path or remote URL); ``synthetic`` generates one first (then
    ``url`` is None); ``torch_dataset`` is ``"module:factory"``. ``run_seconds`` bounds each
    loader run after its first batch; ``repeats`` runs of each measurement give medians.
    """

    url: str | None = None
    synthetic: str | None = None
    synthetic_records: int | None = None
    synthetic_dir: str | None = None
    torch_dataset: str | None = None
    torch_samples: int = 5_000
    workers: tuple[int, ...] = field(default_factory=default_workers)
    batch_sizes: tuple[int, ...] = (64,)
    shuffles: tuple[str, ...] = ("block", "full")
    worker_types: tuple[str, ...] = WORKER_TYPES
    repeats: int = 3
    run_seconds: float = 1.0
    storage_seconds: float = 3.0
    step_ms: float | None = None
    target_samples_per_s: float | None = None
    stall_seconds: float = 2.0
    cold: bool = False
    drop_all_caches: bool = False  # --cold may drop the whole machine's page cache (root only)
    storage_options: dict | None = None
    cache_dir: str | None = None
    cache_limit: str | int | None = None
    quick: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.synthetic is not None and self.synthetic not in SYNTHETIC_KINDS:
            raise ValueError(f"--synthetic must be one of {SYNTHETIC_KINDS}, not {self.synthetic!r}")
        given = sum(x is not None for x in (self.url, self.synthetic, self.torch_dataset))
        if given != 1:
            raise ValueError("give exactly one of a dataset URL, --synthetic KIND or --torch-dataset MODULE:FACTORY")
        if self.torch_dataset is not None and ":" not in self.torch_dataset:
            raise ValueError(f"--torch-dataset must be MODULE:FACTORY (e.g. mypkg.data:make_dataset), "
                             f"not {self.torch_dataset!r}")
        if not self.workers or any(w < 0 for w in self.workers):
            raise ValueError(f"--workers must be counts >= 0, not {list(self.workers)}")
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise ValueError(f"--batch-sizes must be >= 1, not {list(self.batch_sizes)}")
        for name, values, valid in (("--shuffles", self.shuffles, SHUFFLES),
                                    ("--worker-types", self.worker_types, WORKER_TYPES)):
            bad = [v for v in values if v not in valid]
            if bad or not values:
                raise ValueError(f"{name} takes values from {valid}, not {list(values)}")
        if self.repeats < 1:
            raise ValueError(f"--repeats must be >= 1, not {self.repeats}")
        for name in ("run_seconds", "storage_seconds", "stall_seconds"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)!r}")
        if self.step_ms is not None and self.target_samples_per_s is not None:
            raise ValueError("give --step-ms or --target-samples-per-s, not both")
        if self.step_ms is not None and not self.step_ms >= 0:
            raise ValueError(f"--step-ms must be >= 0, not {self.step_ms}")
        if self.target_samples_per_s is not None and not self.target_samples_per_s > 0:
            raise ValueError(f"--target-samples-per-s must be positive, not {self.target_samples_per_s}")
        if self.synthetic_records is not None and self.synthetic_records < 1:
            raise ValueError(f"--records must be >= 1, not {self.synthetic_records}")
        if self.drop_all_caches and not self.cold:
            raise ValueError("--drop-all-caches is a way of measuring --cold: give --cold too")
        if self.torch_samples < 1:
            raise ValueError(f"--torch-samples must be >= 1, not {self.torch_samples}")

    def step_seconds(self, batch_size: int) -> float:
        """The simulated step per batch: ``--step-ms``, or the time a target rate allows a batch."""
        if self.target_samples_per_s is not None:
            return batch_size / self.target_samples_per_s
        return (DEFAULT_STEP_MS if self.step_ms is None else self.step_ms) / 1e3
