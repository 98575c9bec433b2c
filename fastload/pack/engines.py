"""Recognise a Ray Dataset or a Dask collection handed to ``fastload.pack`` (without importing either)."""

from __future__ import annotations

from typing import Any, Callable


def distributed_pack(source: Any) -> Callable[..., Any] | None:
    """The pack function of the engine that holds ``source``, or None for any other source."""
    kind = type(source)
    module, name = kind.__module__, kind.__name__
    if module.startswith("ray.data") and name in ("Dataset", "MaterializedDataset"):
        from ..ray import pack_dataset

        return pack_dataset
    if module.startswith("dask") and (name in ("DataFrame", "Bag") or _is_dask_frame(source)):
        from ..dask import pack_collection

        return pack_collection
    return None


def _is_dask_frame(obj: Any) -> bool:
    # dask-expr's frames are classes of their own modules; their common trait is the partitions API
    return hasattr(obj, "to_delayed") and hasattr(obj, "npartitions")
