"""Run an image pipeline over one batch of stored images, writing straight into the batch's output.

Per batch: read every image's header, plan all boxes and flips at once (vectorised), then decode
(DCT-reduced when the box allows; for a JPEG, only the window the box's resample reads, see
:mod:`fastload.image.window`) and resample each image into its output row. JPEGs the window
decoder takes go through one native call for the whole batch
(:func:`fastload._kernels.jpeg_batch.decode_resample_jpegs`, no GIL, no Python per image); the
others (PNG, CMYK, truncated or refused JPEGs, raw pixels, or no libjpeg-turbo to open) one by one,
into a reused buffer. A record that cannot be decoded raises :class:`RecordDecodeError` with the
record's place (``locate``) in a note.
"""

from __future__ import annotations

from time import perf_counter
from typing import Callable

import numpy as np

from .._kernels.jpeg_batch import decode_resample_jpegs
from .._kernels.resample import MODE_FLOAT, MODE_HALF, MODE_UINT8, resample_into, resample_rows_u8
from ..errors import RecordDecodeError
from . import window
from .decode import Probe, dct_factors, decode_error, decode_rgb, probe
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
        self._no_flat = np.empty((1, 1, 3), np.uint8)  # the batch kernel's flat rows when they do not apply

    def _buf(self, nbytes: int) -> np.ndarray:
        """A buffer of at least ``nbytes``: the retained one, grown (up to RETAINED_BUFFER_BYTES)
        when it is too small, or a one-off for an image larger than that."""
        if nbytes > RETAINED_BUFFER_BYTES:
            return np.empty(nbytes, np.uint8)
        if self._buffer.nbytes < nbytes:
            self._buffer = np.empty(min(max(nbytes, 2 * self._buffer.nbytes), RETAINED_BUFFER_BYTES), np.uint8)
        return self._buffer

    def check(self, data, index: int, seed: int, epoch: int, locate: Callable[[int], str]) -> None:
        """Raise RecordDecodeError when record ``index``'s image does not decode (used by on_error='skip').

        Runs the record through :meth:`run` itself (same box, DCT factor and fast IDCT, into a
        scratch row), so a record that passes here cannot fail the batch that replaces it.
        """
        out = np.empty((1, *self.pipeline.shape), self.pipeline.dtype)
        payload = np.frombuffer(bytes(data), np.uint8)
        self.run(payload, np.array([0, len(payload)], np.int64), np.array([index], np.int64), seed, epoch, out,
                 locate)

    def run(self, data: np.ndarray, offsets: np.ndarray, indices: np.ndarray, seed: int, epoch: int,
            out: np.ndarray, locate: Callable[[int], str], timings: dict[str, float] | None = None) -> None:
        """Decode and transform the images ``data[offsets[k]:offsets[k + 1]]`` (record ``indices[k]``)
        into ``out`` ``(n, *pipeline.shape)``."""
        data = np.ascontiguousarray(data, np.uint8).reshape(-1)
        offsets = np.ascontiguousarray(offsets, np.int64)
        lib = window.library()
        sizes, probes = self._sizes(data, offsets, indices, locate, lib)
        boxes, flips = self.pipeline.plan(sizes[:, 0], sizes[:, 1], seed, epoch, indices)
        oh, ow = self.pipeline.size
        factors = dct_factors(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1], oh, ow)
        for k, p in enumerate(probes):
            if p is not None and p.kind != "jpeg":
                factors[k] = 1
        rows = out.view(np.uint16) if self.mode == MODE_HALF else out
        flat = None  # (n, H, W * 3): rows the horizontal-first kernel can write
        if self.mode == MODE_UINT8 and self.pipeline.layout == "NHWC" and out.flags.c_contiguous:
            flat = out.reshape(len(out), oh, ow * 3)
        if self.pipeline.layout == "NCHW":
            rows = rows.transpose(0, 2, 3, 1)  # each row seen as (H, W, 3): the kernel writes any strides
        rows_first_max = ROWS_FIRST_MAX * oh if flat is not None else -1.0
        done = np.zeros(len(probes), bool)
        seconds = np.zeros(2)  # decode, resample
        todo = np.flatnonzero([p is None for p in probes])  # the JPEGs the batch kernel takes
        if len(todo):
            # the whole scaled image bounds its window; larger ones take the one-by-one path's one-off buffer
            need = -(-sizes[todo, 0] // factors[todo]) * -(-sizes[todo, 1] // factors[todo]) * 3
            fits = need <= RETAINED_BUFFER_BYTES
            if fits.any():
                decode_resample_jpegs(lib.api, data, offsets, todo[fits], sizes, boxes, factors, flips,
                                      self._buf(int(need[fits].max())), self.a, self.b, self.mode, rows,
                                      flat if flat is not None else self._no_flat, rows_first_max, done, seconds)
        for k in np.flatnonzero(~done).tolist():
            p = probes[k] or Probe(int(sizes[k, 0]), int(sizes[k, 1]), "jpeg")
            f = int(factors[k])
            y0, x0, y1, x1 = (boxes[k] / f).tolist()  # a scaled pixel i covers source pixels [i*f, (i+1)*f)
            t = perf_counter()
            try:
                pixels, (y0, x0, y1, x1) = self._decode(self._payload(data, offsets, k), p, f, (y0, x0, y1, x1),
                                                        lib)
            except Exception as exc:
                raise self._error(int(indices[k]), exc, locate) from exc
            t1 = perf_counter()
            if y1 - y0 <= rows_first_max:
                resample_rows_u8(pixels, y0, x0, y1, x1, bool(flips[k]), flat[k])
            else:
                resample_into(pixels, y0, x0, y1, x1, bool(flips[k]), self.a, self.b, self.mode, rows[k])
            seconds += t1 - t, perf_counter() - t1
        if timings is not None:
            decode_s, resample_s = seconds.tolist()
            timings["decode"] = timings.get("decode", 0.0) + decode_s
            timings["resize"] = timings.get("resize", 0.0) + resample_s  # probing and planning: "read"

    def _sizes(self, data: np.ndarray, offsets: np.ndarray, indices: np.ndarray, locate: Callable[[int], str],
               lib: window.WindowLibrary) -> tuple[np.ndarray, list[Probe | None]]:
        """Every image's (height, width), and its Probe where the batch kernel will not decode it
        (None: a JPEG the kernel takes, read by one C call for the batch)."""
        n = len(offsets) - 1
        sizes = np.full((n, 2), -1, np.int64)
        if lib.api is not None:
            lib.probe(lib.handle, data, offsets, sizes)
        probes: list[Probe | None] = [None] * n
        for k in np.flatnonzero(sizes[:, 0] < 0).tolist():
            try:
                p = probes[k] = probe(self._payload(data, offsets, k))
            except Exception as exc:  # every decoder failure of a bad file: ValueError, OSError, SyntaxError...
                raise self._error(int(indices[k]), exc, locate) from exc
            sizes[k] = p.height, p.width
        return sizes, probes

    @staticmethod
    def _payload(data: np.ndarray, offsets: np.ndarray, k: int) -> memoryview:
        return memoryview(data)[int(offsets[k]):int(offsets[k + 1])]

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
