"""``--torch-dataset module:factory``: the user's torch Dataset through torch's DataLoader, then
packed with ``fastload.pack`` and read by ``fastload.DataLoader``, side by side.

Items may be dicts, tuples/lists (fields ``f0, f1, ...``) or single values (field ``value``);
only the first ``samples`` items are used, so a large dataset is sampled rather than converted.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

from torch.utils.data import Dataset as TorchDataset

from ..errors import SourceError


def load_factory(spec: str) -> Callable[[], Any]:
    """Import ``module:factory`` (the current directory is importable, as with ``python -m``)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise SourceError(f"--torch-dataset must be MODULE:FACTORY, not {spec!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any import-time failure of user code is reported in one line
        raise SourceError(f"--torch-dataset {spec!r}: cannot import {module_name!r}: "
                          f"{type(exc).__name__}: {exc}") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise SourceError(f"--torch-dataset {spec!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise SourceError(f"--torch-dataset {spec!r}: {attr!r} is not callable")
    return obj


def make_dataset(spec: str):
    """Call the factory; the result must be a map-style dataset (``__len__`` + ``__getitem__``)."""
    try:
        ds = load_factory(spec)()
    except SourceError:
        raise
    except Exception as exc:
        raise SourceError(f"--torch-dataset {spec!r}: the factory raised {type(exc).__name__}: {exc}") from None
    if not (hasattr(ds, "__len__") and hasattr(ds, "__getitem__")):
        raise SourceError(f"--torch-dataset {spec!r} returned {type(ds).__name__}, not a map-style dataset "
                          "(__len__ and __getitem__)")
    return ds


class AsDicts(TorchDataset):
    """The first ``n`` items of a map-style dataset, each as a dict (what fastload.pack takes)."""

    def __init__(self, ds, n: int):
        self.ds = ds
        self.n = min(n, len(ds))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        if i >= self.n:
            raise IndexError(i)
        item = self.ds[i]
        if isinstance(item, dict):
            return item
        if isinstance(item, (tuple, list)):
            return {f"f{k}": v for k, v in enumerate(item)}
        return {"value": item}


def _rate(loader, seconds: float) -> tuple[float, float]:
    """(samples/s after the first batch, seconds to the first batch) over up to ``seconds``."""
    from .grid import touch

    t0 = time.perf_counter()
    first = t_first = None
    n = 0
    while True:
        got_any = False
        for batch in loader:
            got_any = True
            now = time.perf_counter()
            k = touch(batch) if isinstance(batch, dict) else len(batch[0])
            if t_first is None:
                t_first, first = now, now - t0
            else:
                n += k
            if now - t_first >= seconds:
                return n / max(now - t_first, 1e-9), first
        if not got_any:
            raise SourceError("the torch dataset yields no batches")


def compare(spec: str, out_dir: Path, *, samples: int, batch_size: int, workers: tuple[int, ...],
            seconds: float, tick: Callable[[str], None] = lambda s: None) -> tuple[dict, Path]:
    """Measure torch's DataLoader on the user's dataset, pack it, measure fastload's; returns the
    comparison and the packed dataset's path (benchmarked further like any dataset)."""
    import torch
    from torch.utils.data import DataLoader as TorchLoader

    import fastload

    from ..loader import DataLoader

    user = make_dataset(spec)
    sub = AsDicts(user, samples)
    rows = []
    for w in workers:
        loader = TorchLoader(sub, batch_size=batch_size, shuffle=True, num_workers=w,
                             generator=torch.Generator().manual_seed(0), persistent_workers=w > 0)
        rate, first = _rate(loader, seconds)
        rows.append({"system": "torch DataLoader", "num_workers": w, "samples_s": rate, "first_batch_s": first})
        del loader
        tick(f"torch w{w}")
    t0 = time.perf_counter()
    packed = out_dir / "packed"
    try:
        fastload.pack(sub, packed, overwrite=True, progress=False)
    except Exception as exc:
        raise SourceError(f"--torch-dataset {spec!r}: fastload.pack could not convert its items: {exc}") from None
    pack_s = time.perf_counter() - t0
    for w in workers:
        loader = DataLoader(str(packed), batch_size=batch_size, shuffle="full", num_workers=w,
                            persistent_workers=w > 0, seed=0)
        rate, first = _rate(loader, seconds)
        loader.close()
        rows.append({"system": "fastload.DataLoader", "num_workers": w, "samples_s": rate, "first_batch_s": first})
        tick(f"fastload w{w}")
    best_t = max(r["samples_s"] for r in rows if r["system"] == "torch DataLoader")
    best_f = max(r["samples_s"] for r in rows if r["system"] == "fastload.DataLoader")
    return ({"spec": spec, "samples": len(sub), "batch_size": batch_size, "pack_s": pack_s, "rows": rows,
             "torch_samples_s": best_t, "fastload_samples_s": best_f,
             "speedup": best_f / best_t if best_t > 0 else None}, packed)
