"""fastload's Resize/CenterCrop and RandomResizedCrop against torchvision's algorithm on Pillow
(tests/image/torchvision_reference.py), on scikit-learn's two photographs cut to 180-500 px."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from fastload.image import CenterCrop, ImagePipeline, RandomResizedCrop, Resize, rng
from fastload.loader import DataLoader, copy_batch
from tests.image import torchvision_reference as tv
from tests.image.conftest import _photo_paths, psnr, write_image_dataset

# (height, width): portrait and landscape, odd and even, below 256 (upscaled) and above (reduced),
# the sizes the issue names (322 x 214, 395 x 262) and those whose crop offset is a half (.5)
SIZES = [(180, 180), (180, 500), (500, 180), (181, 243), (214, 322), (224, 224), (255, 257), (256, 256),
         (257, 391), (262, 395), (300, 451), (322, 214), (333, 500), (395, 262), (427, 301), (480, 367),
         (499, 333), (500, 500), (201, 499), (366, 257)]


def _cut(photo: Image.Image, h: int, w: int, k: int) -> Image.Image:
    """A ``h`` x ``w`` region of a 427 x 640 photo (taller than 427: a transposed region)."""
    if h > photo.height:
        return _cut(photo.transpose(Image.Transpose.TRANSPOSE), h, w, k)
    y, x = (k * 37) % (photo.height - h + 1), (k * 53) % (photo.width - w + 1)
    return photo.crop((x, y, x + w, y + h))


@pytest.fixture(scope="module")
def cut_photos() -> list[bytes]:
    photos = [Image.open(p).convert("RGB") for p in _photo_paths()]
    out = []
    for k, (h, w) in enumerate(SIZES):
        for photo in photos:
            buf = io.BytesIO()
            _cut(photo, h, w, k).save(buf, "JPEG", quality=90)
            out.append(buf.getvalue())
    return out


@pytest.mark.parametrize("resize, crop", [(256, 224), (232, 224), (160, 128), (300, 299)])
def test_center_boxes_are_torchvisions_integer_resize_and_crop(resize, crop):
    """The source box of every image size from 180 to 500 px: torchvision's resized size and
    crop offsets, mapped back by the per-axis scale Pillow's resize uses."""
    hs, ws = np.meshgrid(np.arange(180, 501), np.arange(180, 501, 7), indexing="ij")
    h, w = hs.ravel(), ws.ravel()
    boxes, _ = ImagePipeline.of([Resize(resize), CenterCrop(crop)]).plan(h, w, 0, 0, np.arange(len(h)))
    ref = []
    for hh, ww in zip(h.tolist(), w.tolist()):
        nh, nw = tv.resized_size(hh, ww, resize)
        top, left = tv.center_crop_offsets(nh, nw, crop, crop)
        ref.append([top * hh / nh, left * ww / nw, (top + crop) * hh / nh, (left + crop) * ww / nw])
    np.testing.assert_allclose(boxes, np.array(ref), rtol=0, atol=1e-9)


def test_resize_center_crop_is_within_38_db_of_torchvision_on_pillow(tmp_path, cut_photos):
    """Resize(256) + CenterCrop(224), upscaling (180 px) and reducing (500 px): every image within
    38 dB PSNR of torchvision's Resize/CenterCrop on Pillow's decode of the same JPEG (fastload
    decodes with the fast IDCT and resamples in float, Pillow in 22-bit fixed point)."""
    ds = write_image_dataset(tmp_path / "ds", cut_photos)
    loader = DataLoader(ds, batch_size=8, transforms={"image": [Resize(256), CenterCrop(224)]})
    batches = [copy_batch(b) for b in loader]  # a batch lives in a reused slot
    got = torch.cat([b["image"] for b in batches]).numpy()
    labels = torch.cat([b["label"] for b in batches]).tolist()
    assert sorted(labels) == list(range(len(cut_photos)))
    scores = []
    for k, label in enumerate(labels):
        ref = tv.resize_center_crop(Image.open(io.BytesIO(cut_photos[label])).convert("RGB"), 256, 224)
        scores.append(psnr(got[k], ref))
    worst = labels[int(np.argmin(scores))]
    assert min(scores) >= 38, f"{min(scores):.1f} dB for {SIZES[worst // 2]} (all: {np.round(scores, 1)})"


@pytest.mark.parametrize("scale, ratio", [((0.08, 1.0), (3 / 4, 4 / 3)),  # the default: tries succeed
                                          ((0.9, 1.0), (2.5, 3.0)),  # wide boxes: mostly the central-cut fallback
                                          ((1.0, 1.0), (0.5, 2.0))])  # the whole image unless ratio fits
def test_random_resized_crop_boxes_are_torchvisions_for_the_same_draws(scale, ratio):
    """Per image size 180-500 px and record: the box of torchvision's get_params fed the uniforms
    fastload drew for that record (area and ratio per try, top, left), exactly."""
    hs, ws = np.meshgrid(np.arange(180, 501, 3), np.arange(180, 501, 11), indexing="ij")
    h, w = hs.ravel(), ws.ravel()
    idx = np.arange(len(h)) * 7 + 3
    seed, epoch = 42, 3
    boxes, _ = ImagePipeline.of([RandomResizedCrop(224, scale=scale, ratio=ratio)]).plan(h, w, seed, epoch, idx)
    area = rng.uniforms(seed, epoch, rng.STREAM_AREA, idx, 10)
    aspect = rng.uniforms(seed, epoch, rng.STREAM_RATIO, idx, 10)
    top = rng.uniforms(seed, epoch, rng.STREAM_TOP, idx)[:, 0]
    left = rng.uniforms(seed, epoch, rng.STREAM_LEFT, idx)[:, 0]
    whole = 0
    for k in range(len(h)):
        i, j, bh, bw = tv.random_resized_crop_params(int(h[k]), int(w[k]), scale, ratio, area[k], aspect[k],
                                                     float(top[k]), float(left[k]))
        assert boxes[k].tolist() == [i, j, i + bh, j + bw], (h[k], w[k], k)
        whole += (bh, bw) == (h[k], w[k])
    # the fallback to the whole image (third case) or to a central cut (second) was exercised
    assert whole > len(h) // 2 if scale[0] == 1.0 else whole < len(h) // 10
