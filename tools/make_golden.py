"""Write the golden dataset of the current format version, with the values it must read back as.

    python tools/make_golden.py                 # writes tests/data/golden/v<FORMAT_VERSION>/
    python tools/make_golden.py --out DIR --force

Run it once per released format version and commit the result: tests/format/test_golden.py opens
every tests/data/golden/v*/ dataset on each run and compares every record with its expected.json,
so datasets written by older releases stay readable. Never regenerate an existing version's
directory; a change that makes an old golden dataset fail is a format break.

The dataset covers every field kind, blocks of one and of several records, zstd and raw blocks in
the same shard, an all-raw shard (the reader's zero-copy path) and an all-zstd one, in well under
150 KB. From version 2 it also covers names that need quoting, the logical types (timestamp with a
zone, date, time, duration, decimal), null and nested (arrow) fields, and nulls in every kind of
field, in some blocks and not in others (so both a bitmap and its absence are read). The block and shard boundaries are laid out explicitly (``LAYOUT``) with the writer's own
building blocks, because the Writer stores a block raw only when zstd cannot shrink it, which
small golden data rarely gives. ``expected.json`` is built from the values written, not from
reading them back.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import math
from decimal import Decimal
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa

import fastload
from fastload import Field, Manifest, Schema
from fastload.format.block import encode_block
from fastload.format.columns import convert_columns
from fastload.format.schema import NUMERIC_DTYPES, encode_arrow_type
from fastload.format.shard_writer import ShardWriter
from fastload.format.spec import CODEC_NONE, CODEC_ZSTD, FORMAT_VERSION, shard_name
from fastload.format.writer import codec_settings, prepare_output

REPO = Path(__file__).resolve().parent.parent
N_RECORDS = 24
# shards, each a list of blocks (first record, end record, codec)
LAYOUT = [
    [(0, 1, CODEC_NONE), (1, 4, CODEC_NONE)],  # all raw
    [(4, 5, CODEC_ZSTD), (5, 9, CODEC_NONE), (9, 12, CODEC_ZSTD)],  # mixed
    [(12, 13, CODEC_ZSTD), (13, 18, CODEC_ZSTD)],  # all zstd
    [(18, 20, CODEC_NONE), (20, 24, CODEC_ZSTD)],
]
LEVEL = 19

NESTED = pa.struct([("a", pa.int64()), ("tags", pa.list_(pa.string())),
                    ("m", pa.map_(pa.string(), pa.float64()))])
SCHEMA = Schema((
    *(Field(f"n_{dt}", "scalar", dtype=dt) for dt in NUMERIC_DTYPES),
    Field.parse("when", "timestamp[ms, tz=Europe/Paris]"),
    Field.parse("größe", "date32"),
    Field.parse("t64", "time64[ns]"),
    Field.parse("dur", "duration[us]"),
    Field.parse("price", "decimal128(12, 3)"),
    Field("nested", "arrow", arrow_type=encode_arrow_type(NESTED)),
    Field("ragged", "arrow", arrow_type=encode_arrow_type(pa.list_(pa.list_(pa.int32())))),
    Field("nothing", "null"),
    Field("Body Mass (g)", "scalar", dtype="float64"),
    Field('q"uote:[x],y', "array", dtype="float32", shape=(3,)),
    Field("2nd", "str"),
    Field("maybe_var", "array", dtype="int16", shape=(-1,)),
    Field("maybe_img", "image", image_format="png"),
    Field("fixed1", "array", dtype="uint16", shape=(4,)),
    Field("fixed2", "array", dtype="float32", shape=(2, 3)),
    Field("var1", "array", dtype="int64", shape=(-1,)),
    Field("var2", "array", dtype="float64", shape=(-1, 2)),
    Field("var3", "array", dtype="uint8", shape=(2, -1)),
    Field("text", "str"),
    Field("blob", "bytes"),
    Field("meta", "json"),
    Field("jpeg", "image", image_format="jpeg"),
    Field("png", "image", image_format="png"),
    Field("any_image", "image"),
))
TEXTS = ["", "ascii", "naïve café", "日本語", "emoji 🎉", "nul\x00byte", "tab\tand\nnewline"]


def _image(fmt: str, seed: int) -> bytes:
    """A tiny real image (3x2 RGB noise): Pillow's JPEG of it is ~350 bytes, its PNG ~100."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (2, 3, 3), dtype=np.uint8), "RGB")
    buf = io.BytesIO()
    img.save(buf, format=fmt, **({"optimize": True} if fmt == "JPEG" else {}))
    return buf.getvalue()


def _number(dtype: str, k: int):
    dt = np.dtype(dtype)
    if dt.kind == "b":
        return k % 3 == 1
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return [int(info.min), int(info.max), 0, 1, k * 3][k % 5]
    info = np.finfo(dt)
    return [k / 3, -0.0, float(info.max), float(info.tiny), math.inf, -math.inf, math.nan, -2.5][k % 8]


def make_records() -> list[dict]:
    rng = np.random.default_rng(20240101)
    jpegs = [_image("JPEG", s) for s in range(3)]
    pngs = [_image("PNG", s) for s in range(3)]
    out = []
    for k in range(N_RECORDS):
        rec = {f"n_{dt}": _number(dt, k) for dt in NUMERIC_DTYPES}
        rec.update(
            fixed1=(np.arange(4, dtype=np.uint16) * 1000 + k),
            fixed2=(np.arange(6, dtype=np.float32).reshape(2, 3) / (k + 1)),
            var1=np.arange(k % 5, dtype=np.int64) * (-(10**12)) + k,
            var2=rng.standard_normal((k % 3, 2)),
            var3=np.full((2, k % 4), k, dtype=np.uint8),
            text=TEXTS[k % len(TEXTS)] * (1 + k % 2),
            blob=rng.bytes((k * 37) % 150) if k % 2 else bytes(k % 3) + b"abc" * (k % 4),
            meta=[None, {"k": k, "tags": ["a", "é"][: k % 3], "deep": {"x": [1.5, None, True]}},
                  [k, "s", {"n": -k}], "just a string", 2**70 + k, {}][k % 6],
            jpeg=jpegs[k % 3],
            png=pngs[k % 3],
            any_image=[jpegs[0], pngs[1], b"GIF89a" + bytes(10)][k % 3],
        )
        if FORMAT_VERSION >= 2:
            rec.update(_version2_values(k, pngs))
        out.append(rec)
    return out


def _version2_values(k: int, pngs: list[bytes]) -> dict:
    """Values of the fields version 2 added; nulls fall in records 2, 5-7 and 20 only, so some
    blocks have bitmaps and others (shards 0 and 2) none."""
    null = k in (2, 5, 6, 7, 20)
    return {
        # timestamps, dates, times and durations are given as the integers of their unit
        "when": None if null else (k - 12) * 86_400_123 + 1,
        "größe": None if null else [-719162, 0, 19000, 2932896][k % 4],  # 0001-01-01 .. 9999-12-31
        "t64": None if null else k * 3_600_000_000_123 % 86_400_000_000_000,
        "dur": None if null else (k - 10) * 10**9 + 7,
        "price": None if null else Decimal(f"{(k - 12) * 1234567}.{k:03d}"),
        "nested": None if k == 5 else {"a": None if k == 6 else k, "tags": [str(i) for i in range(k % 3)],
                                       "m": [("x", k / 4), ("é", -0.0)][: k % 3] if k % 4 else None},
        "ragged": None if k == 20 else [[j] * j for j in range(k % 4)] + ([[]] if k % 2 else []),
        "nothing": None,
        "Body Mass (g)": None if k in (5, 20) else [k / 3, math.nan, -math.inf, 1e300][k % 4],
        'q"uote:[x],y': None if k in (2, 6) else np.arange(3, dtype=np.float32) * k,
        "2nd": None if k == 7 else TEXTS[k % len(TEXTS)],
        "maybe_var": None if k in (6, 7) else np.arange(k % 4, dtype=np.int16) - k,
        "maybe_img": None if k == 20 else pngs[k % 3],
    }


# -- expected.json: JSON-able forms of the values -------------------------------------------
def _num_list(a: np.ndarray):
    """Nested lists; non-finite floats as the strings 'nan', 'inf', '-inf' (JSON has none)."""
    if a.dtype.kind != "f":
        return a.tolist()
    flat = ["nan" if math.isnan(v) else ("inf" if v == math.inf else "-inf" if v == -math.inf else v)
            for v in a.astype(np.float64).reshape(-1).tolist()]
    return np.array(flat, dtype=object).reshape(a.shape).tolist()


def encode_value(f: Field, v) -> dict:
    if v is None:
        return {"null": True}
    if f.logical is not None and f.logical.startswith("decimal"):
        return {"decimal": str(v)}
    if f.logical is not None:
        return {"logical": f.logical, "storage": int(v)}
    if f.kind == "arrow":
        return {"nested": _json_nested(v)}
    if f.kind == "scalar":
        return {"dtype": f.dtype, "value": _num_list(np.asarray(v).astype(f.np_dtype))}
    if f.kind == "array":
        a = np.asarray(v).astype(f.np_dtype)
        return {"dtype": f.dtype, "shape": list(a.shape), "data": _num_list(a)}
    if f.kind == "str":
        return {"str": v}
    if f.kind in ("bytes", "image"):
        return {"base64": base64.b64encode(bytes(v)).decode("ascii")}
    return {"json": v}


def _json_nested(v):
    """A nested value as JSON: map pairs as 2-lists, floats as in _num_list."""
    if isinstance(v, dict):
        return {k: _json_nested(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_nested(x) for x in v]
    if isinstance(v, float):
        return _num_list(np.array([v]))[0]
    return v


def write_dataset(out: Path, records: list[dict]) -> Manifest:
    """Write ``records`` as laid out in LAYOUT, with the same pieces the Writer uses."""
    settings = codec_settings(block_size="4KB", compression="zstd", level=LEVEL)
    prepare_output(out, overwrite=False)
    infos = []
    for s, blocks in enumerate(LAYOUT):
        shard = ShardWriter(out / shard_name(s), SCHEMA, settings)
        for start, stop, codec in blocks:
            n = stop - start
            columns = {f.name: [r[f.name] for r in records[start:stop]] for f in SCHEMA}
            conv, bad = convert_columns(SCHEMA, columns, n)
            if bad:
                raise SystemExit(f"bad golden records: {bad}")
            shard.add(encode_block(SCHEMA, conv, n, codec, LEVEL))
        infos.append(shard.close())
    manifest = Manifest.from_shards(SCHEMA, settings, infos, {"golden": f"format version {FORMAT_VERSION}"})
    manifest.write(out)
    return manifest


def write_expected(out: Path, records: list[dict], manifest: Manifest) -> None:
    """expected.json: a few header keys, then one record per line (diffable, and small)."""
    head = {
        "format_version": FORMAT_VERSION,
        "written_by": f"fastload {fastload.__version__}, tools/make_golden.py",
        "schema": manifest.schema.to_json(),  # with the nullable fields marked
        "num_records": len(records),
        "metadata": manifest.metadata,
    }
    lines = [json.dumps(head, ensure_ascii=False)[:-1] + ', "records": [']
    rows = [json.dumps({f.name: encode_value(f, r[f.name]) for f in SCHEMA}, ensure_ascii=False)
            for r in records]
    lines.append(",\n".join(rows))
    lines.append("]}")
    (out / "expected.json").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "data" / "golden" / f"v{FORMAT_VERSION}")
    parser.add_argument("--force", action="store_true", help="replace an existing golden dataset")
    args = parser.parse_args(argv)
    out: Path = args.out
    if out.exists() and any(out.iterdir()):
        if not args.force:
            print(f"{out} exists; golden datasets are never regenerated (--force is for a new version "
                  "under development)", file=sys.stderr)
            return 1
        for p in out.iterdir():
            p.unlink()
    records = make_records()
    manifest = write_dataset(out, records)
    write_expected(out, records, manifest)

    # check what the golden set claims to cover, and that it reads back
    ds = fastload.open(out)
    codecs = [sorted({int(c) for c in ds.shard(s).blocks["codec"]}) for s in range(ds.n_shards)]
    wanted = [sorted({codec for _, _, codec in blocks}) for blocks in LAYOUT]
    total = sum(p.stat().st_size for p in out.iterdir())
    if codecs != wanted or total > 150_000:
        print(f"coverage check failed: codecs per shard {codecs} (wanted {wanted}), {total} bytes",
              file=sys.stderr)
        return 1
    ds.verify_all()
    json.loads((out / "expected.json").read_text(encoding="utf-8"))
    print(f"wrote {out}: {len(ds)} records, {ds.n_shards} shards, codecs per shard {codecs}, {total} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
