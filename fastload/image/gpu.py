"""GPU decoding of a whole batch: nvJPEG through torchvision, then crop/resize/flip/normalize in torch.

Used when a pipeline starts with ``DecodeImage(device="cuda")``: the workers then send the stored
bytes, and the consumer process decodes the batch on the GPU with one
``torchvision.io.decode_jpeg(list, device="cuda")`` call. torchvision is imported only here and
only then; where it or CUDA is missing, :func:`resolve_device` warns and the pipeline decodes on
the CPU instead (the workers' libjpeg-turbo path), so the same script runs everywhere.

Boxes and flips come from the same plan as on the CPU (same seed/epoch/index keys); the crop is
the box rounded out to whole pixels and resized with torch's antialiased bilinear
``interpolate``, so results match the CPU path within a few levels, not bit for bit.
"""

from __future__ import annotations

import importlib.util
import warnings
from typing import Callable, Sequence

import numpy as np

from .decode import decode_error, decode_rgb, probe
from .pipeline import ImagePipeline


def gpu_decode_unavailable() -> str | None:
    """Why nvJPEG decoding cannot run in this process, or None when it can."""
    if importlib.util.find_spec("torchvision") is None:
        return "torchvision is not installed"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA device is available"
    return None


def resolve_device(pipeline: ImagePipeline, name: str) -> ImagePipeline:
    """``pipeline`` itself, or its CPU-decoding form (with a warning) when GPU decoding cannot run."""
    if pipeline.decode.device != "cuda":
        return pipeline
    reason = gpu_decode_unavailable()
    if reason is None:
        return pipeline
    warnings.warn(f"field {name!r}: DecodeImage(device='cuda') falls back to CPU decoding in the "
                  f"workers: {reason}", RuntimeWarning, stacklevel=4)
    return pipeline.on_cpu()


def _nvjpeg(payloads: Sequence, device) -> list:
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    data = [torch.frombuffer(bytearray(p), dtype=torch.uint8) for p in payloads]
    return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)


def decode_batch_torch(pipeline: ImagePipeline, payloads: Sequence, indices: np.ndarray, seed: int,
                       epoch: int, device, decode: Callable | None = None, *, field: str = "image",
                       locate: Callable[[int], str] | None = None):
    """The batch tensor of ``pipeline`` for ``payloads`` (dataset records ``indices``) on ``device``.

    ``decode(jpeg_payloads, device)`` returns ``(3, h, w)`` uint8 tensors (default: nvJPEG);
    other formats (PNG, CMYK JPEG, raw) are decoded on the CPU and moved. An image that does not
    decode raises :class:`RecordDecodeError` naming ``field`` and the record (``locate(index)``:
    its shard and place in it).
    """
    import torch
    import torch.nn.functional as F

    decode = decode or _nvjpeg
    where = locate or (lambda i: f"record {i}")
    index = np.asarray(indices, np.int64).tolist()
    probes = []
    for k, data in enumerate(payloads):
        try:
            probes.append(probe(data))
        except Exception as exc:  # every decoder failure of a bad file: ValueError, OSError, SyntaxError...
            raise decode_error(field, index[k], exc, where) from exc
    jpeg = [k for k, p in enumerate(probes) if p.kind == "jpeg"]
    images: list = [None] * len(payloads)
    if jpeg:
        try:
            decoded = decode([payloads[k] for k in jpeg], device)
        except Exception as exc:  # one call for the batch: find the record it failed on
            raise _batch_error(decode, payloads, jpeg, index, device, field, where, exc) from exc
        for k, img in zip(jpeg, decoded):
            images[k] = img
    for k, p in enumerate(probes):
        if images[k] is None:
            try:
                pixels = decode_rgb(payloads[k], p)
            except Exception as exc:
                raise decode_error(field, index[k], exc, where) from exc
            images[k] = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).to(device)
    heights = np.array([p.height for p in probes], np.int64)
    widths = np.array([p.width for p in probes], np.int64)
    boxes, flips = pipeline.plan(heights, widths, seed, epoch, np.asarray(indices, np.int64))
    oh, ow = pipeline.size
    out = torch.empty((len(payloads), 3, oh, ow), dtype=torch.float32, device=device)
    for k, img in enumerate(images):
        y0, x0, y1, x1 = boxes[k].tolist()
        t, l = max(int(np.floor(y0)), 0), max(int(np.floor(x0)), 0)
        b, r = min(int(np.ceil(y1)), img.shape[1]), min(int(np.ceil(x1)), img.shape[2])
        crop = img[None, :, t:b, l:r].float()
        out[k] = F.interpolate(crop, size=(oh, ow), mode="bilinear", antialias=True, align_corners=False)[0]
    out = out.round_().clamp_(0, 255)
    if flips.any():
        sel = torch.from_numpy(np.flatnonzero(flips)).to(device)
        out[sel] = out[sel].flip(-1)
    if pipeline.normalize is not None:
        a, b = (torch.from_numpy(v).to(device).view(1, 3, 1, 1) for v in pipeline.scale_bias)
        out = (out * a + b).to(getattr(torch, pipeline.normalize.dtype))
    else:
        out = out.to(torch.uint8)
    return out if pipeline.layout == "NCHW" else out.permute(0, 2, 3, 1).contiguous()


def _batch_error(decode: Callable, payloads: Sequence, jpeg: list[int], index: list[int], device, field: str,
                 locate: Callable[[int], str], exc: BaseException):
    """The error of a failed batch decode, for the first record that fails alone (the batch's
    failure itself, with every record named, when none does)."""
    for k in jpeg:
        try:
            decode([payloads[k]], device)
        except Exception as one:
            return decode_error(field, index[k], one, locate)
    err = decode_error(field, index[jpeg[0]], exc, locate)
    err.add_note("the batch decode failed, but each of its images decodes alone: records "
                 + ", ".join(locate(index[k]) for k in jpeg))
    return err
