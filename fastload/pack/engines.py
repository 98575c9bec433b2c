"""Recognise a Ray Dataset or a Dask collection handed to ``fastload.pack`` (without importing either)."""

from __future__ import annotations

from typing import Any, Callable


# pack() options that only the single-machine driver has, with their defaults
_DRIVER_ONLY = {"workers": 1, "max_side": None, "image_format": "keep", "delimiter": None, "max_skipped": None,
                "dedup": None, "normalize": None, "filter": None, "drop_invalid": None, "dedup_memory": None,
                "rename": None}


def distributed_pack(source: Any, **driver_options: Any) -> Callable[..., Any] | None:
    """The pack function of the engine that holds ``source``, or None for any other source.
    A driver-only option given for an engine's dataset is a ValueError, not silently ignored."""
    kind = type(source)
    module, name = kind.__module__, kind.__name__
    if module.startswith("ray.data") and name in ("Dataset", "MaterializedDataset"):
        _check(driver_options, "a Ray Dataset", "Ray schedules the write tasks")
        from ..ray import pack_dataset

        return pack_dataset
    if module.startswith("dask") and (name in ("DataFrame", "Bag") or _is_dask_frame(source)):
        _check(driver_options, "a Dask collection", "one Dask task runs per partition")
        from ..dask import pack_collection

        return pack_collection
    return None


def _check(options: dict[str, Any], what: str, why: str) -> None:
    given = sorted(k for k, v in options.items() if k in _DRIVER_ONLY and _differs(v, _DRIVER_ONLY[k]))
    if given:
        raise ValueError(f"{', '.join(given)} apply to a single-machine pack, not to {what} ({why}); "
                         "leave them out")


def _differs(value: Any, default: Any) -> bool:
    # by type first: a filter may be a pyarrow Expression, whose == builds an expression, not a bool
    return value is not default and (type(value) is not type(default) or value != default)


def _is_dask_frame(obj: Any) -> bool:
    # dask-expr's frames are classes of their own modules; their common trait is the partitions API
    return hasattr(obj, "to_delayed") and hasattr(obj, "npartitions")
