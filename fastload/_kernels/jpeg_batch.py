"""A batch's JPEGs, window-decoded and resampled into their batch rows in one call, without the GIL.

Per image, the loop decodes the window the resample reads (``fastload._jpeg``'s libjpeg-turbo
entry, called as a C function, no Python) and runs :mod:`.resample`'s kernel on it into the
image's row. Python probes, plans and calls once per batch. With one Python call per image, the
interpreter took 4.1% of two thread workers' CPU (perf, steady state), holding the GIL the other
worker waited for between its nogil calls, and thread workers delivered 3,522-3,687 images/s
against 3,710-3,785 for process workers; with this kernel, 1.3% and 3,837-3,932 against
3,867-3,912 (alternating runs on 2 cores, docs/images.md).

The C entries are declared by name (``ExternalFunction``) and bound to the addresses the extension
reports (:func:`register`, called when the library is opened), so the kernel stays cacheable.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, types

from .resample import resample_into, resample_rows_u8

DECODE_SYMBOL = "fastload_jpeg_decode_window"
CLOCK_SYMBOL = "fastload_monotonic_s"
# Pixels beyond the resampling filter's reach on each side: 1 for libjpeg's edge upsampling, 1 for
# the filter's rounding of its first and last tap.
EDGE_MARGIN = 2

# int fastload_jpeg_decode_window(api, data, len, out, out_len, job); pointers passed as integers
_decode = types.ExternalFunction(DECODE_SYMBOL, types.int32(types.intp, types.intp, types.int64, types.intp,
                                                            types.int64, types.intp))
_clock = types.ExternalFunction(CLOCK_SYMBOL, types.float64())


def register(decode_address: int, clock_address: int) -> None:
    """Bind the kernel's C entries to ``fastload._jpeg``'s addresses (once per process, before the
    first call of :func:`decode_resample_jpegs`)."""
    import llvmlite.binding as llvm

    llvm.add_symbol(DECODE_SYMBOL, decode_address)
    llvm.add_symbol(CLOCK_SYMBOL, clock_address)


@njit(nogil=True, cache=True)
def window_bounds(y0, x0, y1, x1, out_h, out_w, height, width):
    """The rows and columns ``(top, left, bottom, right)`` of a ``height`` x ``width`` image that
    the resample of box ``(y0, x0, y1, x1)`` to ``out_h`` x ``out_w`` reads, widened by EDGE_MARGIN."""
    reach_y = int(math.ceil(max((y1 - y0) / out_h, 1.0))) + EDGE_MARGIN  # the triangle filter's support
    reach_x = int(math.ceil(max((x1 - x0) / out_w, 1.0))) + EDGE_MARGIN
    return (max(int(math.floor(y0)) - reach_y, 0), max(int(math.floor(x0)) - reach_x, 0),
            min(int(math.ceil(y1)) + reach_y, height), min(int(math.ceil(x1)) + reach_x, width))


@njit(nogil=True, cache=True)
def decode_resample_jpegs(api, data, offsets, todo, sizes, boxes, factors, flips, buffer, a, b, mode, rows,
                          flat, rows_first_max, done, seconds):
    """For each image ``k`` in ``todo``: decode the window of JPEG ``data[offsets[k]:offsets[k+1]]``
    (``sizes[k]`` its height and width) that box ``boxes[k]`` needs, at 1/``factors[k]`` in the DCT
    domain with the fast IDCT, into ``buffer``; resample it into ``rows[k]`` (or, for a box of at
    most ``rows_first_max`` rows, into the uint8 row ``flat[k]`` horizontal pass first) mirrored
    when ``flips[k]``, as :func:`.resample.resample_into`. ``done[k]`` says it went through;
    an image whose window does not decode is left to the caller. ``seconds`` gains the decode and
    the resample time."""
    oh, ow = rows.shape[1], rows.shape[2]
    job = np.empty(6, np.int32)
    base = data.ctypes.data
    for k in todo:
        f = factors[k]
        h, w = -(-sizes[k, 0] // f), -(-sizes[k, 1] // f)  # libjpeg's scaled size: ceil(side / f)
        # a scaled pixel i covers source pixels [i*f, (i+1)*f), so the box scales by exactly 1/f
        y0, x0, y1, x1 = boxes[k, 0] / f, boxes[k, 1] / f, boxes[k, 2] / f, boxes[k, 3] / f
        top, left, bottom, right = window_bounds(y0, x0, y1, x1, oh, ow, h, w)
        job[0], job[1], job[2], job[3], job[4], job[5] = f, 1, top, left, bottom, right
        t0 = _clock()
        status = _decode(api, base + offsets[k], offsets[k + 1] - offsets[k], buffer.ctypes.data, buffer.size,
                         job.ctypes.data)
        t1 = _clock()
        seconds[0] += t1 - t0
        if status != 0:
            continue
        top, left = job[2], job[3]
        pixels = buffer[:(job[4] - top) * (job[5] - left) * 3].reshape(job[4] - top, job[5] - left, 3)
        y0, x0, y1, x1 = y0 - top, x0 - left, y1 - top, x1 - left
        if y1 - y0 <= rows_first_max:
            resample_rows_u8(pixels, y0, x0, y1, x1, flips[k], flat[k])
        else:
            resample_into(pixels, y0, x0, y1, x1, flips[k], a, b, mode, rows[k])
        done[k] = True
        seconds[1] += _clock() - t1
