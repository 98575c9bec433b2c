"""The resample kernel against Pillow's antialiased BILINEAR ``resize(box=...)`` on real photos.

Tolerance: at most 1 level off Pillow, on at most ~20% of the values (Pillow accumulates in 22-bit
fixed point and rounds to uint8 between its two passes; the kernel keeps float32 throughout).
Flips are exact mirrors; float outputs are the uint8 levels normalized.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fastload._kernels.resample import MODE_FLOAT, MODE_HALF, MODE_UINT8, resample_into, resample_rows_u8

from ..jit_modes import outputs_with_and_without_jit
from .conftest import pillow_rgb

ONE, ZERO = np.ones(3, np.float32), np.zeros(3, np.float32)


def kernel(src, box, size, flip=False, a=ONE, b=ZERO, mode=MODE_UINT8, dtype=np.uint8, rows_first=False):
    h, w = size
    out = np.zeros((h, w, 3), dtype)
    y0, x0, y1, x1 = (float(v) for v in box)
    if rows_first:  # the horizontal-first uint8 kernel, on the flat (H, W * 3) row
        resample_rows_u8(src, y0, x0, y1, x1, flip, out.reshape(h, w * 3))
    else:
        resample_into(src, y0, x0, y1, x1, flip, a, b, mode, out)
    return out


def pillow(src, box, size):
    y0, x0, y1, x1 = box
    return np.asarray(Image.fromarray(src).resize((size[1], size[0]), Image.BILINEAR, box=(x0, y0, x1, y1)))


@pytest.mark.parametrize("box, size", [
    ((10, 20, 385, 395), (224, 224)),      # a typical RandomResizedCrop downscale
    ((0, 0, 427, 640), (224, 224)),        # whole image, anisotropic
    ((100.5, 50.25, 180.0, 130.0), (224, 224)),  # an upscale from a fractional box
    ((5, 5, 400, 600), (300, 500)),        # non-square output
    ((0, 0, 427, 640), (13, 17)),          # a strong reduction: wide filter support
    ((300, 500, 427, 640), (100, 150)),    # touching the far edges, upscaled
])
@pytest.mark.parametrize("rows_first", [False, True])
def test_matches_pillow(photos, box, size, rows_first):
    src = pillow_rgb(photos["china.jpg"])
    got = kernel(src, box, size, rows_first=rows_first).astype(int)
    ref = pillow(src, box, size).astype(int)
    diff = np.abs(got - ref)
    assert diff.max() <= 1, box
    assert (diff > 0).mean() < 0.2


@pytest.mark.parametrize("rows_first", [False, True])
def test_a_box_past_the_edges_uses_the_edge_pixels(rows_first):
    src = np.zeros((20, 30, 3), np.uint8)
    src[:, :, 0] = 200
    out = kernel(src, (-5.0, -7.0, 25.0, 40.0), (8, 8), rows_first=rows_first)
    assert (out[..., 0] == 200).all() and (out[..., 1:] == 0).all()


@pytest.mark.parametrize("rows_first", [False, True])
def test_flip_is_an_exact_mirror(photos, rows_first):
    src = pillow_rgb(photos["flower.jpg"])
    box = (33, 41, 300, 333)
    assert np.array_equal(kernel(src, box, (100, 120), flip=True, rows_first=rows_first),
                          kernel(src, box, (100, 120), rows_first=rows_first)[:, ::-1])


def test_normalized_float32_and_float16(photos):
    src = pillow_rgb(photos["flower.jpg"])
    box = (0, 0, 427, 640)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    a, b = (1 / (255 * std)).astype(np.float32), (-mean / std).astype(np.float32)
    levels = kernel(src, box, (64, 80)).astype(np.float32)
    expected = levels * a + b
    f32 = kernel(src, box, (64, 80), a=a, b=b, mode=MODE_FLOAT, dtype=np.float32)
    np.testing.assert_allclose(f32, expected, rtol=1e-6, atol=1e-6)
    bits = kernel(src, box, (64, 80), a=a, b=b, mode=MODE_HALF, dtype=np.uint16)
    f16 = bits.view(np.float16)
    assert np.array_equal(f16, expected.astype(np.float16)) or \
        np.abs(f16.astype(np.float32) - expected).max() <= np.abs(expected).max() * 2**-10


def test_half_bits_cover_the_float16_range():
    from fastload._kernels.resample import _half_bits

    values = np.array([0.0, -0.0, 1.0, -2.5, 65504.0, 1e5, 6.1e-5, 1e-7, 3.14159, -1234.5], np.float64)
    got = np.array([_half_bits(v) for v in values], np.uint16).view(np.float16)
    with np.errstate(over="ignore"):
        ref = values.astype(np.float16)  # 1e5 overflows to inf, as it should
    assert np.array_equal(got, ref, equal_nan=True)


def test_nchw_view_gets_the_same_pixels(photos):
    src = pillow_rgb(photos["small.jpg"])
    nhwc = kernel(src, (10, 10, 200, 300), (50, 60))
    chw = np.zeros((3, 50, 60), np.uint8)
    resample_into(src, 10.0, 10.0, 200.0, 300.0, False, ONE, ZERO, MODE_UINT8, chw.transpose(1, 2, 0))
    assert np.array_equal(chw.transpose(1, 2, 0), nhwc)


def test_the_kernel_reads_the_same_as_plain_python(tmp_path):
    """NUMBA_DISABLE_JIT=1 (the debugging mode) runs the kernel as Python: same output."""
    script = tmp_path / "run.py"
    out = tmp_path / "out.npy"
    script.write_text(
        "import sys, numpy as np\n"
        "from fastload._kernels.resample import resample_into, resample_rows_u8, MODE_UINT8, MODE_HALF\n"
        "rng = np.random.default_rng(1)\n"
        "src = rng.integers(0, 256, (23, 31, 3), dtype=np.uint8)\n"
        "a, b = np.full(3, 0.5, np.float32), np.full(3, -1.0, np.float32)\n"
        "u8 = np.zeros((9, 7, 3), np.uint8)\n"
        "resample_into(src, 1.5, 2.0, 20.0, 29.5, True, a, b, MODE_UINT8, u8)\n"
        "f16 = np.zeros((9, 7, 3), np.uint16)\n"
        "resample_into(src, 0.0, 0.0, 23.0, 31.0, False, a, b, MODE_HALF, f16)\n"
        "rows = np.zeros((9, 21), np.uint8)\n"
        "resample_rows_u8(src, 3.0, 1.0, 9.5, 29.0, True, rows)\n"
        "np.save(sys.argv[1], np.concatenate([u8.astype(np.uint16).ravel(), f16.ravel(), rows.ravel()]))\n")
    results = outputs_with_and_without_jit([script, out], read=lambda proc: np.load(out))
    assert np.array_equal(results[0], results[1])
