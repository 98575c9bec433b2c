"""Decode one stored image to RGB uint8 pixels: libjpeg-turbo (simplejpeg) for JPEG, Pillow for the rest.

simplejpeg releases the GIL (2 threads decoded 2.06x the images/s of one, measured here) and can
decode at 1/2, 1/4 or 1/8 size in the DCT domain, which the loader asks for when the crop box is
that many times larger than the output. Its output is identical to Pillow's decode (both are
libjpeg-turbo; PSNR inf on scikit-learn's china.jpg). CMYK/YCCK JPEGs (which libjpeg-turbo cannot
turn into RGB), PNG (RGBA, palette, grayscale) and other formats go through Pillow's
``convert("RGB")``; raw pixels stored by ``fastload pack --image-format raw`` are read in place.

The raw form is a baseline uncompressed TIFF of one RGB strip with a fixed 144-byte header
(:func:`encode_raw`): any image tool opens it, the format's image check accepts it (TIFF magic),
and the loader recognises its exact header and takes the pixels after it without decoding.
"""

from __future__ import annotations

import io
import math
import struct
from typing import Callable

import numpy as np

from ..errors import RecordDecodeError

JPEG_SOI = b"\xff\xd8"
RAW_HEADER_BYTES = 144  # the TIFF header, IFD and BitsPerSample of encode_raw, padded to 16 bytes
_TIFF_LE = b"II*\x00"
_PILLOW_JPEG_MODES = ("CMYK", "YCCK")
MAX_DCT_FACTOR = 8
# The DCT-reduced image must still be this many times the output, so the antialiased resize does
# the final reduction (Pillow's thumbnail uses the same gap). Without it, a 2x DCT reduction
# followed by a ~1:1 resample measured 26.6 dB PSNR against a full-resolution resize, on real photos.
REDUCING_GAP = 2.0
# Larger images are refused before decoding: Pillow's own decompression-bomb limit (twice its
# MAX_IMAGE_PIXELS warning threshold), so a header claiming 65535 x 65535 never allocates 12 GB.
MAX_PIXELS = 2 * 89_478_485


def _simplejpeg():
    """simplejpeg, imported on first use: it and Pillow come with ``pip install 'fastload[images]'``."""
    try:
        import simplejpeg
    except ImportError as exc:
        raise ImportError("decoding images needs simplejpeg and Pillow: pip install 'fastload[images]'") from exc
    return simplejpeg


def missing_decoders() -> list[str]:
    """The packages of the ``images`` extra that are not installed (found without importing them)."""
    import importlib.util

    return [name for name, module in (("simplejpeg", "simplejpeg"), ("Pillow", "PIL"))
            if importlib.util.find_spec(module) is None]


def _pillow_image():
    try:
        from PIL import Image
    except ImportError as exc:
        raise ImportError("decoding images needs simplejpeg and Pillow: pip install 'fastload[images]'") from exc
    return Image


class Probe:
    """An image's size and how to decode it, from its header (a Pillow image is opened lazily)."""

    __slots__ = ("height", "width", "kind", "pil")

    def __init__(self, height: int, width: int, kind: str, pil=None):
        self.height, self.width, self.kind, self.pil = height, width, kind, pil


def probe(data) -> Probe:
    """Size and decoder of ``data`` (bytes-like); raises ValueError/OSError when unreadable."""
    head = bytes(data[:8])
    if head.startswith(JPEG_SOI):
        h, w, colorspace, _ = _simplejpeg().decode_jpeg_header(data)
        _check_pixels(h, w)
        if colorspace not in _PILLOW_JPEG_MODES:
            return Probe(h, w, "jpeg")
    elif head.startswith(_TIFF_LE) and len(data) >= RAW_HEADER_BYTES:
        w, h = struct.unpack_from("<I", data, 18)[0], struct.unpack_from("<I", data, 30)[0]
        if 0 < h * w * 3 < 2**32 and bytes(data[:RAW_HEADER_BYTES]) == _raw_header(h, w):
            if len(data) != RAW_HEADER_BYTES + h * w * 3:
                raise ValueError(f"raw image of {h}x{w} RGB does not match its {len(data)} bytes")
            return Probe(h, w, "raw")
    img = _pillow_image().open(io.BytesIO(bytes(data)))
    w, h = img.size
    _check_pixels(h, w)
    return Probe(h, w, "pillow", img)


def _check_pixels(h: int, w: int) -> None:
    if h <= 0 or w <= 0 or h * w > MAX_PIXELS:
        raise ValueError(f"image of {h}x{w} pixels: more than the {MAX_PIXELS:,} fastload decodes (or empty)")


def decode_error(field: str, index: int, exc: BaseException, locate: Callable[[int], str]) -> RecordDecodeError:
    """The error for dataset record ``index`` whose image in ``field`` failed with ``exc``."""
    err = RecordDecodeError(f"{locate(index)}: field {field!r} holds an image that cannot be "
                            f"decoded ({type(exc).__name__}: {exc})")
    err.add_note(f"record {index} of the dataset; load with on_error='skip' to replace unreadable records")
    return err


def dct_factor(height: int, width: int, box_h: float, box_w: float, out_h: int, out_w: int) -> int:
    """The largest power of two (<= 8) the decode may shrink by while the box still covers
    REDUCING_GAP times the output's pixels, so the antialiased resample does the last reduction."""
    return int(dct_factors(np.array([box_h], np.float64), np.array([box_w], np.float64), out_h, out_w)[0])


def dct_factors(box_h: np.ndarray, box_w: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """:func:`dct_factor` of many boxes at once (int64)."""
    room = np.minimum(box_h / out_h, box_w / out_w) / REDUCING_GAP
    f = np.ones(len(room), np.int64)
    while (grow := f * 2 <= np.minimum(room, MAX_DCT_FACTOR)).any():
        f[grow] *= 2
    return f


def decode_rgb(data, p: Probe, factor: int = 1, buffer: np.ndarray | None = None,
               fast: bool = False) -> np.ndarray:
    """``(h, w, 3)`` uint8 C-contiguous RGB; JPEGs shrunk by ``factor`` in the DCT domain (the
    result is ceil(h / factor) x ceil(w / factor)); ``buffer`` (JPEG only) is written over.

    ``fast``: libjpeg-turbo's fast integer IDCT (as FFCV decodes): +13% images/s on the benchmark
    JPEGs (median of 6 interleaved rounds, 1,465 -> 1,650/s), PSNR 45-46 dB against the exact
    decode; the loader uses it. Chroma upsampling stays exact (the fast one fell to 38.5 dB).
    """
    if p.kind == "jpeg":
        mh = math.ceil(p.height / factor) if factor > 1 else 0
        mw = math.ceil(p.width / factor) if factor > 1 else 0
        need = (mh or p.height) * (mw or p.width) * 3
        buf = buffer if buffer is not None and buffer.nbytes >= need else None
        out = _simplejpeg().decode_jpeg(data, "RGB", fastdct=fast, min_height=mh, min_width=mw, buffer=buf)
        if out.shape[:2] != (mh or p.height, mw or p.width):  # the loader maps boxes by exactly 1/factor
            raise ValueError(f"decoded to {out.shape[0]}x{out.shape[1]}, expected {mh or p.height}x{mw or p.width} "
                             f"(header {p.height}x{p.width}, factor {factor})")
        return out
    if p.kind == "raw":
        return np.frombuffer(data, np.uint8, p.height * p.width * 3, RAW_HEADER_BYTES).reshape(p.height, p.width, 3)
    img = p.pil
    if img.mode != "RGB":
        img = img.convert("RGB")  # RGBA drops alpha, P/L/CMYK/I;16 map to RGB as Pillow does
    out = np.asarray(img)
    if out.shape[:2] != (p.height, p.width) or out.ndim != 3:
        raise ValueError(f"decoded to shape {out.shape}, header says {p.height}x{p.width}")
    return np.ascontiguousarray(out)


def _raw_header(h: int, w: int) -> bytes:
    """Little-endian baseline TIFF header + IFD of an uncompressed RGB image in one strip."""
    entries = [  # (tag, type, count, value); types: 3 SHORT, 4 LONG; sorted by tag as TIFF requires
        (256, 4, 1, w), (257, 4, 1, h), (258, 3, 3, 134), (259, 3, 1, 1), (262, 3, 1, 2),
        (273, 4, 1, RAW_HEADER_BYTES), (277, 3, 1, 3), (278, 4, 1, h), (279, 4, 1, h * w * 3), (284, 3, 1, 1),
    ]
    out = bytearray(_TIFF_LE + struct.pack("<I", 8) + struct.pack("<H", len(entries)))
    for tag, typ, count, value in entries:
        packed = struct.pack("<H", value) + b"\x00\x00" if typ == 3 and count == 1 else struct.pack("<I", value)
        out += struct.pack("<HHI", tag, typ, count) + packed
    out += struct.pack("<I", 0)  # no next IFD; ends at byte 134
    out += struct.pack("<HHH", 8, 8, 8)  # BitsPerSample at 134
    return bytes(out.ljust(RAW_HEADER_BYTES, b"\x00"))


def encode_raw(pixels: np.ndarray) -> bytes:
    """The ``raw`` storage form of an ``(h, w, 3)`` or ``(h, w)`` (grayscale, stored as RGB) uint8 image."""
    a = np.asarray(pixels)
    if a.dtype != np.uint8 or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] != 3) or 0 in a.shape:
        raise ValueError(f"raw images are (h, w, 3) or (h, w) uint8, not {a.shape} {a.dtype}")
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    a = np.ascontiguousarray(a)
    return _raw_header(a.shape[0], a.shape[1]) + a.tobytes()
