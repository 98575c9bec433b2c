"""Run an image pipeline over one batch of stored images, writing straight into the batch's output.

Per batch: probe every image's header, plan all boxes and flips at once (vectorised), then per
image decode (DCT-reduced when the box allows; for a JPEG, only the window the box's resample
reads, see :mod:`fastload.image.window`) into a reused buffer and call the resample kernel
on its output row. Nothing per image is allocated beyond the decoder's output (and that only for
Pillow-decoded formats). A record that cannot be decoded raises :class:`RecordDecodeError` with
the record's place (``locate``) in a note.
"""

from __future__ import annotations

from time import perf_counter
from typing import Callable

import numpy as np

from .._kernels.resample import MODE_FLOAT, MODE_HALF, MODE_UINT8, resample_into, resample_rows_u8
from ..errors import RecordDecodeError
from . import window
from .decode import Probe, dct_factor, decode_error, decode_rgb, probe
from .pipeline import ImagePipeline

# Boxes of at most this many times the output's rows take the horizontal-first kernel (uint8
# NHWC only): the two kernels break even near 1.05 (see resample_rows_u8).
ROWS_FIRST_MAX = 1.05
# The JPEG output buffer a decoder keeps between batches: 2048 x 2048 RGB covers the decoded size
# of any photo the DCT reduction leaves at most that big; a larger image gets a buffer of its own,
# dropped after it, so one outlier does not pin its size in every worker for the loader's life.
RETAINED_BUFFER_BYTES = 2048 * 2048 * 3


def payload_views(data: np.ndarray, offsets: np.ndarray) -> list[memoryview]:
    """One zero-copy view per record of a gathered variable column."""
    mv = memoryview(data)
    o = offsets.tolist()
    return [mv[o[k]:o[k + 1]] for k in range(len(o) - 1)]


class BatchImageDecoder:
    """One per worker and field: holds the reusable JPEG output buffer."""

    def __init__(self, pipeline: ImagePipeline, field: str):
        self.pipeline = pipeline
        self.field = field
        self.a, self.b = pipeline.scale_bias
        dtype = pipeline.dtype
        self.mode = MODE_UINT8 if dtype == np.uint8 else (MODE_HALF if dtype == np.float16 else MODE_FLOAT)
        self._buffer = np.empty(0, np.uint8)

    def _buf(self, nbytes: int) -> np.ndarray:
        """A buffer of at least ``nbytes``: the retained one, grown (up to RETAINED_BUFFER_BYTES)
        when it is too small, or a one-off for an image larger than that."""
        if nbytes > RETAINED_BUFFER_BYTES:
            return np.empty(nbytes, np.uint8)
        if self._buffer.nbytes < nbytes:
            self._buffer = np.empty(min(max(nbytes, 2 * self._buffer.nbytes), RETAINED_BUFFER_BYTES), np.uint8)
        return self._buffer

    def probe_all(self, payloads: list, indices: np.ndarray, locate: Callable[[int], str]) -> list[Probe]:
        out = []
        for data, i in zip(payloads, indices.tolist()):
            try:
                out.append(probe(data))
            except Exception as exc:  # every decoder failure of a bad file: ValueError, OSError, SyntaxError...
                raise self._error(i, exc, locate) from exc
        return out

    def check(self, data, index: int, seed: int, epoch: int, locate: Callable[[int], str]) -> None:
        """Raise RecordDecodeError when record ``index``'s image does not decode (used by on_error='skip').

        Runs the record through :meth:`run` itself (same box, DCT factor and fast IDCT, into a
        scratch row), so a record that passes here cannot fail the batch that replaces it.
        """
        out = np.empty((1, *self.pipeline.shape), self.pipeline.dtype)
        self.run([data], np.array([index], np.int64), seed, epoch, out, locate)

    def run(self, payloads: list, indices: np.ndarray, seed: int, epoch: int, out: np.ndarray,
            locate: Callable[[int], str], timings: dict[str, float] | None = None) -> None:
        """Decode and transform ``payloads`` (record ``indices``) into ``out`` ``(n, *pipeline.shape)``."""
        probes = self.probe_all(payloads, indices, locate)
        heights = np.fromiter((p.height for p in probes), np.int64, len(probes))
        widths = np.fromiter((p.width for p in probes), np.int64, len(probes))
        boxes, flips = self.pipeline.plan(heights, widths, seed, epoch, indices)
        oh, ow = self.pipeline.size
        rows = out.view(np.uint16) if self.mode == MODE_HALF else out
        flat = None  # (n, H, W * 3): rows the horizontal-first kernel can write
        if self.mode == MODE_UINT8 and self.pipeline.layout == "NHWC" and out.flags.c_contiguous:
            flat = out.reshape(len(out), oh, ow * 3)
        if self.pipeline.layout == "NCHW":
            rows = rows.transpose(0, 2, 3, 1)  # each row seen as (H, W, 3): the kernel writes any strides
        lib = window.library()
        decode_s = resample_s = 0.0
        for k, (data, p) in enumerate(zip(payloads, probes)):
            y0, x0, y1, x1 = boxes[k].tolist()
            f = dct_factor(p.height, p.width, y1 - y0, x1 - x0, oh, ow) if p.kind == "jpeg" else 1
            # libjpeg's scaled output pixel i covers source pixels [i*f, (i+1)*f) (the last one
            # partly, when f does not divide the side), so source coordinates scale by exactly 1/f
            y0, x0, y1, x1 = y0 / f, x0 / f, y1 / f, x1 / f
            t = perf_counter()
            try:
                pixels, (y0, x0, y1, x1) = self._decode(data, p, f, (y0, x0, y1, x1), lib)
            except Exception as exc:
                raise self._error(int(indices[k]), exc, locate) from exc
            t1 = perf_counter()
            if flat is not None and y1 - y0 <= ROWS_FIRST_MAX * oh:
                resample_rows_u8(pixels, y0, x0, y1, x1, bool(flips[k]), flat[k])
            else:
                resample_into(pixels, y0, x0, y1, x1, bool(flips[k]), self.a, self.b, self.mode, rows[k])
            decode_s += t1 - t
            resample_s += perf_counter() - t1
        if timings is not None:
            timings["decode"] = timings.get("decode", 0.0) + decode_s
            timings["resize"] = timings.get("resize", 0.0) + resample_s  # probing and planning: "read"

    def _decode(self, data, p: Probe, f: int, box: tuple, lib: window.WindowLibrary) -> tuple[np.ndarray, tuple]:
        """The pixels the resample of ``box`` (in the image scaled by 1/``f``) reads, and the box in
        them: a JPEG's window where the window decoder can, else the whole (scaled) image."""
        h, w = -(-p.height // f), -(-p.width // f)
        if p.kind == "jpeg" and lib.handle is not None and window.complete(data):
            win = window.window_of(box, *self.pipeline.size, h, w)
            try:
                pixels, top, left = window.decode_window(lib, data, f, win, self._buf((win[2] - win[0]) * w * 3),
                                                         fast=True)
            except ValueError:
                pass  # corrupt, or a JPEG the window decoder cannot read (e.g. lossless): the whole decode decides
            else:
                y0, x0, y1, x1 = box
                return pixels, (y0 - top, x0 - left, y1 - top, x1 - left)
        return decode_rgb(data, p, f, self._buf(h * w * 3), fast=True), box

    def _error(self, index: int, exc: BaseException, locate: Callable[[int], str]) -> RecordDecodeError:
        return decode_error(self.field, index, exc, locate)
