"""pack's image options: --max-side, --jpeg-quality, --image-format keep|jpeg|raw (API and CLI)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fastload
from fastload.errors import SourceError
from fastload.image.decode import decode_rgb, probe
from fastload.pack.image_options import ImageOptions
from tests.image.conftest import photos, psnr  # noqa: F401 (photos: a fixture)


@pytest.fixture(scope="module")
def folder(tmp_path_factory, photos):
    """root/<class>/<file>: the sample photos (640 x 427) and small derived images."""
    root = tmp_path_factory.mktemp("imgs") / "folder"
    for cls, names in (("a", ["china.jpg", "small.jpg", "gray.jpg"]), ("b", ["flower.jpg", "rgba.png", "cmyk.jpg"])):
        (root / cls).mkdir(parents=True)
        for name in names:
            (root / cls / name).write_bytes(photos[name])
    return root


def _images(out) -> list[bytes]:
    return [r["image"] for r in fastload.open(out)]


def test_keep_stores_the_files_bytes(folder, tmp_path):
    fastload.pack(folder, tmp_path / "out", progress=False)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    assert _images(tmp_path / "out") == [p.read_bytes() for p in files]
    assert "image_options" not in fastload.open(tmp_path / "out").metadata


def test_max_side_resizes_only_larger_images_and_keeps_their_format(folder, tmp_path):
    fastload.pack(folder, tmp_path / "out", progress=False, max_side=400, jpeg_quality=85)
    ds = fastload.open(tmp_path / "out")
    assert ds.metadata["image_options"] == {"max_side": 400, "jpeg_quality": 85, "image_format": "keep"}
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    for path, data in zip(files, _images(tmp_path / "out")):
        original = path.read_bytes()
        p = probe(data)
        if path.name in ("china.jpg", "flower.jpg"):  # 640 x 427 -> 400 x 267, still a JPEG
            assert (p.width, p.height, p.kind) == (400, 267, "jpeg")
            ref = np.asarray(Image.open(path).convert("RGB").resize((400, 267), Image.LANCZOS))
            assert psnr(decode_rgb(data, p), ref) > 30
        else:  # 320 x 240: untouched
            assert data == original


def test_jpeg_reencodes_everything(folder, tmp_path):
    fastload.pack(folder, tmp_path / "q90", progress=False, image_format="jpeg", jpeg_quality=90)
    fastload.pack(folder, tmp_path / "q30", progress=False, image_format="jpeg", jpeg_quality=30)
    assert fastload.open(tmp_path / "q90").schema.describe() == "image: image[jpeg], label: int64"
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    q90, q30 = _images(tmp_path / "q90"), _images(tmp_path / "q30")
    assert sum(map(len, q30)) < 0.6 * sum(map(len, q90))
    for path, data in zip(files, q90):
        assert data.startswith(b"\xff\xd8")
        p = probe(data)
        assert p.kind == "jpeg"  # CMYK and RGBA became RGB JPEGs
        ref = np.asarray(Image.open(path).convert("RGB"))
        assert psnr(decode_rgb(data, p), ref) > 30, path.name


def test_raw_stores_pixels_the_loader_reads(folder, tmp_path):
    fastload.pack(folder, tmp_path / "raw", progress=False, image_format="raw", max_side=100)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    for path, data in zip(files, _images(tmp_path / "raw")):
        p = probe(data)
        pixels = decode_rgb(data, p)
        assert p.kind == "raw" and max(pixels.shape[:2]) == 100 and pixels.shape[2] == 3
    from fastload.image import CenterCrop
    from fastload.loader import DataLoader

    batch = next(iter(DataLoader(tmp_path / "raw", batch_size=6, transforms={"image": [CenterCrop(40)]})))
    assert batch["image"].shape == (6, 40, 40, 3)


def test_lossless_raw_round_trip(folder, tmp_path):
    fastload.pack(folder, tmp_path / "raw", progress=False, image_format="raw")
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    for path, data in zip(files, _images(tmp_path / "raw")):
        assert np.array_equal(decode_rgb(data, probe(data)), np.asarray(Image.open(path).convert("RGB")))


def test_bad_images_are_bad_rows(folder, tmp_path):
    broken = tmp_path / "broken"
    (broken / "a").mkdir(parents=True)
    good = (folder / "a" / "small.jpg").read_bytes()
    (broken / "a" / "1.jpg").write_bytes(good)
    # passes the source's cheap structure check (SOI ... EOI), but does not decode
    (broken / "a" / "2.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 50 + b"\xff\xd9")
    with pytest.raises(SourceError, match="image 1: field 'image': cannot decode image: not a format"):
        fastload.pack(broken, tmp_path / "o1", progress=False, image_format="jpeg")
    report = fastload.pack(broken, tmp_path / "o2", progress=False, image_format="jpeg", on_error="skip")
    assert report.skipped == 1 and len(fastload.open(tmp_path / "o2")) == 1


@pytest.mark.parametrize("kw, match", [
    ({"max_side": 0}, "max_side"), ({"jpeg_quality": 101}, "jpeg_quality"), ({"image_format": "webp"}, "keep"),
])
def test_options_validate(kw, match):
    with pytest.raises(ValueError, match=match):
        ImageOptions(**kw)


def test_image_options_need_an_image_field(tmp_path):
    with pytest.raises(fastload.SchemaError, match="no image field"):
        fastload.pack([{"x": 1}], tmp_path / "o", progress=False, max_side=10)


def test_cli_flags(folder, tmp_path):
    out = tmp_path / "cli"
    proc = subprocess.run([sys.executable, "-m", "fastload._cli", "pack", str(folder), str(out), "--no-progress",
                           "--max-side", "300", "--jpeg-quality", "80", "--image-format", "jpeg"],
                          capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert proc.returncode == 0, proc.stderr
    assert fastload.open(out).metadata["image_options"] == {"max_side": 300, "jpeg_quality": 80,
                                                            "image_format": "jpeg"}
    assert all(max(probe(d).height, probe(d).width) <= 300 for d in _images(out))


def test_parallel_pack_gives_the_same_bytes(folder, tmp_path):
    from fastload.pack.sources.imagefolder import ImageFolderSource

    for workers in (1, 2):
        fastload.pack(ImageFolderSource(folder, files_per_segment=2), tmp_path / f"w{workers}", progress=False,
                      workers=workers, max_side=200, image_format="jpeg")
    assert _images(tmp_path / "w1") == _images(tmp_path / "w2")
