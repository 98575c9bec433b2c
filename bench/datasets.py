"""Deterministic generators of the three benchmark inputs, cached under a data directory.

* tokens: ``tokens-<rows>/tokens.npy``, uint16 ``(rows, 2049)`` (full size 200,000 rows, 820 MB), random
  ids below 50,257 (GPT-2's vocabulary), so they do not compress;
* small records: ``records-<rows>.parquet`` (full size 1,000,000 rows) with ``id`` int64, ``text``
  ~200 B of words, ``label`` int64 in [0, 10), pyarrow's default Snappy compression;
* JPEGs: ``jpegs-<n>/<class>/<i>.jpg`` (full size 20,000 in 10 classes): random regions of the two
  real photographs scikit-learn ships (``load_sample_images``: china.jpg, flower.jpg), resized to
  256–500 px per side, randomly flipped, re-encoded at quality 90.

Each chunk is drawn from its own seed, so a smaller scale is exactly a prefix of the full data.
Files are written under a temporary name and renamed, so an interrupted run never leaves a
half-written input that a rerun would take for finished.
"""

from __future__ import annotations

import io
import os
from multiprocessing import get_context
from pathlib import Path

import numpy as np

SEED = 20261
TOKENS_ROWS, TOKENS_LEN, VOCAB = 200_000, 2049, 50_257
RECORDS_ROWS = 1_000_000
JPEGS, JPEG_CLASSES = 20_000, 10
_CHUNK = 10_000
_WORDS = ("the of and to in is was for on that with as by at from his her an which are this be "
          "data loader shard block record token image batch epoch python numpy arrow column field "
          "random sample train model memory cache disk fast read write pack format stream index "
          "alpha beta gamma delta river mountain city green quiet bright winter summer station").split()


def scaled(n: int, scale: float) -> int:
    return max(1, int(round(n * scale)))


def tokens(data_dir: Path, scale: float = 1.0) -> Path:
    rows = scaled(TOKENS_ROWS, scale)
    # a folder per size, so the field fastload names after the file's stem is "tokens"
    path = Path(data_dir) / f"tokens-{rows}" / "tokens.npy"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint16, shape=(rows, TOKENS_LEN))
    for c, start in enumerate(range(0, rows, _CHUNK)):
        stop = min(start + _CHUNK, rows)
        rng = np.random.default_rng([SEED, 1, c])
        mm[start:stop] = rng.integers(0, VOCAB, size=(_CHUNK, TOKENS_LEN), dtype=np.uint16)[: stop - start]
    mm.flush()
    del mm
    os.replace(tmp, path)
    return path


def records(data_dir: Path, scale: float = 1.0) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = scaled(RECORDS_ROWS, scale)
    path = Path(data_dir) / f"records-{rows}.parquet"
    if path.exists():
        return path
    tmp = path.with_suffix(".tmp")
    words = np.array(_WORDS, dtype=object)
    with pq.ParquetWriter(tmp, pa.schema([("id", pa.int64()), ("text", pa.string()), ("label", pa.int64())])) as w:
        for c, start in enumerate(range(0, rows, _CHUNK * 10)):
            stop = min(start + _CHUNK * 10, rows)
            rng = np.random.default_rng([SEED, 2, c])
            n = stop - start
            picks = words[rng.integers(0, len(words), size=(n, 48))]
            # ~200 B: words are ~4.3 characters plus a space; cut at a per-row length in [150, 250]
            cut = rng.integers(150, 251, size=n)
            text = [" ".join(p)[:k] for p, k in zip(picks, cut)]
            w.write_table(pa.table({"id": np.arange(start, stop, dtype=np.int64), "text": text,
                                    "label": rng.integers(0, 10, size=n, dtype=np.int64)}))
    os.replace(tmp, path)
    return path


def _photos() -> list:
    from sklearn.datasets import load_sample_images

    return list(load_sample_images().images)


_PHOTOS: list | None = None


def _jpeg_worker(args: tuple[int, int, str]) -> int:
    from PIL import Image

    global _PHOTOS
    start, stop, folder = args
    if _PHOTOS is None:
        _PHOTOS = [Image.fromarray(p) for p in _photos()]
    for i in range(start, stop):
        rng = np.random.default_rng([SEED, 3, i])
        photo = _PHOTOS[int(rng.integers(0, len(_PHOTOS)))]
        W, H = photo.size
        cw, ch = int(rng.integers(96, W // 2 + 1)), int(rng.integers(96, H // 2 + 1))
        x, y = int(rng.integers(0, W - cw + 1)), int(rng.integers(0, H - ch + 1))
        size = (int(rng.integers(256, 501)), int(rng.integers(256, 501)))
        img = photo.crop((x, y, x + cw, y + ch)).resize(size, Image.Resampling.BICUBIC)
        if rng.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        cls = f"class_{i % JPEG_CLASSES:02d}"
        Path(folder, cls, f"{i:06d}.jpg").write_bytes(buf.getvalue())
    return stop - start


def jpegs(data_dir: Path, scale: float = 1.0, processes: int = 2) -> Path:
    n = scaled(JPEGS, scale)
    path = Path(data_dir) / f"jpegs-{n}"
    if path.exists():
        return path
    tmp = Path(data_dir) / f"jpegs-{n}.tmp"
    for c in range(JPEG_CLASSES):
        (tmp / f"class_{c:02d}").mkdir(parents=True, exist_ok=True)
    jobs = [(s, min(s + 500, n), str(tmp)) for s in range(0, n, 500)]
    with get_context("fork").Pool(processes) as pool:
        for _ in pool.imap_unordered(_jpeg_worker, jobs):
            pass
    os.replace(tmp, path)
    return path


def all_inputs(data_dir: Path, scale: float) -> dict[str, Path]:
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    return {"tokens": tokens(data_dir, scale), "records": records(data_dir, scale), "jpegs": jpegs(data_dir, scale)}


if __name__ == "__main__":
    import argparse

    from .common import DEFAULT_DATA_DIR, tree_bytes

    ap = argparse.ArgumentParser(description="generate (or find) the benchmark inputs")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    ap.add_argument("--scale", type=float, default=1.0)
    a = ap.parse_args()
    for name, p in all_inputs(a.data_dir, a.scale).items():
        print(f"{name}: {p} ({tree_bytes(p) / 1e6:.1f} MB)")
