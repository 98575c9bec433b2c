"""Decoding real photos to RGB: libjpeg-turbo vs Pillow, grayscale/CMYK/PNG, DCT reduction, raw."""

from __future__ import annotations

import numpy as np
import pytest

from fastload.image.decode import dct_factor, decode_rgb, encode_raw, probe

from .conftest import pillow_rgb, psnr


@pytest.mark.parametrize("name", ["china.jpg", "flower.jpg", "small.jpg", "gray.jpg", "cmyk.jpg",
                                  "rgb.png", "rgba.png", "palette.png"])
def test_decodes_like_pillow(photos, name):
    data = photos[name]
    p = probe(data)
    got = decode_rgb(data, p)
    ref = pillow_rgb(data)
    assert got.dtype == np.uint8 and got.shape == ref.shape and got.shape[2] == 3
    assert got.flags.c_contiguous
    # the same libjpeg-turbo underneath: identical; the bound allows IDCT rounding differences
    assert psnr(got, ref) >= 40, name
    expected_kind = "jpeg" if name in ("china.jpg", "flower.jpg", "small.jpg", "gray.jpg") else "pillow"
    assert p.kind == expected_kind
    assert (p.height, p.width) == ref.shape[:2]


@pytest.mark.parametrize("name", ["china.jpg", "flower.jpg", "small.jpg", "gray.jpg"])
def test_the_loaders_fast_idct_stays_within_40_db_of_pillow(photos, name):
    data = photos[name]
    assert psnr(decode_rgb(data, probe(data), fast=True), pillow_rgb(data)) >= 40


def test_grayscale_jpeg_is_three_equal_channels(photos):
    got = decode_rgb(photos["gray.jpg"], probe(photos["gray.jpg"]))
    assert (got[..., 0] == got[..., 1]).all() and (got[..., 1] == got[..., 2]).all()


def test_cmyk_jpeg_goes_through_pillow_and_keeps_its_colours(photos):
    cmyk = decode_rgb(photos["cmyk.jpg"], probe(photos["cmyk.jpg"]))
    rgb = pillow_rgb(photos["small.jpg"])
    assert psnr(cmyk, rgb) > 25  # a CMYK round trip of the same picture, not libjpeg's raw channels


def test_dct_reduced_decode(photos):
    data = photos["china.jpg"]  # 427 x 640
    p = probe(data)
    half = decode_rgb(data, p, 2)
    assert half.shape == (214, 320, 3)
    assert decode_rgb(data, p, 4).shape == (107, 160, 3)
    import io

    from PIL import Image

    img = Image.open(io.BytesIO(data))
    img.draft("RGB", (320, 213))  # Pillow's own DCT-domain scaling, through the same libjpeg-turbo
    ref = np.asarray(img.convert("RGB"))
    assert ref.shape == half.shape and psnr(half, ref) >= 40


@pytest.mark.parametrize("box, out, factor", [
    ((800, 800), (224, 224), 1), ((896, 896), (224, 224), 2), ((895, 1800), (224, 224), 1),
    ((3600, 3600), (224, 224), 8), ((5000, 5000), (100, 100), 8), ((100, 100), (224, 224), 1),
])
def test_dct_factor_keeps_the_box_twice_the_output(box, out, factor):
    assert dct_factor(10_000, 10_000, box[0], box[1], out[0], out[1]) == factor


def test_raw_round_trip(photos):
    pixels = pillow_rgb(photos["small.jpg"])
    data = encode_raw(pixels)
    p = probe(data)
    assert (p.kind, p.height, p.width) == ("raw", 240, 320)
    assert np.array_equal(decode_rgb(data, p), pixels)
    gray = encode_raw(pixels[..., 0])
    assert np.array_equal(decode_rgb(gray, probe(gray)), np.repeat(pixels[..., :1], 3, axis=2))
    # a standard TIFF: Pillow reads the same pixels
    assert np.array_equal(pillow_rgb(data), pixels)
    with pytest.raises(ValueError, match="does not match"):
        probe(data[:-1])
    with pytest.raises(ValueError, match=r"\(h, w, 3\)"):
        encode_raw(np.zeros((2, 2, 4), np.uint8))
    with pytest.raises(ValueError, match=r"\(h, w, 3\)"):
        encode_raw(np.zeros((2, 2, 3), np.float32))


def test_other_tiffs_go_through_pillow(photos):
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pillow_rgb(photos["small.jpg"])).save(buf, "TIFF", compression="tiff_lzw")
    p = probe(buf.getvalue())
    assert p.kind == "pillow" and np.array_equal(decode_rgb(buf.getvalue(), p), pillow_rgb(photos["small.jpg"]))


@pytest.mark.parametrize("cut", ["truncated", "garbage"])
def test_corrupt_images_raise(photos, cut):
    data = photos["small.jpg"]
    bad = data[: len(data) // 2] if cut == "truncated" else b"\xff\xd8\xff" + b"\x13" * 200
    with pytest.raises(Exception):
        decode_rgb(bad, probe(bad))


def test_loader_and_pack_import_without_the_images_extra(tmp_path):
    """simplejpeg and Pillow are the optional 'images' extra: only decoding needs them."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "sys.modules['simplejpeg'] = None; sys.modules['PIL'] = None  # as if not installed\n"
        "import fastload, fastload.image, fastload.loader, fastload.pack.driver\n"
        "from fastload.image import RandomResizedCrop\n"
        f"fastload.pack([{{'x': 1}}], {str(tmp_path / 'o')!r}, progress=False)\n"
        "try:\n"
        "    fastload.image.probe(b'\\xff\\xd8\\xff')\n"
        "except ImportError as exc:\n"
        "    print('ImportError:', exc)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "pip install 'fastload[images]'" in proc.stdout
