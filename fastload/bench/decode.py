"""Decode cost per core: zstd decompression, checksums, and each field's gather and decode.

Every figure is single-threaded, so it reads as "per core": a loader with N busy workers can at
best do N times it. A field's cost is split in two: the gather (copying its stored bytes out of
the blocks, one native call) and the decode to Python values (UTF-8, JSON, arrays, images).
"""

from __future__ import annotations

import io
import time
from typing import Any, Callable

import numpy as np

from ..format.codec import checksum, decompress
from ..format.dataset import Dataset, decode_var
from ..format.spec import CODEC_NONE
from ..format.varcolumn import NullableColumn

IMAGES_MAX = 64  # images decoded per repeat: at ~2-10 ms each, a repeat stays under a second


def image_decoder() -> tuple[str, Callable[[bytes], np.ndarray]] | None:
    """The decoder the loader uses (fastload.image) where the ``images`` extra is installed; else
    the fastest available one to HWC uint8: simplejpeg (JPEG only), else Pillow."""
    from ..image.decode import missing_decoders

    if not missing_decoders():
        from ..image import decode_rgb, probe

        return "fastload.image.decode_rgb", lambda b: decode_rgb(b, probe(b))
    pil = None
    try:
        from PIL import Image

        def pil(b: bytes) -> np.ndarray:
            return np.asarray(Image.open(io.BytesIO(b)).convert("RGB"))
    except ImportError:
        pass
    try:
        import simplejpeg

        def fast(b: bytes) -> np.ndarray:
            if b[:2] == b"\xff\xd8":
                return simplejpeg.decode_jpeg(b)
            if pil is None:
                raise ValueError("not a JPEG, and Pillow is not installed to decode it")
            return pil(b)

        return "simplejpeg" + (" (Pillow for non-JPEG)" if pil else ""), fast
    except ImportError:
        pass
    return ("Pillow", pil) if pil is not None else None


def _median_rate(fn: Callable[[], int], repeats: int) -> float:
    """Median of units/s over ``repeats`` calls of ``fn`` (which returns the units it did)."""
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        units = fn()
        rates.append(units / max(time.perf_counter() - t0, 1e-9))
    return float(np.median(rates))


def zstd_and_checksum(ds: Dataset, repeats: int, max_blocks: int = 32) -> dict:
    """Decompression (MB/s of raw output) and checksum (MB/s) per core, on the first blocks."""
    reader = ds.shard(0)
    blocks = list(range(min(reader.n_blocks, max_blocks)))
    compressed = [b for b in blocks if int(reader.blocks[b]["codec"]) != CODEC_NONE]
    out: dict[str, Any] = {"compression": ds.manifest.settings.get("compression", "none"),
                           "blocks_sampled": len(blocks), "blocks_compressed": len(compressed)}
    stored = [np.array(reader.stored(b)) for b in blocks]  # copies: hashing reads RAM, not the disk
    out["checksum_mb_s"] = _median_rate(lambda: _hash_all(stored) / 1e6, repeats)
    if compressed:
        rows = [reader.blocks[b] for b in compressed]
        items = [(np.array(reader.stored(b)), int(r["codec"]), int(r["raw_size"])) for b, r in zip(compressed, rows)]
        out["zstd_mb_s"] = _median_rate(lambda: sum(len(decompress(s, c, n)) for s, c, n in items) / 1e6, repeats)
        raw = sum(n for _, _, n in items)
        out["ratio"] = raw / max(sum(len(s) for s, _, _ in items), 1)
    return out


def _hash_all(buffers: list[np.ndarray]) -> int:
    for b in buffers:
        checksum(b)
    return sum(b.size for b in buffers)


def _gather_count(ds: Dataset, idx: np.ndarray, name: str) -> int:
    ds.gather(idx, [name])
    return len(idx)


def fields(ds: Dataset, repeats: int, sample: int = 1024, seed: int = 0) -> dict[str, dict]:
    """Per field: gather and decode rates (samples/s per core) and stored bytes per record."""
    rng = np.random.default_rng(seed)
    # from the first shard only: a sample across all shards would read (or download) all of them
    first = int(ds.manifest.shard_records[0])
    idx = np.sort(rng.choice(first, size=min(sample, first), replace=False))
    ds.gather(idx)  # first touch: maps shards, verifies and decompresses blocks (measured apart)
    decoder = None
    out: dict[str, dict] = {}
    for f in ds.schema:
        rec: dict[str, Any] = {"kind": f.kind, "spec": f.spec}
        cols = ds.gather(idx, [f.name])
        col = cols[f.name]
        if isinstance(col, NullableColumn):  # a field with nulls: measure its values
            col = col.values
        nbytes = col.nbytes if f.is_fixed else int(col.data.size + 4 * len(idx))
        rec["bytes_per_record"] = nbytes / len(idx)
        rec["gather_samples_s"] = _median_rate(lambda: _gather_count(ds, idx, f.name), repeats)
        if f.is_fixed:
            rec["decode"] = "none (fixed-size: the gather is the decode)"
        elif f.kind == "image":
            decoder = decoder or image_decoder()
            payloads = decode_var(f, col)[:IMAGES_MAX]
            if decoder is None:
                rec["decode"] = "skipped: no image decoder installed (pip install 'fastload[images]')"
            else:
                name, fn = decoder
                pixels = sum(fn(p).size // 3 for p in payloads)
                rec["decode"] = f"{name} to RGB"
                rec["decode_samples_s"] = _median_rate(lambda: len([fn(p) for p in payloads]), repeats)
                rec["megapixels_per_image"] = pixels / len(payloads) / 1e6
        else:
            rec["decode"] = {"str": "UTF-8 to str", "json": "json.loads", "bytes": "slices to bytes"}.get(
                f.kind, "bytes to NumPy arrays")
            rec["decode_samples_s"] = _median_rate(lambda: len(decode_var(f, col)), repeats)
        out[f.name] = rec
    return out


def per_sample_seconds(field_rates: dict[str, dict], codec: dict, bytes_per_record: float) -> dict[str, float]:
    """Single-core seconds per sample spent in each part: checksum, decompression, gather, decode."""
    parts: dict[str, float] = {}
    if codec.get("zstd_mb_s"):
        share = codec["blocks_compressed"] / max(codec["blocks_sampled"], 1)
        parts["decompression"] = share * bytes_per_record * codec.get("ratio", 1.0) / (codec["zstd_mb_s"] * 1e6)
    gather = sum(1 / r["gather_samples_s"] for r in field_rates.values() if r.get("gather_samples_s"))
    parts["gather"] = gather
    for name, r in field_rates.items():
        if r.get("decode_samples_s"):
            key = "image decode" if r["kind"] == "image" else "decode"
            parts[key] = parts.get(key, 0.0) + 1 / r["decode_samples_s"]
    return parts
