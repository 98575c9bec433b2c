"""Image operations: validation, fusion into one plan, and the plan's boxes and flips."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from fastload.image import (CenterCrop, DecodeImage, ImagePipeline, Normalize, RandomHorizontalFlip,
                            RandomResizedCrop, Resize, ToTensor)
from fastload.image.pipeline import loader_pipelines, pipelines_of
from fastload.format.schema import Schema


@pytest.mark.parametrize("make, match", [
    (lambda: RandomResizedCrop(0), "positive integers"),
    (lambda: RandomResizedCrop(224, scale=(0.5, 0.1)), "min <= max"),
    (lambda: RandomResizedCrop(224, scale=(0.5, 2.0)), r"\(0, 1\]"),
    (lambda: RandomResizedCrop((224,)), "int or \\(height, width\\)"),
    (lambda: Resize(True), "int or"),
    (lambda: RandomHorizontalFlip(p=1.5), "probability"),
    (lambda: Normalize((0.5, 0.5), (0.2, 0.2, 0.2)), "3 finite numbers"),
    (lambda: Normalize((0.5,) * 3, (0.0, 1, 1)), "positive"),
    (lambda: Normalize((0.5,) * 3, (1,) * 3, dtype="int8"), "float32"),
    (lambda: ToTensor("CHW"), "NHWC"),
    (lambda: DecodeImage("tpu"), "cpu"),
])
def test_operations_validate(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("ops, match", [
    ([RandomHorizontalFlip()], "fixes the output size"),
    ([Resize(256)], "keeps the aspect ratio"),
    ([Resize(200), CenterCrop(224)], "larger than the shorter side"),
    ([RandomResizedCrop(224), CenterCrop(224)], "do not combine"),
    ([RandomHorizontalFlip(), RandomResizedCrop(224)], "must come before"),
    ([RandomResizedCrop(224), RandomHorizontalFlip(), RandomHorizontalFlip()], "appears 2 times"),
    ([RandomResizedCrop(224), DecodeImage()], "must come first"),
])
def test_pipelines_validate(ops, match):
    with pytest.raises(ValueError, match=match):
        ImagePipeline.of(ops)


def test_pipeline_rejects_foreign_operations():
    with pytest.raises(TypeError, match="fastload.image operations"):
        ImagePipeline.of([RandomResizedCrop(8), lambda x: x])
    with pytest.raises(TypeError, match="dict"):
        pipelines_of([RandomResizedCrop(8)])


def test_output_shapes_and_dtypes():
    p = ImagePipeline.of([RandomResizedCrop(224), RandomHorizontalFlip()])
    assert (p.shape, p.dtype, p.layout, p.flip_p) == ((224, 224, 3), np.uint8, "NHWC", 0.5)
    p = ImagePipeline.of([Resize(256), CenterCrop((200, 220)), Normalize((0.5,) * 3, (0.25,) * 3, "float16"),
                          ToTensor()])
    assert (p.shape, p.dtype, p.layout) == ((3, 200, 220), np.float16, "NCHW")
    assert ImagePipeline.of([Resize((30, 40))]).shape == (30, 40, 3)
    assert ImagePipeline.of([CenterCrop(64), ToTensor("NHWC")]).shape == (64, 64, 3)
    a, b = ImagePipeline.of([CenterCrop(8), Normalize((0.5,) * 3, (0.25,) * 3)]).scale_bias
    np.testing.assert_allclose(255 * a + b, (1 - 0.5) / 0.25)  # a white pixel
    assert pickle.loads(pickle.dumps(p)) == p  # travels to worker processes
    assert Resize(256) != Resize((256, 256))


def test_loader_pipelines_check_the_schema():
    schema = Schema.parse("image:image,label:int64")
    assert loader_pipelines(None, schema) == {}
    assert set(loader_pipelines({"image": [CenterCrop(8)]}, schema)) == {"image"}
    with pytest.raises(ValueError, match="the dataset has"):
        loader_pipelines({"img": [CenterCrop(8)]}, schema)
    with pytest.raises(ValueError, match="apply to image fields"):
        loader_pipelines({"label": [CenterCrop(8)]}, schema)
    with pytest.raises(ValueError, match="not one"):
        loader_pipelines({"image": [CenterCrop(8)]}, None)
    with pytest.raises(ValueError, match="fixes the output size") as info:
        loader_pipelines({"image": [RandomHorizontalFlip()]}, schema)
    assert any("field 'image'" in n for n in info.value.__notes__)


def test_gpu_decoding_falls_back_with_a_warning_here():
    pytest.importorskip("torch")
    from fastload.image.gpu import gpu_decode_unavailable

    reason = gpu_decode_unavailable()
    if reason is None:
        pytest.skip("this machine can decode on the GPU")
    schema = Schema.parse("image:image")
    with pytest.warns(RuntimeWarning, match="falls back to CPU decoding"):
        got = loader_pipelines({"image": [DecodeImage("cuda"), RandomResizedCrop(32)]}, schema)
    assert got["image"].decode.device == "cpu" and got["image"].crop == RandomResizedCrop(32)


def _plan(ops, h, w, seed=0, epoch=0, idx=None):
    idx = np.arange(len(h)) if idx is None else np.asarray(idx)
    return ImagePipeline.of(ops).plan(np.asarray(h), np.asarray(w), seed, epoch, idx)


def test_random_crops_follow_torchvision_rules():
    n = 4000
    h = np.full(n, 375)
    w = np.full(n, 500)
    boxes, flips = _plan([RandomResizedCrop(224, scale=(0.08, 1.0)), RandomHorizontalFlip()], h, w)
    bh, bw = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 375).all() and (boxes[:, 3] <= 500).all()
    assert np.array_equal(boxes, np.floor(boxes))  # whole pixels, as torchvision
    area = bh * bw / (375 * 500)
    assert area.min() > 0.07 and area.max() <= 1.0
    ratio = bw / bh
    assert ratio.min() > 0.7 and ratio.max() < 1.4
    assert 0.45 < flips.mean() < 0.55
    assert 0.35 < area.mean() < 0.55  # large areas at extreme ratios do not fit: below U(0.08, 1)'s 0.54


def _torchvision_get_params(h, w, scale, ratio, u_area, u_ratio, u_top, u_left):
    """torchvision's RandomResizedCrop.get_params, written out per image, fed the same draws."""
    area = h * w
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for k in range(10):
        target_area = area * (scale[0] + (scale[1] - scale[0]) * u_area[k])
        aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * u_ratio[k])
        cw = int(round(math.sqrt(target_area * aspect)))
        ch = int(round(math.sqrt(target_area / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            i = int(u_top * (h - ch + 1))
            j = int(u_left * (w - cw + 1))
            return i, j, ch, cw
    in_ratio = w / h
    if in_ratio < min(ratio):
        cw, ch = w, int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        ch, cw = h, int(round(h * max(ratio)))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


@pytest.mark.parametrize("scale, ratio", [((0.08, 1.0), (3 / 4, 4 / 3)), ((0.9, 1.0), (0.2, 0.3))])
def test_random_crops_equal_torchvision_given_the_same_draws(scale, ratio):
    from fastload.image import rng

    idx = np.arange(300) * 7 + 5
    h = 200 + idx % 301
    w = 500 - idx % 257
    boxes, _ = _plan([RandomResizedCrop(64, scale=scale, ratio=ratio)], h, w, seed=3, epoch=2, idx=idx)
    draws = [rng.uniforms(3, 2, s, idx, c) for s, c in ((rng.STREAM_AREA, 10), (rng.STREAM_RATIO, 10),
                                                        (rng.STREAM_TOP, 1), (rng.STREAM_LEFT, 1))]
    for k in range(len(idx)):
        i, j, ch, cw = _torchvision_get_params(int(h[k]), int(w[k]), scale, ratio, draws[0][k], draws[1][k],
                                               draws[2][k, 0], draws[3][k, 0])
        assert boxes[k].tolist() == [i, j, i + ch, j + cw], k


def test_random_crop_falls_back_to_a_center_crop_on_extreme_shapes():
    boxes, _ = _plan([RandomResizedCrop(32, scale=(0.9, 1.0), ratio=(1.0, 1.0))], [10], [1000])
    # no 0.9-area square fits a 10 x 1000 image: torchvision's fallback, width cut to ratio 1
    assert boxes[0].tolist() == [0.0, 495.0, 10.0, 505.0]


def test_plans_are_keyed_by_seed_epoch_and_index_only():
    ops = [RandomResizedCrop(64), RandomHorizontalFlip()]
    h, w = np.array([300, 400, 500]), np.array([500, 300, 400])
    b1, f1 = _plan(ops, h, w, seed=7, epoch=3, idx=[10, 11, 12])
    b2, f2 = _plan(ops, h[::-1], w[::-1], seed=7, epoch=3, idx=[12, 11, 10])  # another batch order
    assert np.array_equal(b1, b2[::-1]) and np.array_equal(f1, f2[::-1])
    b3, _ = _plan(ops, h, w, seed=7, epoch=4, idx=[10, 11, 12])
    b4, _ = _plan(ops, h, w, seed=8, epoch=3, idx=[10, 11, 12])
    assert not np.array_equal(b1, b3) and not np.array_equal(b1, b4)


def test_center_boxes():
    boxes, flips = _plan([Resize(256), CenterCrop(224)], [512, 300], [1024, 300])
    # 512 x 1024 -> 256 x 512; the 224 crop is 448 source pixels
    np.testing.assert_allclose(boxes[0], [32, 288, 480, 736])
    np.testing.assert_allclose(boxes[1], [(300 - 262.5) / 2, (300 - 262.5) / 2, (300 + 262.5) / 2, (300 + 262.5) / 2])
    assert not flips.any()
    boxes, _ = _plan([CenterCrop(100)], [80, 300], [300, 300])
    np.testing.assert_allclose(boxes, [[0, 100, 80, 200], [100, 100, 200, 200]])
    boxes, _ = _plan([Resize((10, 20))], [80], [300])
    np.testing.assert_allclose(boxes, [[0, 0, 80, 300]])
