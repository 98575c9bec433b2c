"""Crop + antialiased resize + flip + normalize of one decoded image, written into its batch row.

One call turns a decoded ``(h, w, 3)`` uint8 image into one output row of the batch slot: the
source box ``(y0, x0, y1, x1)`` (float, source pixels) is resampled to the row's ``(H, W)`` with a
triangle filter whose support grows with the downscale factor (Pillow's antialiased BILINEAR:
same coefficients, float accumulation instead of its 22-bit fixed point and without its uint8
rounding between the two passes, so results differ from Pillow by at most a few levels), mirrored
when ``flip``, and stored as ``round(v) * a[c] + b[c]`` (``a = 1, b = 0`` for uint8 output;
``a = 1/(255 std)``, ``b = -mean/std`` for normalized output). ``out`` is any ``(H, W, 3)`` view
(an NCHW row passed transposed works too); float16 rows go through their uint16 bits, since Numba
cannot store float16.

The vertical pass runs first, one output row at a time over the box's columns as one flat
contiguous loop (SIMD-friendly), into a one-row scratch; the horizontal pass reads that row and,
for uint8 output, rounds and stores in the same loop. Measured on this project's 2-core VM (one
core, random pixels): 0.22 ms for a 350x350 box -> 224x224 uint8 (0.35 ms for a 375x375 box of
china.jpg where Pillow's ``resize(box=...)`` took 0.67 ms, before the unsigned indexing); the
vertical pass is ~0.05 ms of it.
Tried and slower: a transposed intermediate (whole image or 16-row blocks) to vectorise the
horizontal pass along columns (0.55-0.63 ms: the transposing stores cost more than they save).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, uint64

MODE_UINT8, MODE_FLOAT, MODE_HALF = 0, 1, 2


@njit(nogil=True, cache=True)
def _coeffs(in_size, lo, hi, out_size):
    """Pillow's ``precompute_coeffs`` for the triangle filter: first source index, tap count and
    normalized weights of every output position."""
    scale = (hi - lo) / out_size
    filterscale = max(scale, 1.0)
    support = filterscale  # the triangle filter's support is 1 at scale 1
    ksize = int(math.ceil(support)) * 2 + 1
    first = np.empty(out_size, np.int64)
    count = np.empty(out_size, np.int64)
    weights = np.zeros((out_size, ksize), np.float32)
    inv = 1.0 / filterscale
    for i in range(out_size):
        center = lo + (i + 0.5) * scale
        xmin = int(center - support + 0.5)  # C's truncating cast, as Pillow's
        if xmin < 0:
            xmin = 0
        xmax = int(center + support + 0.5)
        if xmax > in_size:
            xmax = in_size
        n = xmax - xmin
        if n < 1:  # a box entirely outside the image: take the nearest edge pixel
            xmin = min(max(int(center), 0), in_size - 1)
            n = 1
            weights[i, 0] = 1.0
        else:
            total = 0.0
            for k in range(n):
                t = abs((k + xmin - center + 0.5) * inv)
                w = 1.0 - t if t < 1.0 else 0.0
                weights[i, k] = w
                total += w
            if total != 0.0:
                for k in range(n):
                    weights[i, k] /= total
        first[i] = xmin
        count[i] = n
    return first, count, weights


@njit(nogil=True, cache=True)
def _half_bits(x):
    """IEEE binary16 bits of ``x``, rounded to nearest even (Numba has no float16 stores)."""
    sign = 0x8000 if x < 0 else 0
    a = abs(x)
    if a != a:
        return 0x7E00
    if a >= 65520.0:
        return sign | 0x7C00
    if a < 6.103515625e-05:  # subnormal: a multiple of 2**-24 (a carry into 0x400 is the right normal)
        return sign | int(round(a * 16777216.0))
    m, e = math.frexp(a)  # a = m * 2**e, 0.5 <= m < 1
    mant = int(round((2.0 * m - 1.0) * 1024.0))  # 1024 carries into the exponent, as it should
    return sign | (((e - 1 + 15) << 10) + mant)


@njit(nogil=True, cache=True, fastmath=True, inline="always")
def _taps_rgb(row, p, xw, ox, count):
    """One output pixel of the horizontal pass: ``count`` taps over an interleaved RGB row from
    index ``p``. The index is unsigned: Numba wraps every signed index that could be negative,
    and those checks made the whole kernel 1.4x slower (0.33 -> 0.23 ms for a 350-px box)."""
    v0 = v1 = v2 = np.float32(0.0)
    q = uint64(p)
    for k in range(count):
        wk = xw[ox, k]
        v0 += wk * np.float32(row[q])
        v1 += wk * np.float32(row[q + uint64(1)])
        v2 += wk * np.float32(row[q + uint64(2)])
        q += uint64(3)
    return v0, v1, v2


@njit(nogil=True, cache=True, fastmath=True)
def resample_into(src, y0, x0, y1, x1, flip, a, b, mode, out):
    """Resample box ``[y0, y1) x [x0, x1)`` of ``src`` (h, w, C uint8) into ``out`` (H, W, C).

    ``mode``: MODE_UINT8 (``out`` uint8), MODE_FLOAT (float32) or MODE_HALF (uint16 holding
    float16 bits); see the module docstring.
    """
    h, w, nc = src.shape
    oh, ow = out.shape[0], out.shape[1]
    yfirst, ycount, yw = _coeffs(h, y0, y1, oh)
    xfirst, xcount, xw = _coeffs(w, x0, x1, ow)
    xlo = xfirst[0]
    xhi = xfirst[ow - 1] + xcount[ow - 1]
    for i in range(ow):
        xlo = min(xlo, xfirst[i])
        xhi = max(xhi, xfirst[i] + xcount[i])
    span = (xhi - xlo) * nc
    row = np.empty(span, np.float32)  # one source-width row after the vertical pass
    orow = np.empty(ow * nc, np.float32)  # one output row, rounded and clamped
    flat = src.reshape(h, w * nc)
    base = xlo * nc
    xstart = (xfirst - xlo) * nc
    for oy in range(oh):
        # Vertical pass over exact-length slices, two taps per sweep: indexing a whole row at
        # base + j kept LLVM from vectorising (negative-index checks): 0.63 ms -> 0.05 ms a box.
        y, n = yfirst[oy], ycount[oy]
        s0 = flat[y, base:base + span]
        w0 = yw[oy, 0]
        for j in range(span):
            row[j] = w0 * s0[j]
        k = 1
        while k + 1 < n:
            s1 = flat[y + k, base:base + span]
            s2 = flat[y + k + 1, base:base + span]
            w1, w2 = yw[oy, k], yw[oy, k + 1]
            for j in range(span):
                row[j] += w1 * s1[j] + w2 * s2[j]
            k += 2
        if k < n:
            s1 = flat[y + k, base:base + span]
            w1 = yw[oy, k]
            for j in range(span):
                row[j] += w1 * s1[j]
        # Horizontal pass: a few taps per output pixel, three channel accumulators. uint8 output
        # is rounded and stored in the same loop: a separate store pass cost 0.1 ms of 0.41.
        if nc == 3 and mode == MODE_UINT8:
            uy = uint64(oy)
            for ox in range(ow):
                v0, v1, v2 = _taps_rgb(row, xstart[ox], xw, ox, xcount[ox])
                tx = uint64((ow - 1 - ox) if flip else ox)  # unsigned: no wraparound checks
                # v + 0.5 clamped to [0, 255] first, so the truncating cast rounds to nearest
                out[uy, tx, 0] = np.uint8(min(max(v0 + np.float32(0.5), np.float32(0.0)), np.float32(255.0)))
                out[uy, tx, 1] = np.uint8(min(max(v1 + np.float32(0.5), np.float32(0.0)), np.float32(255.0)))
                out[uy, tx, 2] = np.uint8(min(max(v2 + np.float32(0.5), np.float32(0.0)), np.float32(255.0)))
            continue
        if nc == 3:
            for ox in range(ow):
                v0, v1, v2 = _taps_rgb(row, xstart[ox], xw, ox, xcount[ox])
                tx = 3 * ((ow - 1 - ox) if flip else ox)
                orow[tx] = v0
                orow[tx + 1] = v1
                orow[tx + 2] = v2
        else:
            for ox in range(ow):
                tx = nc * ((ow - 1 - ox) if flip else ox)
                for c in range(nc):
                    v = np.float32(0.0)
                    for k in range(xcount[ox]):
                        v += xw[ox, k] * row[xstart[ox] + k * nc + c]
                    orow[tx + c] = v
        for j in range(ow * nc):  # round to the nearest level in [0, 255], branch-free
            orow[j] = min(max(math.floor(orow[j] + np.float32(0.5)), np.float32(0.0)), np.float32(255.0))
        # one store loop per output kind: a branch per pixel cost 2x the whole kernel
        if mode == MODE_UINT8:
            for x in range(ow):
                for c in range(nc):
                    out[oy, x, c] = np.uint8(orow[x * nc + c])
        elif mode == MODE_HALF:
            for x in range(ow):
                for c in range(nc):
                    out[oy, x, c] = _half_bits(orow[x * nc + c] * a[c] + b[c])
        else:
            for x in range(ow):
                for c in range(nc):
                    out[oy, x, c] = orow[x * nc + c] * a[c] + b[c]



@njit(nogil=True, cache=True, fastmath=True)
def resample_rows_u8(src, y0, x0, y1, x1, flip, out):
    """The same resample of an RGB ``src`` into uint8 ``out`` of shape ``(H, W * 3)`` (a C-contiguous NHWC row),
    horizontal pass first: cheaper when the box has fewer rows than the output (an enlarging crop),
    since the scalar horizontal pass then runs over the box's rows rather than the output's.

    Measured (random pixels, -> 224x224): a 180-row box 0.14 ms here vs 0.18 ms for
    :func:`resample_into`; even near 235 rows (0.18 ms); slower beyond (280 rows: 0.25 vs 0.20 ms),
    so the caller picks this one for boxes of at most 1.05x the output's rows.
    """
    h, w, nc = src.shape  # nc == 3: the caller's contract
    oh = out.shape[0]
    ow = out.shape[1] // 3
    width = ow * nc
    yfirst, ycount, yw = _coeffs(h, y0, y1, oh)
    xfirst, xcount, xw = _coeffs(w, x0, x1, ow)
    ylo = yfirst[0]
    yhi = yfirst[oh - 1] + ycount[oh - 1]
    for i in range(oh):
        ylo = min(ylo, yfirst[i])
        yhi = max(yhi, yfirst[i] + ycount[i])
    tmp = np.empty((yhi - ylo, width), np.float32)  # the box's rows, filtered horizontally
    flat = src.reshape(h, w * nc)
    for r in range(yhi - ylo):
        srow = flat[ylo + r]
        t = tmp[r]
        for ox in range(ow):
            v0, v1, v2 = _taps_rgb(srow, 3 * xfirst[ox], xw, ox, xcount[ox])
            tx = uint64(3 * ((ow - 1 - ox) if flip else ox))
            t[tx] = v0
            t[tx + uint64(1)] = v1
            t[tx + uint64(2)] = v2
    acc = np.empty(width, np.float32)
    for oy in range(oh):
        y, n = yfirst[oy] - ylo, ycount[oy]
        t0 = tmp[y]
        w0 = yw[oy, 0]
        for j in range(width):  # contiguous, vectorised
            acc[j] = w0 * t0[j]
        for k in range(1, n):
            tk = tmp[y + k]
            wk = yw[oy, k]
            for j in range(width):
                acc[j] += wk * tk[j]
        o = out[oy]
        for j in range(width):
            o[j] = np.uint8(min(max(acc[j] + np.float32(0.5), np.float32(0.0)), np.float32(255.0)))
