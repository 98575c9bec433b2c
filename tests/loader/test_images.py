"""The DataLoader with image transforms: batch tensors written by the workers, deterministic
augmentations (runs, worker counts and types, resume), formats, errors and skipping."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from fastload.errors import RecordDecodeError
from fastload.image import (CenterCrop, DecodeImage, Normalize, RandomHorizontalFlip, RandomResizedCrop, Resize,
                            ToTensor)
from fastload.loader import DataLoader, copy_batch
from tests.image.conftest import _photo_paths, photos, write_image_dataset  # noqa: F401 (photos: a fixture)

N = 24
TRAIN = [RandomResizedCrop(48), RandomHorizontalFlip()]


def _jpeg(img, quality=90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@pytest.fixture(scope="module")
def crops() -> list[bytes]:
    """Real-photo JPEGs of varied sizes: regions of scikit-learn's china.jpg and flower.jpg."""
    photos = [Image.open(p).convert("RGB") for p in _photo_paths()]
    rng = np.random.default_rng(5)
    out = []
    for k in range(N):
        img = photos[k % 2]
        w, h = int(rng.integers(120, 300)), int(rng.integers(120, 300))
        x, y = int(rng.integers(0, 640 - w)), int(rng.integers(0, 427 - h))
        out.append(_jpeg(img.crop((x, y, x + w, y + h))))
    return out


@pytest.fixture(scope="module")
def ds(tmp_path_factory, crops):
    # small shards and blocks: batches cross shards
    return write_image_dataset(tmp_path_factory.mktemp("images") / "ds", crops, shard_size="64KB",
                               block_size="16KB")


def epoch(loader) -> list[dict]:
    return [copy_batch(b) for b in loader]


def same(a: list[dict], b: list[dict]) -> bool:
    return len(a) == len(b) and all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in x)


def one_by_one(monkeypatch) -> None:
    """Turn the batch kernel off: every JPEG goes through ``window.decode_window`` and the resample
    one at a time, in Python (the path of the images the kernel leaves)."""
    from fastload.image import window

    lib = window.library()
    monkeypatch.setattr(window, "library", lambda: window.WindowLibrary(lib.handle, lib.path, decode=lib.decode))


@pytest.mark.parametrize("ops", [TRAIN, [Resize(40), CenterCrop(28)],
                                 [RandomResizedCrop((40, 56)), RandomHorizontalFlip(), Normalize(
                                     (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), dtype="float16"), ToTensor()],
                                 [Resize((30, 20)), Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)), ToTensor("NHWC")]],
                         ids=["train", "eval", "float16-nchw", "float32"])
def test_the_batch_kernel_gives_the_one_by_one_paths_batches(ds, monkeypatch, ops):
    """One native call per batch (window decode + resample, no GIL) against the Python loop over
    the same images: the same decoder and resample kernels, so the same bits, every output form."""
    from fastload.image import window

    assert window.library().api is not None, window.library().reason
    batched = epoch(DataLoader(ds, batch_size=8, num_workers=2, transforms={"image": ops}))
    one_by_one(monkeypatch)
    calls, decode_window = [], window.decode_window
    monkeypatch.setattr(window, "decode_window", lambda *a, **k: calls.append(1) or decode_window(*a, **k))
    assert same(batched, epoch(DataLoader(ds, batch_size=8, num_workers=2, transforms={"image": ops})))
    assert len(calls) == N


def test_batches_are_one_tensor_from_the_slots(ds):
    loader = DataLoader(ds, batch_size=8, transforms={"image": TRAIN})
    batches = epoch(loader)
    assert [b["image"].shape for b in batches] == [(8, 48, 48, 3)] * 3
    assert all(b["image"].dtype == torch.uint8 for b in batches)
    assert torch.cat([b["label"] for b in batches]).tolist() == list(range(N))
    stages = loader.stats()["stages"]
    assert stages["decode"] > 0 and stages["resize"] > 0


@pytest.mark.parametrize("ops", [TRAIN, [Resize(40), CenterCrop(28)]], ids=["train", "eval"])
def test_window_decoding_gives_the_whole_decodes_pixels(ds, monkeypatch, ops):
    """The same batches with JPEGs decoded whole (simplejpeg) and by window (fastload._jpeg): the
    window holds every pixel the resample reads, so at most a float rounding differs (1 level)."""
    from fastload.image import window

    assert window.library().handle is not None, window.library().reason
    one_by_one(monkeypatch)
    calls, decode_window = [], window.decode_window
    monkeypatch.setattr(window, "decode_window", lambda *a, **k: calls.append(1) or decode_window(*a, **k))
    windowed = torch.cat([b["image"] for b in epoch(DataLoader(ds, batch_size=8, transforms={"image": ops}))])
    assert len(calls) == N
    monkeypatch.setattr(window, "library", lambda: window.WindowLibrary(reason="off for this test"))
    whole = torch.cat([b["image"] for b in epoch(DataLoader(ds, batch_size=8, transforms={"image": ops}))])
    diff = (windowed.int() - whole.int()).abs()
    assert diff.max() <= 1 and (diff > 0).float().mean() < 0.001


def test_a_jpeg_the_window_decoder_refuses_is_decoded_whole(ds, monkeypatch):
    """A ValueError from the window decoder (a lossless or 12-bit JPEG it cannot read, or corrupt
    data) hands the image to the whole decode, which gives its pixels or raises as before."""
    from fastload.image import window

    def refuse(*args, **kwargs):
        raise ValueError("JPEG window decode failed: Unsupported JPEG process")

    one_by_one(monkeypatch)
    monkeypatch.setattr(window, "decode_window", refuse)
    refused = epoch(DataLoader(ds, batch_size=8, transforms={"image": TRAIN}))
    monkeypatch.setattr(window, "library", lambda: window.WindowLibrary(reason="off for this test"))
    assert same(refused, epoch(DataLoader(ds, batch_size=8, transforms={"image": TRAIN})))


def test_without_transforms_an_image_field_is_its_stored_bytes(ds, crops):
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["image"] == crops[:4]


def test_eval_transform_matches_pillow(ds, crops):
    """Resize(40) + CenterCrop(28) vs Pillow: the same DCT-reduced decode (Pillow's ``draft``) and
    an antialiased BILINEAR resize of the same box: PSNR >= 40 dB and mean error < 1 level (the
    kernel alone is within 1 level; the loader decodes with the fast IDCT); and vs Pillow at full
    resolution (no DCT reduction): PSNR >= 30 dB."""
    from fastload.image.decode import dct_factor

    from tests.image import torchvision_reference as tv
    from tests.image.conftest import psnr

    loader = DataLoader(ds, batch_size=6, transforms={"image": [Resize(40), CenterCrop(28)]})
    got = torch.cat([b["image"] for b in epoch(loader)]).numpy()
    reduced = 0
    for k, data in enumerate(crops):
        img = Image.open(io.BytesIO(data))
        w, h = img.size
        nh, nw = tv.resized_size(h, w, 40)  # torchvision's whole-pixel resize and crop, as one box
        top, left = tv.center_crop_offsets(nh, nw, 28, 28)
        box = (left * w / nw, top * h / nh, (left + 28) * w / nw, (top + 28) * h / nh)
        full = np.asarray(img.convert("RGB").resize((28, 28), Image.BILINEAR, box=box))
        assert psnr(got[k], full) >= 30, k
        f = dct_factor(h, w, box[3] - box[1], box[2] - box[0], 28, 28)
        img = Image.open(io.BytesIO(data))
        if f > 1:
            img.draft("RGB", (w // f, h // f))
            assert img.size == (-(-w // f), -(-h // f))
            reduced += 1
        sx = sy = 1 / f  # libjpeg's reduced pixel i covers source pixels [i*f, (i+1)*f)
        ref = np.asarray(img.convert("RGB").resize((28, 28), Image.BILINEAR,
                                                   box=(box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)))
        pass
        assert np.abs(got[k].astype(int) - ref.astype(int)).mean() < 1, k
    assert reduced > N // 2  # most of these crops are >= 160 px: decoded at half size or less


def test_train_transform_matches_pillow_on_torchvisions_boxes(ds, crops):
    """RandomResizedCrop + flip through the batch kernel vs Pillow: each record's box is
    torchvision's ``get_params`` for the record's draws (tested in test_torchvision_geometry), cut
    from the same DCT-reduced decode (Pillow's ``draft``) with ``resize(box=..., BILINEAR)``
    and mirrored as drawn. Measured 45.6-49.7 dB and 0.6-1.03 levels on average (the fast IDCT;
    Pillow decodes exactly): tested at >= 42 dB and < 1.25 levels."""
    from fastload.image import ImagePipeline
    from fastload.image.decode import dct_factor

    from tests.image.conftest import psnr

    got = torch.cat([b["image"] for b in epoch(DataLoader(ds, batch_size=8, num_workers=2, seed=3,
                                                          transforms={"image": TRAIN}))]).numpy()
    sizes = np.array([Image.open(io.BytesIO(c)).size[::-1] for c in crops])
    boxes, flips = ImagePipeline.of(TRAIN).plan(sizes[:, 0], sizes[:, 1], 3, 0, np.arange(N))
    assert 0 < flips.sum() < N
    for k, data in enumerate(crops):
        y0, x0, y1, x1 = boxes[k].tolist()
        f = dct_factor(*sizes[k], y1 - y0, x1 - x0, 48, 48)
        img = Image.open(io.BytesIO(data))
        if f > 1:
            img.draft("RGB", (img.size[0] // f, img.size[1] // f))
        ref = img.convert("RGB").resize((48, 48), Image.BILINEAR, box=(x0 / f, y0 / f, x1 / f, y1 / f))
        if flips[k]:
            ref = ref.transpose(Image.FLIP_LEFT_RIGHT)
        ref = np.asarray(ref)
        assert psnr(got[k], ref) >= 42, k
        assert np.abs(got[k].astype(int) - ref.astype(int)).mean() < 1.25, k


@pytest.mark.parametrize("workers, worker_type", [(1, "thread"), (2, "thread"), (2, "process")])
def test_augmentations_do_not_depend_on_workers(ds, workers, worker_type):
    ref = epoch(DataLoader(ds, batch_size=5, shuffle=True, seed=11, transforms={"image": TRAIN}))
    got = epoch(DataLoader(ds, batch_size=5, shuffle=True, seed=11, num_workers=workers,
                           worker_type=worker_type, transforms={"image": TRAIN}))
    assert same(ref, got)


def test_augmentations_change_with_epoch_and_seed_and_repeat_on_rerun(ds):
    def run(seed, ep):
        loader = DataLoader(ds, batch_size=8, seed=seed, transforms={"image": TRAIN})
        loader.set_epoch(ep)
        return epoch(loader)

    a = run(1, 0)
    assert same(a, run(1, 0))
    assert not same(a, run(1, 1)) and not same(a, run(2, 0))
    # re-iterating one loader moves to the next epoch, as set_epoch would
    loader = DataLoader(ds, batch_size=8, seed=1, num_workers=2, persistent_workers=True,
                        transforms={"image": TRAIN})
    first, second = epoch(loader), epoch(loader)
    assert same(first, a) and same(second, run(1, 1))
    loader.close()


def test_resume_sees_the_same_augmentations(ds):
    kw = dict(batch_size=4, shuffle=True, seed=5, transforms={"image": TRAIN})
    full = DataLoader(ds, **kw)
    full.set_epoch(2)
    ref = epoch(full)
    part = DataLoader(ds, num_workers=2, **kw)
    part.set_epoch(2)
    it = iter(part)
    seen = [copy_batch(next(it)) for _ in range(2)]
    state = part.state_dict()
    del it
    resumed = DataLoader(ds, num_workers=2, worker_type="process", **kw)
    resumed.load_state_dict(state)
    assert same(seen + epoch(resumed), ref)


def test_normalized_and_channels_first(ds):
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    base = epoch(DataLoader(ds, batch_size=8, transforms={"image": TRAIN}))
    for dtype in ("float32", "float16"):
        loader = DataLoader(ds, batch_size=8, num_workers=2, transforms={
            "image": TRAIN + [Normalize(mean, std, dtype), ToTensor("NCHW")]})
        for b, ref in zip(epoch(loader), base):
            img = b["image"]
            assert img.shape == (8, 3, 48, 48) and img.dtype == getattr(torch, dtype)
            expected = (ref["image"].permute(0, 3, 1, 2).float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) \
                / torch.tensor(std).view(1, 3, 1, 1)
            torch.testing.assert_close(img.float(), expected, atol=2e-2 if dtype == "float16" else 1e-5,
                                       rtol=1e-3 if dtype == "float16" else 1e-5)


def test_all_image_kinds_in_one_dataset(tmp_path, photos):
    payloads = list(photos.values())
    ds = write_image_dataset(tmp_path / "ds", payloads)
    batch = next(iter(DataLoader(ds, batch_size=len(payloads), transforms={"image": [CenterCrop(32)]})))
    img = batch["image"].numpy()
    assert img.shape == (len(payloads), 32, 32, 3)
    names = list(photos)
    gray = img[names.index("gray.jpg")]
    assert (gray[..., 0] == gray[..., 1]).all()
    # the CMYK, PNG and palette versions of the small crop look like the small crop
    small = img[names.index("small.jpg")].astype(int)
    for other in ("cmyk.jpg", "rgb.png", "rgba.png", "palette.png"):
        assert np.abs(img[names.index(other)].astype(int) - small).mean() < 12, other


def _with_corrupt(tmp_path, crops, bad: set[int]):
    payloads = [c[: len(c) // 3] if k in bad else c for k, c in enumerate(crops)]
    return write_image_dataset(tmp_path / "bad", payloads, shard_size="64KB", block_size="16KB")


@pytest.mark.parametrize("workers", [0, 2])
def test_a_corrupt_image_names_shard_and_record(tmp_path, crops, workers):
    ds = _with_corrupt(tmp_path, crops, {13})
    loader = DataLoader(ds, batch_size=8, num_workers=workers, worker_type="process",
                        transforms={"image": TRAIN})
    with pytest.raises(RecordDecodeError, match=r"shard-\d+\.\w+ block \d+ record \d+: field 'image'") as info:
        epoch(loader)
    s = np.searchsorted(np.cumsum(ds.manifest.shard_records), 13, side="right")
    local = 13 - int(np.concatenate([[0], np.cumsum(ds.manifest.shard_records)])[s])
    assert f"{ds.manifest.shard_names[s]} block " in str(info.value) and f" record {local}:" in str(info.value)
    assert any("record 13 of the dataset" in n for n in info.value.__notes__)


@pytest.mark.parametrize("workers", [0, 2])
def test_corrupt_images_are_skipped_deterministically(tmp_path, crops, workers):
    ds = _with_corrupt(tmp_path, crops, {3, 4, 20})
    loader = DataLoader(ds, batch_size=8, num_workers=workers, on_error="skip", transforms={"image": TRAIN})
    batches = epoch(loader)
    labels = torch.cat([b["label"] for b in batches]).tolist()
    assert labels == [0, 1, 2, 5, 5, 5] + list(range(6, 20)) + [21, 21, 22, 23]
    assert loader.stats()["skipped"] == 3
    ref = epoch(DataLoader(ds, batch_size=8, on_error="skip", transforms={"image": TRAIN}))
    assert same(batches, ref)


def test_transforms_need_a_fastload_image_field(ds):
    with pytest.raises(ValueError, match="apply to image fields"):
        DataLoader(ds, batch_size=4, transforms={"label": [CenterCrop(8)]})
    with pytest.raises(ValueError, match="not one"):
        DataLoader(list(range(10)), batch_size=4, transforms={"image": [CenterCrop(8)]})
    from fastload.errors import SchemaError

    with pytest.raises(SchemaError, match="not image fields among the loaded fields"):
        next(iter(DataLoader(ds, batch_size=4, fields=["label"], transforms={"image": [CenterCrop(8)]})))


def test_gpu_decode_falls_back_to_the_workers_here(ds):
    from fastload.image.gpu import gpu_decode_unavailable

    if gpu_decode_unavailable() is None:
        pytest.skip("this machine decodes on the GPU")
    with pytest.warns(RuntimeWarning, match="falls back to CPU decoding"):
        loader = DataLoader(ds, batch_size=8, transforms={"image": [DecodeImage("cuda")] + TRAIN})
    assert same(epoch(loader), epoch(DataLoader(ds, batch_size=8, transforms={"image": TRAIN})))


def test_the_gpu_path_with_a_cpu_decoder_matches_the_workers(ds, crops):
    """The batch path used with nvJPEG, run on the CPU with simplejpeg standing in for nvJPEG."""
    import simplejpeg

    from fastload.image import ImagePipeline
    from fastload.image.gpu import decode_batch_torch

    def decode(payloads, device):
        return [torch.from_numpy(simplejpeg.decode_jpeg(bytes(p), "RGB")).permute(2, 0, 1).to(device)
                for p in payloads]

    ops = TRAIN + [Normalize((0.5,) * 3, (0.25,) * 3), ToTensor("NCHW")]
    loader = DataLoader(ds, batch_size=8, seed=4, transforms={"image": ops})
    loader.set_epoch(1)
    ref = epoch(loader)
    pipeline = ImagePipeline.of(ops)
    for k, b in enumerate(ref):
        idx = np.arange(8 * k, 8 * k + 8)
        got = decode_batch_torch(pipeline, [crops[i] for i in idx], idx, 4, 1, "cpu", decode=decode)
        assert got.shape == b["image"].shape and got.dtype == b["image"].dtype
        # torch's antialiased bilinear on the whole-pixel box vs the kernel: same picture
        assert (got - b["image"]).abs().mean() < 0.1


def test_the_loader_decodes_gpu_fields_in_the_main_process(ds, monkeypatch):
    """The loader's wiring of DecodeImage("cuda"): bytes from the workers, the batch's indices
    kept in order, one batch decode in the consumer. nvJPEG is replaced by simplejpeg and the
    device is the CPU, the only parts this machine cannot run."""
    import simplejpeg

    from fastload.image import gpu

    monkeypatch.setattr(gpu, "gpu_decode_unavailable", lambda: None)
    monkeypatch.setattr(gpu, "_nvjpeg", lambda payloads, device: [
        torch.from_numpy(simplejpeg.decode_jpeg(bytes(p), "RGB")).permute(2, 0, 1).to(device) for p in payloads])
    kw = dict(batch_size=5, shuffle=True, seed=9, num_workers=2)
    with pytest.warns(UserWarning, match="not an available CUDA device"):
        got = epoch(DataLoader(ds, transforms={"image": [DecodeImage("cuda")] + TRAIN}, device="cpu", **kw))
    ref = epoch(DataLoader(ds, transforms={"image": TRAIN}, **kw))
    assert [b["label"].tolist() for b in got] == [b["label"].tolist() for b in ref]
    for g, r in zip(got, ref):
        assert g["image"].shape == r["image"].shape and g["image"].dtype == torch.uint8
        # same crops and flips; exact IDCT + torch's antialiased bilinear vs the workers' fast
        # IDCT + kernel: ~1.2 levels apart on average (0.1 with the same IDCT)
        assert (g["image"].float() - r["image"].float()).abs().mean() < 2


def test_transforms_refuse_torchs_own_batching(ds):
    with pytest.raises(ValueError, match="need batch_size"):
        DataLoader(ds, batch_size=None, transforms={"image": TRAIN})
    with pytest.raises(ValueError, match="no collate_fn"):
        DataLoader(ds, batch_size=4, collate_fn=lambda rows: rows, transforms={"image": TRAIN})


@pytest.mark.parametrize("workers", [0, 2])
def test_a_corrupt_image_of_a_remote_dataset_names_its_url(tmp_path, crops, workers):
    """A remote dataset's root is a URL (a str): the error names the shard's URL, and skipping works."""
    import fastload
    from tests.storage.servers import StaticServer

    _with_corrupt(tmp_path, crops, {13})
    srv = StaticServer(tmp_path)
    try:
        ds = fastload.open(f"{srv.url}/bad", cache_dir=tmp_path / "cache")
        loader = DataLoader(ds, batch_size=8, num_workers=workers, transforms={"image": TRAIN})
        with pytest.raises(RecordDecodeError, match=rf"{srv.url}/bad/shard-\d+\.\w+ block \d+ record \d+: field 'image'"):
            epoch(loader)
        loader = DataLoader(ds, batch_size=8, num_workers=workers, on_error="skip", transforms={"image": TRAIN})
        assert len(epoch(loader)) == 3 and loader.stats()["skipped"] == 1
    finally:
        srv.close()


def test_skip_checks_a_record_the_way_the_batch_decodes_it(tmp_path, crops, monkeypatch):
    """A record whose exact full-size decode works but whose batch decode (fast IDCT, DCT-reduced,
    windowed) fails is skipped, not raised from the retried batch."""
    from fastload.image import batch, window

    bad = crops[5]
    real, real_window = batch.decode_rgb, window.decode_window

    def decode_rgb(data, p, factor=1, buffer=None, fast=False):
        if fast and bytes(data) == bad:
            raise ValueError("fails only in the fast decode")
        return real(data, p, factor, buffer, fast)

    def decode_window(lib, data, factor, box, buffer, fast):
        if fast and bytes(data) == bad:
            raise ValueError("fails only in the fast window decode")
        return real_window(lib, data, factor, box, buffer, fast)

    one_by_one(monkeypatch)
    monkeypatch.setattr(batch, "decode_rgb", decode_rgb)
    monkeypatch.setattr(window, "decode_window", decode_window)
    ds = write_image_dataset(tmp_path / "ds", crops, shard_size="64KB", block_size="16KB")
    loader = DataLoader(ds, batch_size=8, on_error="skip", transforms={"image": TRAIN})
    labels = torch.cat([b["label"] for b in epoch(loader)]).tolist()
    assert labels == [0, 1, 2, 3, 4, 6, 6] + list(range(7, N)) and loader.stats()["skipped"] == 1


def test_a_corrupt_image_on_the_gpu_path_names_shard_record_and_field(tmp_path, crops, monkeypatch):
    """DecodeImage("cuda") with nvJPEG replaced by simplejpeg on the CPU: a bad image is a
    RecordDecodeError naming the shard file, the record in it and the field, as on the workers' path."""
    import simplejpeg

    from fastload.image import gpu

    def decode(payloads, device):  # one call per batch, failing as a whole like nvJPEG's
        return [torch.from_numpy(simplejpeg.decode_jpeg(bytes(p), "RGB")).permute(2, 0, 1).to(device)
                for p in payloads]

    monkeypatch.setattr(gpu, "gpu_decode_unavailable", lambda: None)
    monkeypatch.setattr(gpu, "_nvjpeg", decode)
    ds = _with_corrupt(tmp_path, crops, {13})
    loader = DataLoader(ds, batch_size=8, device="cpu", transforms={"image": [DecodeImage("cuda")] + TRAIN})
    with (pytest.warns(UserWarning, match="not an available CUDA device"),
          pytest.raises(RecordDecodeError, match=r"shard-\d+\.\w+ block \d+ record \d+: field 'image'") as info):
        epoch(loader)
    assert ds.locate(13) in str(info.value)
    assert any("record 13 of the dataset" in n for n in info.value.__notes__)
