"""Write the small peer-library datasets under tests/data/peers/ with each peer's own writer.

Run with the benchmark environment, where the peers are installed (never with fastload's own)::

    .venv-bench/bin/python tools/make_peer_fixtures.py

Each fixture folder gets the dataset exactly as the peer writes it plus ``expected.json``: the
records that were written, as JSON (bytes as base64, images as sha256, arrays as dtype/shape/
values), in the order the peer stores them. Before writing ``expected.json`` the script reads the
dataset back with the peer's own reader and checks it against the records, so the fixtures are
what the peers really produce. The pack-source tests compare fastload's readers with these files.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

N_RECORDS = 24
WDS_RECORDS = 16
SEED = 20261
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "peers"


# -- the records -------------------------------------------------------------------------------
def tiny_jpeg(i: int) -> bytes:
    """An 8x8 JPEG whose colour depends on ``i``: real encoded bytes, a few hundred of them."""
    from PIL import Image

    rng = np.random.default_rng(SEED + i)
    pixels = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(out, format="JPEG", quality=75)
    return out.getvalue()


def make_records() -> list[dict]:
    """The records every fixture stores (each writer takes the subset its format can hold)."""
    rng = np.random.default_rng(SEED)
    words = ["alpha", "beta", "gamma", "delta", "épsilon", "zeta", "ηta", "θeta"]
    records = []
    for i in range(N_RECORDS):
        records.append({
            "idx": i,
            "label": int(rng.integers(0, 10)),
            "text": " ".join(words[(i + k) % len(words)] for k in range(1 + i % 4)),
            "blob": rng.integers(0, 256, size=int(rng.integers(0, 40)), dtype=np.uint8).tobytes(),
            "vec": rng.standard_normal(4).astype(np.float32),
            "tokens": rng.integers(0, 50_000, size=int(rng.integers(5, 30)), dtype=np.uint16),
            "score": float(np.round(rng.random(), 6)),
            "flag": bool(i % 3 == 0),
            "meta": {"source": f"doc{i:03d}", "tags": ["x"] * (i % 3), "weight": i / 4},
            "jpg": tiny_jpeg(i),
        })
    return records


# -- JSON form of values (what expected.json holds) ---------------------------------------------
def to_expected(value, *, image: bool = False):
    if isinstance(value, (bytes, bytearray)):
        if image:
            return {"sha256": hashlib.sha256(value).hexdigest(), "len": len(value)}
        return {"b64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, np.ndarray):
        return {"dtype": value.dtype.name, "shape": list(value.shape), "values": value.tolist()}
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_expected(folder: Path, fields: dict[str, str], rows: list[dict], note: str) -> None:
    """``fields``: name -> the fastload type the source should report; ``rows``: records in order."""
    images = {name for name, spec in fields.items() if spec.startswith("image")}
    out = {
        "note": note,
        "fields": fields,
        "records": [{k: to_expected(v, image=k in images) for k, v in row.items()} for row in rows],
    }
    _dump(folder / "expected.json", out)


def _dump(path: Path, body: dict) -> None:
    """JSON with one record (or block) per line: small, and readable in a diff."""
    lines = []
    for key, value in body.items():
        if isinstance(value, list):
            inner = ",\n  ".join(json.dumps(v, ensure_ascii=False) for v in value)
            lines.append(f"{json.dumps(key)}: [\n  {inner}\n ]")
        else:
            lines.append(f"{json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}")
    path.write_text("{\n " + ",\n ".join(lines) + "\n}\n")


def check(cond: bool, what: str) -> None:
    if not cond:
        raise SystemExit(f"peer read-back mismatch: {what}")


def fresh(folder: Path) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


# -- WebDataset --------------------------------------------------------------------------------
def make_wds(out: Path, records: list[dict]) -> None:
    import webdataset as wds

    folder = fresh(out / "wds")
    # a tar member costs a 512-byte header plus padding to 512: fewer records keep the files small
    records = records[:WDS_RECORDS]
    # mtime fixed so the tar bytes do not change from one run to the next
    with wds.ShardWriter(str(folder / "shard-%06d.tar"), maxcount=WDS_RECORDS // 2, verbose=0, mtime=0) as sink:
        for r in records:
            sink.write({
                "__key__": f"sample{r['idx']:06d}",
                "cls": r["label"],
                "txt": r["text"],
                "bin": r["blob"],
                "npy": r["vec"],
                "json": r["meta"],
                "jpg": r["jpg"],
                "seg.png": png_of(r["idx"]),
            })
    tars = sorted(str(p) for p in folder.glob("*.tar"))
    got = list(wds.WebDataset(tars, shardshuffle=False).decode())
    check(len(got) == len(records), "wds count")
    for r, g in zip(records, got):
        check(g["__key__"] == f"sample{r['idx']:06d}", "wds key")
        check(g["cls"] == r["label"] and g["txt"] == r["text"] and g["bin"] == r["blob"], "wds scalars")
        check(np.array_equal(g["npy"], r["vec"]) and g["json"] == r["meta"], "wds npy/json")
    raw = list(wds.WebDataset(tars, shardshuffle=False))
    check(all(g["jpg"] == r["jpg"] for r, g in zip(records, raw)), "wds jpg bytes")
    rows = [{
        "__key__": f"sample{r['idx']:06d}", "bin": r["blob"], "cls": r["label"], "jpg": r["jpg"],
        "json": r["meta"], "npy": r["vec"], "seg.png": png_of(r["idx"]), "txt": r["text"],
    } for r in records]
    fields = {"__key__": "str", "bin": "bytes", "cls": "int64", "jpg": "image[jpeg]", "json": "json",
              "npy": "float32[-1]", "seg.png": "image[png]", "txt": "str"}
    write_expected(folder, fields, rows, f"webdataset 1.0.2 ShardWriter, maxcount={WDS_RECORDS // 2}, mtime=0")


def png_of(i: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("L", (2, 2), color=i * 10).save(out, format="PNG")
    return out.getvalue()


# -- MosaicML Streaming (MDS) ------------------------------------------------------------------
MDS_COLUMNS = {
    "idx": "int", "label": "int32", "text": "str", "blob": "bytes", "vec": "ndarray:float32:4",
    "tokens": "ndarray:uint16", "score": "float64", "meta": "json", "jpg": "jpeg", "num": "str_int",
}
MDS_FIELDS = {
    "blob": "bytes", "idx": "int64", "jpg": "image[jpeg]", "label": "int32", "meta": "json",
    "num": "int64", "score": "float64", "text": "str", "tokens": "uint16[-1]", "vec": "float32[4]",
}


def allow_torchvision_import():
    """Make ``import torchvision`` work here (shared/PEERS.md); returns what must stay alive.

    Streaming imports torchvision, and LitData's reader does too. The only torchvision wheel pip
    finds here (0.28.0, built for CUDA) fails to register its operators against the CPU torch
    ("operator torchvision::nms does not exist"). Defining the two operator schemas it looks up
    first lets the import finish; nothing here calls them. The returned library object must be
    kept referenced for the whole run: once it is garbage-collected the schemas are dropped.
    """
    import torch

    if hasattr(torch.ops.torchvision, "nms"):
        return None
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    return lib


def make_mds(out: Path, records: list[dict], name: str, compression: str | None) -> None:
    import streaming
    from PIL import Image

    folder = fresh(out / name)
    with tempfile.TemporaryDirectory() as tmp:
        with streaming.MDSWriter(out=str(folder), columns=MDS_COLUMNS, compression=compression,
                                 size_limit=6 << 10) as sink:
            for r in records:
                # a JPEG opened from a file: MDS stores the file's bytes unchanged
                path = os.path.join(tmp, f"{r['idx']}.jpg")
                Path(path).write_bytes(r["jpg"])
                sink.write({
                    "idx": r["idx"], "label": np.int32(r["label"]), "text": r["text"],
                    "blob": r["blob"], "vec": r["vec"], "tokens": r["tokens"],
                    "score": r["score"], "meta": r["meta"], "jpg": Image.open(path),
                    "num": r["idx"] * 10**12,
                })
    index = json.loads((folder / "index.json").read_text())
    check(len(index["shards"]) >= 2, f"{name}: expected several shards")
    with tempfile.TemporaryDirectory() as tmp:
        # read a copy: Streaming writes the decompressed shards next to the zstd ones it reads
        shutil.copytree(folder, os.path.join(tmp, name))
        ds = streaming.StreamingDataset(local=os.path.join(tmp, name), shuffle=False, batch_size=1)
        check(len(ds) == len(records), f"{name} count")
        for r, i in zip(records, range(len(ds))):
            g = ds[i]
            check(g["idx"] == r["idx"] and g["label"] == r["label"] and g["text"] == r["text"], f"{name} ints")
            check(g["blob"] == r["blob"] and np.array_equal(g["vec"], r["vec"]), f"{name} blob/vec")
            check(np.array_equal(g["tokens"], r["tokens"]) and g["meta"] == r["meta"], f"{name} tokens")
            check(g["score"] == r["score"] and g["num"] == r["idx"] * 10**12, f"{name} score/num")
            check(g["jpg"].size == (8, 8), f"{name} jpeg")
    rows = [{
        "blob": r["blob"], "idx": r["idx"], "jpg": r["jpg"], "label": r["label"], "meta": r["meta"],
        "num": r["idx"] * 10**12, "score": r["score"], "text": r["text"], "tokens": r["tokens"],
        "vec": r["vec"],
    } for r in records]
    write_expected(folder, MDS_FIELDS, rows,
                   f"mosaicml-streaming 0.13.0 MDSWriter, size_limit=6KiB, compression={compression}")


# -- LitData -----------------------------------------------------------------------------------
LIT_FIELDS = {
    "idx": "int64", "text": "str", "blob": "bytes", "score": "float64", "flag": "bool",
    "grid": "float32[-1,-1]", "tokens": "uint16[-1]", "jpg": "image[jpeg]", "meta.source": "str",
    **{f"meta.{k}": "json" for k in ("tags", "ids", "w", "ok", "recs", "mixed")},
}
LIT_TEXT_FIELDS = {"idx": "int64", "text": "str", "score": "float64", "meta.source": "str",
                   "meta.tags": "json", "meta.weight": "float64"}
TOKEN_BLOCK = 16


def _lit_row(r: dict) -> dict:
    i = r["idx"]
    # lists inside the nested dict become "json" leaves, each list kind with its own binary tag
    meta = {"source": r["meta"]["source"], "tags": r["meta"]["tags"], "ids": [i, 2 * i],
            "w": [i / 8, 0.5], "ok": [i % 2 == 0, True], "recs": [{"a": i, "b": f"r{i}"}],
            "mixed": [i, "x", None]}
    return {"idx": i, "text": r["text"], "blob": r["blob"], "score": r["score"], "flag": r["flag"],
            "grid": np.stack([r["vec"], r["vec"] * 2]), "tokens": r["tokens"], "jpg": r["jpg"], "meta": meta}


def _lit_fn(arg):
    """optimize() calls this in a worker process, so it lives at module level."""
    from PIL import Image

    r, jpg_dir = arg
    path = os.path.join(jpg_dir, f"{r['idx']}.jpg")
    Path(path).write_bytes(r["jpg"])
    row = _lit_row(r)
    # a JPEG opened from its file: the "jpeg" serializer stores the file's bytes unchanged
    row["jpg"] = Image.open(path)
    return row  # 2-D "grid" uses the "numpy" serializer, 1-D "tokens" "no_header_numpy"


def _lit_text_fn(r):
    return {"idx": r["idx"], "text": r["text"], "score": r["score"], "meta": r["meta"]}


def _lit_tokens_fn(tokens):
    yield tokens


def _optimize(folder: Path, fn, inputs, **kw) -> None:
    import litdata

    litdata.optimize(fn=fn, inputs=inputs, output_dir=str(folder), num_workers=1, verbose=False,
                     start_method="fork", **kw)


def make_litdata(out: Path, records: list[dict], name: str, compression: str | None) -> None:
    import litdata
    from litdata.streaming.serializers import BytesSerializer

    folder = fresh(out / name)
    with tempfile.TemporaryDirectory() as tmp:
        _optimize(folder, _lit_fn, [(r, tmp) for r in records], chunk_size=10, compression=compression)
    # LitData decodes "jpeg" with torchvision's image extension, which does not load here: read
    # those leaves back as raw bytes instead
    ds = litdata.StreamingDataset(str(folder), serializers={"jpeg": BytesSerializer()})
    check(len(ds) == len(records), f"{name} count")
    samples = [_lit_row(r) for r in records]
    for i, row in enumerate(samples):
        g = ds[i]
        for k, v in row.items():
            same = np.array_equal(g[k], v) if isinstance(v, np.ndarray) else (
                bytes(g[k]) == v if isinstance(v, bytes) else g[k] == v)
            check(same, f"{name} record {i} field {k}")
    # fastload names a nested leaf by its path: meta.source, meta.tags...
    rows = [{**{k: v for k, v in row.items() if k != "meta"}, **{f"meta.{k}": v for k, v in row["meta"].items()}}
            for row in samples]
    write_expected(folder, LIT_FIELDS, rows,
                   f"litdata 0.2.76 optimize, chunk_size=10, 1 worker, compression={compression}")


def make_litdata_text(out: Path, records: list[dict]) -> None:
    """JSON-like rows only: LitData stores them as an Arrow IPC footer, not as pytree items."""
    import litdata

    folder = fresh(out / "litdata_text")
    _optimize(folder, _lit_text_fn, records, chunk_size=10)
    ds = litdata.StreamingDataset(str(folder))
    check([ds[i] for i in range(len(ds))] == [_lit_text_fn(r) for r in records], "litdata_text rows")
    rows = [{"idx": r["idx"], "text": r["text"], "score": r["score"], "meta.source": r["meta"]["source"],
             "meta.tags": r["meta"]["tags"], "meta.weight": r["meta"]["weight"]} for r in records]
    write_expected(folder, LIT_TEXT_FIELDS, rows, "litdata 0.2.76 optimize of str/int/float/dict rows, chunk_size=10")


def make_litdata_tokens(out: Path, records: list[dict]) -> None:
    """TokensLoader: expected.json holds the stored items and the blocks LitData's reader cuts."""
    import litdata
    from litdata.streaming.item_loader import TokensLoader

    folder = fresh(out / "litdata_tokens")
    # chunk_bytes is tiny on purpose (several chunks); LitData warns when an item overshoots it
    warnings.filterwarnings("ignore", message="An item was larger than the target chunk size")
    _optimize(folder, _lit_tokens_fn, [r["tokens"] for r in records], chunk_bytes=256,
              item_loader=TokensLoader())
    ds = litdata.StreamingDataset(str(folder), item_loader=TokensLoader(block_size=TOKEN_BLOCK))
    blocks = [np.asarray(ds[i]) for i in range(len(ds))]
    check(len(blocks) > 0 and all(b.shape == (TOKEN_BLOCK,) for b in blocks), "litdata_tokens blocks")
    write_expected(folder, {"tokens": "uint16[-1]"}, [{"tokens": r["tokens"]} for r in records],
                   "litdata 0.2.76 optimize with TokensLoader, chunk_bytes=256; 'blocks' are what "
                   f"StreamingDataset(item_loader=TokensLoader(block_size={TOKEN_BLOCK})) returns")
    body = json.loads((folder / "expected.json").read_text())
    body["block_size"] = TOKEN_BLOCK
    body["blocks"] = [to_expected(b.astype(np.uint16)) for b in blocks]
    _dump(folder / "expected.json", body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    keep = allow_torchvision_import()
    records = make_records()
    make_wds(args.out, records)
    make_mds(args.out, records, "mds", None)
    make_mds(args.out, records, "mds_zstd", "zstd")
    make_litdata(args.out, records, "litdata", None)
    make_litdata(args.out, records, "litdata_zstd", "zstd")
    make_litdata_text(args.out, records)
    make_litdata_tokens(args.out, records)
    del keep
    return 0


if __name__ == "__main__":
    sys.exit(main())
