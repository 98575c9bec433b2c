"""The frozen, picklable configuration a loader worker starts from."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

from ..image.pipeline import ImagePipeline
from .buffers import without_arenas
from .slots import SlotLayout


@dataclass(frozen=True)
class WorkerConfig:
    """Everything a worker needs to start, picklable: it opens its own dataset from these."""

    dataset_root: str
    dataset_options: dict  # keyword arguments of fastload.open (verify, block_cache)
    fields: tuple[str, ...] | None  # None: every field
    layout: SlotLayout
    ring_name: str = ""  # set by BatchProducer to the name of the ring it creates
    worker_init_fn: Callable | None = None  # called as worker_init_fn(worker_id) in each worker
    seed: int = 0  # a worker process seeds random, NumPy and torch with seed + worker_id
    on_error: str = "raise"  # "skip": unreadable records are replaced (see worker_loop.readable_indices)
    # image field -> pipeline: the worker decodes and transforms it into its slot field
    transforms: dict[str, ImagePipeline] = field(default_factory=dict)
    # a user's collate_fn, run in the worker on the batch's rows (see loader/collate.py): the
    # worker sends its result instead of the gathered columns
    collate_fn: Callable | None = None
    pad: dict = field(default_factory=dict)  # field -> collate.Pad: padded in the worker
    dataset_spec: Any = None  # an opening.Reopen for datasets not opened by URL (packed sequences, mixtures)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dataset_root", os.fspath(self.dataset_root))
        if not isinstance(self.dataset_options, dict):
            raise TypeError(f"dataset_options must be a dict of fastload.open arguments, not "
                            f"{type(self.dataset_options).__name__}")
        object.__setattr__(self, "dataset_options", dict(self.dataset_options))
        if not isinstance(self.layout, SlotLayout):
            raise TypeError(f"layout must be a SlotLayout, not {type(self.layout).__name__}")
        if self.fields is not None:
            object.__setattr__(self, "fields", tuple(self.fields))
            missing = [n for n in without_arenas(self.layout).names if n not in self.fields]
            if missing and self.collate_fn is None:  # with a collate_fn the slot holds its result
                raise ValueError(f"the slot layout has fields {missing} that are not among fields={self.fields}")
        if self.worker_init_fn is not None and not callable(self.worker_init_fn):
            raise TypeError(f"worker_init_fn must be callable or None, not {self.worker_init_fn!r}")
        object.__setattr__(self, "seed", int(self.seed))
        if self.on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', not {self.on_error!r}")
        if not isinstance(self.transforms, dict) or not all(
                isinstance(p, ImagePipeline) for p in self.transforms.values()):
            raise TypeError(f"transforms must map field names to ImagePipeline, not {self.transforms!r}")
        object.__setattr__(self, "transforms", dict(self.transforms))
        for name, pipeline in self.transforms.items():
            if name not in self.layout.names:
                raise ValueError(f"the slot layout has no field {name!r} for its image transforms")
            expected = (pipeline.dtype.str, pipeline.shape)
            got = next((d, s) for n, d, s in self.layout.fields if n == name)
            if got != expected:
                raise ValueError(f"slot field {name!r} is {got}, its image pipeline makes {expected}")
