"""Decode only the window of a JPEG that a crop needs, through the libjpeg-turbo Pillow ships.

RandomResizedCrop keeps 45% of an image's area on average (the benchmark's photos), and the
rows below its box are not needed at all: ``fastload._jpeg`` skips the inverse DCT and colour
conversion outside the window and stops decoding after its last row. On the benchmark's JPEGs one
core decoded 0.29-0.32 ms per image this way against simplejpeg's 0.40 ms for the whole image.

simplejpeg bundles libjpeg-turbo but exposes no cropping, and PyTurboJPEG needs a system
library; Pillow's wheels ship libjpeg-turbo as a shared ``libjpeg.so.62`` (the libjpeg API with
``jpeg_crop_scanline`` and ``jpeg_skip_scanlines``), so the extension opens that one at run time
and the install stays pip-only. Where none can be opened (Windows, a Pillow built against another
libjpeg ABI) the loader decodes whole images with simplejpeg, as before; :func:`library` says why.

The window's pixels equal a whole-image decode's, except that libjpeg's chroma upsampling treats
the window's first and last columns as image edges: :func:`window_of` therefore widens the window
by one column beyond the resampling filter's reach (tests compare against simplejpeg's whole decode).

The loader decodes a batch's JPEGs through the library's native entries (``WindowLibrary.api``:
:func:`fastload._kernels.jpeg_batch.decode_resample_jpegs`, one call per batch); :func:`decode_window`
is the per-image form, for the images that kernel leaves (and for tests and the benchmark).
"""

from __future__ import annotations

import functools
import glob
import os
import sys

import numpy as np

from .._kernels.jpeg_batch import register, window_bounds

JPEG_EOI = b"\xff\xd9"


class WindowLibrary:
    """An opened libjpeg-turbo (``handle`` is fastload._jpeg's capsule, ``decode`` its
    ``decode_window``, ``probe`` its ``probe_jpegs``), or why there is none. ``api`` is the address
    the batch kernel passes to the C decoder, None where that kernel is off (Numba's JIT disabled)."""

    __slots__ = ("handle", "path", "reason", "decode", "probe", "api")

    def __init__(self, handle=None, path: str | None = None, reason: str | None = None, decode=None, probe=None,
                 api: int | None = None):
        self.handle, self.path, self.reason, self.decode, self.probe, self.api = handle, path, reason, decode, probe, api


def _candidates() -> list[str]:
    """Paths of the libjpeg Pillow uses: the one its C module has mapped (Linux), then the files
    its wheels ship (``pillow.libs`` on Linux, ``PIL/.dylibs`` on macOS)."""
    from PIL import Image  # noqa: F401  (loads PIL._imaging and with it libjpeg)
    import PIL

    found = []
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:  # address perms offset device inode [path]
                fields = line.split(maxsplit=5)
                path = fields[5].strip() if len(fields) == 6 else ""
                if os.path.basename(path).startswith("libjpeg") and path not in found:
                    found.append(path)
    except OSError:
        pass
    root = os.path.dirname(PIL.__file__)
    for pattern in (os.path.join(root, os.pardir, "pillow.libs", "libjpeg*.so*"),
                    os.path.join(root, ".dylibs", "libjpeg*.dylib")):
        found += [p for p in sorted(glob.glob(pattern)) if p not in found]
    return found


@functools.cache
def library() -> WindowLibrary:
    """The libjpeg-turbo window decoding uses, opened once per process."""
    if sys.platform == "win32":
        return WindowLibrary(reason="not built on Windows")
    try:
        from .. import _jpeg
    except ImportError as exc:
        return WindowLibrary(reason=f"fastload._jpeg is not built ({exc})")
    try:
        paths = _candidates()
    except ImportError as exc:
        return WindowLibrary(reason=f"Pillow is not installed ({exc})")
    reasons = []
    for path in paths:
        try:
            handle = _jpeg.load(path)
        except OSError as exc:
            reasons.append(str(exc))
            continue
        api, decode_address, clock_address = _jpeg.native_entries(handle)
        from numba import config

        if config.DISABLE_JIT:  # the kernel runs as Python, which cannot call a C entry point
            api = None
        else:
            register(decode_address, clock_address)
        return WindowLibrary(handle, path, decode=_jpeg.decode_window, probe=_jpeg.probe_jpegs, api=api)
    return WindowLibrary(reason="; ".join(reasons) or "Pillow ships no libjpeg here")


def window_of(box: tuple[float, float, float, float], out_h: int, out_w: int, height: int,
              width: int) -> tuple[int, int, int, int]:
    """The rows and columns ``(top, left, bottom, right)`` of a ``height`` x ``width`` image that
    the resample of ``box`` (y0, x0, y1, x1) to ``out_h`` x ``out_w`` reads, widened by
    :data:`~fastload._kernels.jpeg_batch.EDGE_MARGIN` (the batch kernel's own computation)."""
    y0, x0, y1, x1 = (float(v) for v in box)
    return tuple(int(v) for v in window_bounds(y0, x0, y1, x1, int(out_h), int(out_w), int(height), int(width)))


def complete(data) -> bool:
    """Whether ``data`` ends with the JPEG end-of-image marker. A window decode stops early and
    never reads a truncated tail, so a file without it is decoded whole, where the truncation
    raises as it always did."""
    return bytes(data[-2:]) == JPEG_EOI


def decode_window(lib: WindowLibrary, data, factor: int, window: tuple[int, int, int, int], buffer: np.ndarray,
                  fast: bool) -> tuple[np.ndarray, int, int]:
    """Decode ``window`` (of the image scaled by 1/``factor``) into ``buffer``: the ``(h, w, 3)``
    pixels and the decoded window's top row and left column (the columns widen to libjpeg's blocks)."""
    top, left, bottom, right = window
    top, left, h, w = lib.decode(lib.handle, data, buffer, factor, top, left, bottom, right, int(fast))
    return buffer[:h * w * 3].reshape(h, w, 3), top, left
