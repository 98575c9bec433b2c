"""BatchImageDecoder: DCT-reduced geometry, the JPEG buffer it keeps, and headers it refuses."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from fastload.errors import RecordDecodeError
from fastload.image import ImagePipeline, RandomResizedCrop, Resize
from fastload.image.batch import RETAINED_BUFFER_BYTES, BatchImageDecoder
from fastload.image.decode import decode_rgb, probe

from .conftest import _photo_paths


def _jpeg(img: Image.Image, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@pytest.fixture(scope="module")
def odd_photo() -> bytes:
    """A real photo whose sides (1001 x 1335) no DCT factor divides."""
    return _jpeg(Image.open(_photo_paths()[0]).convert("RGB").resize((1335, 1001), Image.LANCZOS))


def _run(ops, payloads, seed=0, epoch=0):
    pipe = ImagePipeline.of(ops)
    dec = BatchImageDecoder(pipe, "image")
    out = np.empty((len(payloads), *pipe.shape), pipe.dtype)
    dec.run(payloads, np.arange(len(payloads)), seed, epoch, out, lambda i: f"record {i}")
    return dec, out


def test_dct_reduced_boxes_map_by_exactly_one_over_the_factor(odd_photo):
    p = probe(odd_photo)
    assert decode_rgb(odd_photo, p, 8).shape[:2] == (-(-1001 // 8), -(-1335 // 8))  # libjpeg: ceil(side / 8)
    _, out = _run([Resize((40, 60))], [odd_photo])  # a 1/8 decode
    full = Image.fromarray(decode_rgb(odd_photo, p))
    ref = np.asarray(full.resize((60, 40), Image.BILINEAR, reducing_gap=None)).astype(int)
    # against the full-resolution resize: 0.42 levels on average; mapping boxes by
    # ceil(h / 8) / h instead (the far edge off by 7/8 of a decoded pixel) gave 2.36
    assert np.abs(out[0].astype(int) - ref).mean() < 1.0


def test_the_jpeg_buffer_is_sized_for_the_reduced_decode_and_capped(odd_photo):
    dec, _ = _run([RandomResizedCrop(32, scale=(0.9, 1.0))], [odd_photo])
    # scaled by 8 in the DCT domain: a 126 x 167 buffer, not the 1001 x 1335 of the full image
    assert dec._buffer.nbytes == 126 * 167 * 3
    big = dec._buf(RETAINED_BUFFER_BYTES + 1)
    assert big.nbytes == RETAINED_BUFFER_BYTES + 1 and dec._buffer.nbytes == 126 * 167 * 3
    dec._buf(RETAINED_BUFFER_BYTES // 2 + 1)
    assert dec._buffer.nbytes <= RETAINED_BUFFER_BYTES


def test_a_header_claiming_huge_dimensions_is_a_record_decode_error(odd_photo):
    data = bytearray(_jpeg(Image.new("RGB", (16, 16), (200, 30, 30))))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = (60000).to_bytes(2, "big") * 2  # height, width: 3.6 G pixels
    with pytest.raises(RecordDecodeError, match="60000x60000 pixels") as info:
        _run([Resize((8, 8))], [bytes(data)])
    assert "record 0" in str(info.value)
