"""Copy batches to a CUDA device ahead of use, on a side stream, so the step never waits on it."""

from __future__ import annotations

import warnings
from typing import Any, Iterator

import torch


def pinned(batches: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Each batch with its tensors in pinned memory (``pin_memory=True``); without CUDA, a warning
    and the batches as they are."""
    if not torch.cuda.is_available():
        warnings.warn("pin_memory=True but no CUDA device is available: batches are not pinned", stacklevel=3)
        yield from batches
        return
    for batch in batches:
        yield {k: (v.pin_memory() if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def to_device_stream(batches: Iterator[dict[str, Any]], device: str | torch.device) -> Iterator[dict[str, Any]]:
    """Yield each batch on ``device``, having started its copy while the previous one was in use.

    Host tensors are first copied into pinned memory (a batch slot is reused once the next batch
    is requested, and only pinned memory copies asynchronously); the host-to-device copy then runs
    on a side stream, and the consumer's stream waits for it only when the batch is handed over.
    Without CUDA this warns once and yields the batches as they are.
    """
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        warnings.warn(f"device={str(device)!r} is not an available CUDA device: batches stay on the CPU",
                      stacklevel=2)
        yield from batches
        return
    stream = torch.cuda.Stream(device)
    pending = None
    for batch in batches:
        with torch.cuda.stream(stream):
            moved = {k: (v.pin_memory().to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v)
                     for k, v in batch.items()}
            ready = torch.cuda.Event()
            ready.record(stream)
        if pending is not None:
            yield _hand_over(*pending)
        pending = (moved, ready)
    if pending is not None:
        yield _hand_over(*pending)


def _hand_over(batch: dict[str, Any], ready: torch.cuda.Event) -> dict[str, Any]:
    current = torch.cuda.current_stream()
    current.wait_event(ready)
    for v in batch.values():
        if isinstance(v, torch.Tensor):
            v.record_stream(current)  # the caching allocator must not reuse it while the step runs
    return batch
