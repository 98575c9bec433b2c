"""Window decoding (fastload._jpeg over Pillow's libjpeg-turbo) against simplejpeg's whole decode."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest

from fastload.image import window

simplejpeg = pytest.importorskip("simplejpeg")


@pytest.fixture(scope="module")
def lib():
    found = window.library()
    if sys.platform.startswith("linux"):  # Pillow's manylinux wheels ship libjpeg-turbo: it must be found
        assert found.handle is not None, found.reason
    elif found.handle is None:
        pytest.skip(f"no window decoding here: {found.reason}")
    return found


def _variants(photos) -> dict[str, bytes]:
    """The photo in every chroma subsampling, grayscale and progressive (Pillow encodes them)."""
    from PIL import Image

    img = Image.open(io.BytesIO(photos["flower.jpg"])).convert("RGB").crop((37, 11, 37 + 419, 11 + 301))

    def save(im, **kw):
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=88, **kw)
        return buf.getvalue()

    return {"444": save(img, subsampling=0), "422": save(img, subsampling=1), "420": save(img, subsampling=2),
            "gray": save(img.convert("L")), "progressive": save(img, subsampling=2, progressive=True),
            "china": photos["china.jpg"]}


@pytest.mark.parametrize("factor", [1, 2, 4, 8])
def test_window_pixels_equal_simplejpegs_whole_decode(photos, lib, factor):
    """Random boxes: the pixels the resample reads (the box and the filter's reach) are those of
    simplejpeg's whole-image decode with the same fast IDCT, bit for bit."""
    rng = np.random.default_rng(factor)
    for name, data in _variants(photos).items():
        h0, w0 = simplejpeg.decode_jpeg_header(data)[:2]
        h, w = -(-h0 // factor), -(-w0 // factor)
        whole = simplejpeg.decode_jpeg(data, "RGB", fastdct=True, min_height=h if factor > 1 else 0,
                                       min_width=w if factor > 1 else 0)
        assert whole.shape[:2] == (h, w)
        buf = np.empty(h * w * 3, np.uint8)
        for _ in range(12):
            y0, y1 = np.sort(rng.uniform(0, h, 2))
            x0, x1 = np.sort(rng.uniform(0, w, 2))
            win = window.window_of((y0, x0, y1, x1), 24, 24, h, w)
            pixels, top, left = window.decode_window(lib, data, factor, win, buf, fast=True)
            assert top == win[0] and left <= win[1] and pixels.shape[0] == win[2] - win[0]
            assert left + pixels.shape[1] >= win[3]
            # the first and last decoded columns are libjpeg's edges (upsampled as such): unread
            inner = slice(win[1] + 1 if win[1] > 0 else 0, win[3] - 1 if win[3] < w else w)
            got = pixels[:, inner.start - left:inner.stop - left]
            np.testing.assert_array_equal(got, whole[win[0]:win[2], inner], err_msg=f"{name} window {win}")


def test_window_reaches_the_filter_support_plus_the_edge_margin():
    # a 90-row box resampled to 30 rows: support 3 pixels, plus the edge margin
    assert window.window_of((100.0, 50.5, 190.0, 80.5), 30, 30, 400, 400) == (95, 47, 195, 84)
    assert window.window_of((0.0, 0.0, 400.0, 400.0), 30, 30, 400, 400) == (0, 0, 400, 400)


def test_a_window_decode_of_corrupt_data_raises_with_libjpegs_message(photos, lib):
    data = photos["small.jpg"]
    buf = np.empty(400 * 400 * 3, np.uint8)
    with pytest.raises(ValueError, match="JPEG window decode failed: Not a JPEG file"):
        window.decode_window(lib, b"not a jpeg" + bytes(64), 1, (0, 0, 10, 10), buf, fast=True)
    cut = bytes(data[:len(data) // 2]) + window.JPEG_EOI  # the second half of the scan missing
    with pytest.raises(ValueError, match="JPEG window decode failed: .*[Pp]remature end"):
        window.decode_window(lib, cut, 1, (200, 0, 240, 320), buf, fast=True)
    with pytest.raises(ValueError, match="out holds 30 bytes"):
        window.decode_window(lib, photos["small.jpg"], 1, (0, 0, 10, 10), np.empty(30, np.uint8), fast=True)
    with pytest.raises(ValueError, match="is empty"):
        window.decode_window(lib, photos["small.jpg"], 1, (300, 0, 310, 10), buf, fast=True)


def test_a_truncated_jpeg_is_decoded_whole(photos):
    """Window decoding stops early, so it would not notice a missing tail: such files are left to
    the whole decode, which raises."""
    data = photos["small.jpg"]
    assert window.complete(data) and window.complete(memoryview(data))
    assert not window.complete(data[:len(data) // 2])


def test_load_refuses_what_is_not_a_libjpeg_turbo(tmp_path, lib):
    """A missing file, and a library without libjpeg's entry points, are OSErrors (the loader then
    decodes whole images); the library found is one of the candidates, named libjpeg*."""
    import os

    from fastload import _jpeg

    with pytest.raises(OSError, match="cannot open"):
        _jpeg.load(str(tmp_path / "missing.so"))
    assert lib.path in window._candidates() and os.path.basename(lib.path).startswith("libjpeg")
    others = [p for p in os.listdir(os.path.dirname(lib.path)) if p.startswith(("libz", "libpng", "libtiff"))]
    if others:  # Pillow's wheels ship them beside libjpeg
        with pytest.raises(OSError, match="has no jpeg_"):
            _jpeg.load(os.path.join(os.path.dirname(lib.path), others[0]))


def test_the_probe_refuses_images_over_the_python_paths_pixel_limit():
    """The C probe and the Python decoder keep one limit: an image the one-by-one path refuses is
    never decoded by the batch kernel."""
    from fastload import _jpeg
    from fastload.image.decode import MAX_PIXELS

    assert _jpeg.MAX_PIXELS == MAX_PIXELS


def test_probe_jpegs_reads_the_sizes_simplejpeg_reads_and_refuses_the_rest(photos, lib):
    """The batch kernel's probe: (height, width) of each complete gray/colour JPEG, as simplejpeg's
    header; -1 for what the one-by-one path must decode (CMYK, PNG, truncated, not an image)."""
    names = ["china.jpg", "flower.jpg", "gray.jpg", "cmyk.jpg", "rgb.png", "small.jpg"]
    payloads = [photos[n] for n in names] + [photos["small.jpg"][:-200], b"", b"not an image at all"]
    data = np.frombuffer(b"".join(payloads), np.uint8)
    offsets = np.cumsum([0] + [len(p) for p in payloads], dtype=np.int64)
    sizes = np.zeros((len(payloads), 2), np.int64)
    lib.probe(lib.handle, data, offsets, sizes)
    for name, got in zip(names, sizes.tolist()):
        h, w, _, _ = simplejpeg.decode_jpeg_header(photos[name]) if name.endswith(".jpg") else (-1, -1, 0, 0)
        assert got == ([-1, -1] if name == "cmyk.jpg" else [h, w]), name
    assert sizes[len(names):].tolist() == [[-1, -1]] * 3
    with pytest.raises(ValueError, match="offsets must be int64, ascending, within data"):
        lib.probe(lib.handle, data, np.array([0, len(data) + 1], np.int64), sizes)
