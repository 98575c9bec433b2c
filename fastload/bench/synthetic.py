"""Small synthetic datasets for ``fastload bench --synthetic``: tokens, images or records.

They stand in for a user's data when there is none yet: token windows of uint16 ids (a language
model corpus, stored raw as random ids do not compress), small records of id/text/label packed
with zstd (the shape of tabular and text sets), and JPEGs with a label (an image classification
set). Generation is deterministic for a given size.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..errors import SourceError

DEFAULT_RECORDS = {"tokens": 20_000, "records": 200_000, "images": 2_000}  # ~82 MB, ~45 MB, ~40 MB
QUICK_RECORDS = {"tokens": 4_000, "records": 50_000, "images": 400}
TOKENS_LEN = 2049  # a 2048-token window plus the shifted target, as GPT-style pre-training reads it
VOCAB = 50_257
IMAGE_SIDE = (192, 320)  # px per side, drawn uniformly: the size of a resized ImageNet-like photo
_WORDS = ("the of and to in is was for on that with as by at from data loader shard block record "
          "token image batch epoch train model memory cache disk fast read write river mountain city").split()
_CHUNK = 5_000


def generate(kind: str, out: str | Path, records: int, *, seed: int = 0) -> Path:
    """Write a ``kind`` dataset of ``records`` records to ``out`` (replaced if it exists)."""
    import fastload

    out = Path(out)
    if kind == "tokens":
        schema = f"tokens:uint16[{TOKENS_LEN}]"
        with fastload.Writer(out, schema, shard_size="32MB", overwrite=True) as w:
            for c, start in enumerate(range(0, records, _CHUNK)):
                n = min(_CHUNK, records - start)
                rng = np.random.default_rng([seed, c])
                w.write_batch({"tokens": rng.integers(0, VOCAB, size=(n, TOKENS_LEN), dtype=np.uint16)})
    elif kind == "records":
        words = np.array(_WORDS, dtype=object)
        with fastload.Writer(out, "id:int64,text:str,label:int64", shard_size="32MB", compression="zstd",
                             overwrite=True) as w:
            for c, start in enumerate(range(0, records, _CHUNK)):
                n = min(_CHUNK, records - start)
                rng = np.random.default_rng([seed, c])
                picks = words[rng.integers(0, len(words), size=(n, 40))]
                text = [" ".join(p)[: int(k)] for p, k in zip(picks, rng.integers(150, 251, size=n))]
                w.write_batch({"id": np.arange(start, start + n, dtype=np.int64), "text": text,
                               "label": rng.integers(0, 10, size=n, dtype=np.int64)})
    elif kind == "images":
        encode = _jpeg_encoder()
        with fastload.Writer(out, "image:image,label:int64", shard_size="32MB", overwrite=True) as w:
            for c, start in enumerate(range(0, records, 256)):
                n = min(256, records - start)
                rng = np.random.default_rng([seed, c])
                images = [encode(_picture(rng)) for _ in range(n)]
                w.write_batch({"image": images, "label": rng.integers(0, 10, size=n, dtype=np.int64)})
    else:
        raise ValueError(f"unknown synthetic dataset {kind!r}; valid: tokens, images, records")
    return out


def _picture(rng: np.random.Generator) -> np.ndarray:
    """An HWC uint8 picture with smooth regions and texture, so it compresses like a photo (~20 KB)."""
    h, w = (int(v) for v in rng.integers(*IMAGE_SIDE, size=2))
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    x = np.linspace(0, 1, w, dtype=np.float32)[None, :, None]
    a, b, c = rng.random((3, 1, 1, 3), dtype=np.float32)
    img = 255 * (0.5 + 0.25 * np.sin(6 * (a * x + b * y) + 3 * c) + 0.25 * np.cos(9 * x * y * b))
    img += rng.normal(0, 12, size=(h, w, 3)).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def _jpeg_encoder():
    try:
        import simplejpeg

        return lambda img: simplejpeg.encode_jpeg(np.ascontiguousarray(img), quality=90)
    except ImportError:
        pass
    try:
        from PIL import Image

        def pil(img: np.ndarray) -> bytes:
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="JPEG", quality=90)
            return buf.getvalue()

        return pil
    except ImportError:
        raise SourceError("--synthetic images needs simplejpeg or Pillow to write JPEGs: "
                          "pip install 'fastload[images]'") from None
