"""Real photographs (scikit-learn's sample images) in the forms the loader must decode."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

import fastload


def _photo_paths() -> list[Path]:
    import sklearn.datasets

    root = Path(sklearn.datasets.__file__).parent / "images"
    return [root / "china.jpg", root / "flower.jpg"]


def _save(img, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="session")
def photos() -> dict[str, bytes]:
    """Encoded real photos, named: the two JPEGs as shipped, and derived grayscale/CMYK JPEGs,
    RGB/RGBA/palette PNGs and a smaller crop (Pillow-made)."""
    from PIL import Image

    china, flower = (p.read_bytes() for p in _photo_paths())
    img = Image.open(io.BytesIO(china)).convert("RGB")
    small = img.crop((100, 50, 420, 290))  # 320 x 240
    rgba = small.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(small.size))
    return {
        "china.jpg": china,
        "flower.jpg": flower,
        "small.jpg": _save(small, "JPEG", quality=90),
        "gray.jpg": _save(small.convert("L"), "JPEG", quality=90),
        "cmyk.jpg": _save(small.convert("CMYK"), "JPEG", quality=90),
        "rgb.png": _save(small, "PNG"),
        "rgba.png": _save(rgba, "PNG"),
        "palette.png": _save(small.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
    }


def pillow_rgb(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def write_image_dataset(root: Path, payloads: list[bytes], **kw) -> fastload.Dataset:
    """A dataset of ``image`` (the payloads, in order) and ``label`` (its position)."""
    with fastload.Writer(root, schema="image:image,label:int64", **kw) as w:
        for k, p in enumerate(payloads):
            w.write({"image": p, "label": k})
    return fastload.open(root)
