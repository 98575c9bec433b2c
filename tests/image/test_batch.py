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

from ..jit_modes import outputs_with_and_without_jit
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
    data = np.frombuffer(b"".join(payloads), np.uint8)
    offsets = np.cumsum([0] + [len(p) for p in payloads], dtype=np.int64)
    dec.run(data, offsets, np.arange(len(payloads)), seed, epoch, out, lambda i: f"record {i}")
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


def test_the_batch_kernel_leaves_what_it_cannot_decode_to_the_one_by_one_path(photos, monkeypatch):
    """A batch of every kind (JPEGs the kernel takes, CMYK, PNG): the kernel's rows equal the one-by-one
    path's bit for bit, and the images it does not take come out as that path writes them."""
    from fastload.image import window

    names = ["china.jpg", "cmyk.jpg", "gray.jpg", "rgba.png", "flower.jpg", "palette.png", "small.jpg"]
    ops = [RandomResizedCrop(40, scale=(0.3, 1.0))]
    lib = window.library()
    assert lib.api is not None, lib.reason
    _, batched = _run(ops, [photos[n] for n in names])
    monkeypatch.setattr(window, "library", lambda: window.WindowLibrary(lib.handle, lib.path, decode=lib.decode))
    _, one_by_one = _run(ops, [photos[n] for n in names])
    assert np.array_equal(batched, one_by_one)


def test_a_jpeg_that_fails_inside_the_kernel_is_a_record_decode_error(photos):
    """Corrupt scan data behind a valid header: the kernel's window decode fails, the one-by-one
    path decodes the image whole and raises with libjpeg's message and the record."""
    data = bytearray(photos["small.jpg"])
    sos = data.index(b"\xff\xda")
    data[sos + 200:sos + 210] = b"\xff\xd3" * 5  # restart markers where none belong
    with pytest.raises(RecordDecodeError, match=r"record 1: .*Corrupt JPEG data"):
        _run([Resize((64, 64))], [photos["small.jpg"], bytes(data)])


def test_without_the_jit_the_one_by_one_path_gives_the_same_rows(tmp_path):
    """NUMBA_DISABLE_JIT=1 (the debugging mode): the batch kernel, which calls C from compiled
    code, is off and every image goes one by one, with the same output."""
    script, out = tmp_path / "run.py", tmp_path / "out.npy"
    script.write_text(
        "import sys, numpy as np\n"
        "from fastload.image import ImagePipeline, RandomResizedCrop, RandomHorizontalFlip, window\n"
        "from fastload.image.batch import BatchImageDecoder\n"
        "payloads = [open(p, 'rb').read() for p in sys.argv[2:]]\n"
        "pipe = ImagePipeline.of([RandomResizedCrop(12), RandomHorizontalFlip()])\n"
        "out = np.zeros((len(payloads), *pipe.shape), np.uint8)\n"
        "data = np.frombuffer(b''.join(payloads), np.uint8)\n"
        "offsets = np.cumsum([0] + [len(p) for p in payloads], dtype=np.int64)\n"
        "BatchImageDecoder(pipe, 'image').run(data, offsets, np.arange(len(payloads)), 3, 0, out, str)\n"
        "print(window.library().api is not None)\n"
        "np.save(sys.argv[1], out)\n")
    (jit_api, jit_rows), (plain_api, plain_rows) = outputs_with_and_without_jit(
        [script, out, *_photo_paths()], read=lambda proc: (proc.stdout.split(), np.load(out)))
    assert jit_api == ["True"] and plain_api == ["False"]
    assert np.array_equal(jit_rows, plain_rows)


def test_an_image_too_large_for_the_retained_buffer_leaves_the_kernel(photos, monkeypatch):
    """A JPEG whose scaled size passes the buffer a decoder keeps goes one by one, into a buffer
    of its own (the kernel only writes into the retained one): the same rows either way."""
    from fastload.image import batch

    names = ["china.jpg", "small.jpg", "flower.jpg"]
    ops = [RandomResizedCrop(40, scale=(0.5, 1.0))]
    _, kept = _run(ops, [photos[n] for n in names])
    calls, decode_window = [], batch.window.decode_window
    monkeypatch.setattr(batch.window, "decode_window", lambda *a, **k: calls.append(1) or decode_window(*a, **k))
    monkeypatch.setattr(batch, "RETAINED_BUFFER_BYTES", 1000)  # under every scaled photo here
    dec, alone = _run(ops, [photos[n] for n in names])
    assert np.array_equal(kept, alone) and len(calls) == len(names) and dec._buffer.nbytes == 0
