"""Each system's own writer, on the benchmark inputs, behind one signature: ``write(src, out, workers)``.

Everyone targets 64 MB shards (64,000,000 bytes): fastload ``shard_size="64MB"``, MDS
``size_limit=64_000_000``, LitData ``chunk_bytes=64_000_000``, WebDataset ``maxsize=64e6``.
JPEGs are stored as the encoded bytes on disk, unchanged, by every system.

Streaming (MosaicML) imports torchvision, whose only wheel here cannot load against the CPU torch;
:func:`import_streaming` defines the two operator schemas torchvision looks up first (defining
them is enough: no torchvision operator is called). This lives here, in the benchmarks, never in fastload.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

import numpy as np

SHARD_BYTES = 64_000_000
_KEEP: list = []


def import_streaming():
    import torch

    if not hasattr(torch.ops.torchvision, "nms"):
        lib = torch.library.Library("torchvision", "DEF")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _KEEP.append(lib)  # the schemas go away when ``lib`` is garbage-collected
    import streaming

    return streaming


def image_files(root: Path) -> list[tuple[str, int]]:
    """``(path, label)`` in ImageFolder order: classes sorted, files sorted within a class."""
    classes = sorted(d.name for d in Path(root).iterdir() if d.is_dir())
    return [(str(p), k) for k, c in enumerate(classes) for p in sorted((Path(root) / c).iterdir())]


def _record_batches(path: str):
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).iter_batches(batch_size=65_536)


# -- fastload ----------------------------------------------------------------------------------
def fastload_pack(src: Path, out: Path, workers: int, shard_bytes: int = SHARD_BYTES) -> None:
    import fastload

    fastload.pack(str(src), str(out), shard_size=shard_bytes, workers=workers, progress=False, overwrite=True)


# -- plain copy ------------------------------------------------------------------------------
def plain_copy(src: Path, out: Path, workers: int) -> None:
    if Path(src).is_dir():
        shutil.copytree(src, out)
    else:
        os.makedirs(out)
        shutil.copyfile(src, Path(out) / Path(src).name)


# -- MosaicML Streaming MDSWriter ----------------------------------------------------------------
def mds_tokens(src: Path, out: Path, workers: int, shard_bytes: int = SHARD_BYTES) -> None:
    streaming = import_streaming()
    mm = np.load(src, mmap_mode="r")
    cols = {"tokens": f"ndarray:uint16:{mm.shape[1]}"}
    with streaming.MDSWriter(out=str(out), columns=cols, size_limit=shard_bytes) as w:
        for row in mm:
            w.write({"tokens": row})


def mds_records(src: Path, out: Path, workers: int) -> None:
    streaming = import_streaming()
    cols = {"id": "int64", "text": "str", "label": "int64"}
    with streaming.MDSWriter(out=str(out), columns=cols, size_limit=SHARD_BYTES) as w:
        for b in _record_batches(str(src)):
            for row in b.to_pylist():
                w.write(row)


def mds_jpegs(src: Path, out: Path, workers: int) -> None:
    streaming = import_streaming()
    with streaming.MDSWriter(out=str(out), columns={"image": "bytes", "label": "int64"},
                             size_limit=SHARD_BYTES) as w:
        for path, label in image_files(src):
            with open(path, "rb") as f:
                w.write({"image": f.read(), "label": label})


# -- LitData optimize --------------------------------------------------------------------------
# optimize() calls fn in worker processes: module-level functions, inputs are small tuples.
def _lit_token_rows(arg):
    path, start, stop = arg
    mm = np.load(path, mmap_mode="r")
    for i in range(start, stop):
        yield {"tokens": np.asarray(mm[i])}


def _lit_token_stream(arg):
    path, start, stop = arg
    mm = np.load(path, mmap_mode="r")
    for i in range(start, stop):
        yield np.asarray(mm[i])


def _lit_record_rows(arg):
    import pyarrow.parquet as pq

    path, group = arg
    for row in pq.ParquetFile(path).read_row_group(group).to_pylist():
        yield row


def _lit_jpeg(arg):
    path, label = arg
    with open(path, "rb") as f:
        return {"image": f.read(), "label": label}


def _optimize(fn, inputs, out: Path, workers: int, chunk_bytes: int = SHARD_BYTES, **kw) -> None:
    import litdata

    litdata.optimize(fn=fn, inputs=inputs, output_dir=str(out), chunk_bytes=chunk_bytes, num_workers=workers,
                     start_method="fork", verbose=False, **kw)


def _row_ranges(src: Path, step: int = 5_000) -> list[tuple[str, int, int]]:
    n = np.load(src, mmap_mode="r").shape[0]
    return [(str(src), s, min(s + step, n)) for s in range(0, n, step)]


def litdata_tokens(src: Path, out: Path, workers: int, shard_bytes: int = SHARD_BYTES) -> None:
    _optimize(_lit_token_rows, _row_ranges(src), out, workers, chunk_bytes=shard_bytes)


def litdata_tokens_mode(src: Path, out: Path, workers: int) -> None:
    from litdata.streaming.item_loader import TokensLoader

    _optimize(_lit_token_stream, _row_ranges(src), out, workers, item_loader=TokensLoader())


def litdata_records(src: Path, out: Path, workers: int) -> None:
    import pyarrow.parquet as pq

    groups = pq.ParquetFile(src).num_row_groups
    _optimize(_lit_record_rows, [(str(src), g) for g in range(groups)], out, workers)


def litdata_jpegs(src: Path, out: Path, workers: int) -> None:
    _optimize(_lit_jpeg, image_files(src), out, workers)


# -- WebDataset ShardWriter --------------------------------------------------------------------
def _wds_writer(out: Path):
    import webdataset as wds

    os.makedirs(out)
    return wds.ShardWriter(str(Path(out) / "shard-%06d.tar"), maxsize=SHARD_BYTES, maxcount=10**9, verbose=0)


def wds_tokens(src: Path, out: Path, workers: int) -> None:
    mm = np.load(src, mmap_mode="r")
    with _wds_writer(out) as w:
        for i, row in enumerate(mm):
            w.write({"__key__": f"{i:09d}", "npy": np.asarray(row)})


def wds_records(src: Path, out: Path, workers: int) -> None:
    with _wds_writer(out) as w:
        for b in _record_batches(str(src)):
            for row in b.to_pylist():
                w.write({"__key__": f"{row['id']:09d}", "txt": row["text"], "cls": row["label"]})


def wds_jpegs(src: Path, out: Path, workers: int) -> None:
    with _wds_writer(out) as w:
        for i, (path, label) in enumerate(image_files(src)):
            with open(path, "rb") as f:
                w.write({"__key__": f"{i:09d}", "jpg": f.read(), "cls": label})


# system name -> (dataset -> writer, worker counts it is run with)
SYSTEMS: dict[str, tuple[dict[str, Callable], tuple[int, ...]]] = {
    "fastload": ({"tokens": fastload_pack, "records": fastload_pack, "jpegs": fastload_pack}, (1, 2)),
    "mds": ({"tokens": mds_tokens, "records": mds_records, "jpegs": mds_jpegs}, (1,)),
    "litdata": ({"tokens": litdata_tokens, "records": litdata_records, "jpegs": litdata_jpegs}, (1, 2)),
    "litdata-tokens": ({"tokens": litdata_tokens_mode}, (1,)),
    "wds": ({"tokens": wds_tokens, "records": wds_records, "jpegs": wds_jpegs}, (1,)),
    "copy": ({"tokens": plain_copy, "records": plain_copy, "jpegs": plain_copy}, (1,)),
}


# the module each peer system needs; fastload and the plain copy need nothing beyond fastload
_MODULES = {"mds": "streaming", "litdata": "litdata", "litdata-tokens": "litdata", "wds": "webdataset"}


def missing(names) -> dict[str, str]:
    """The chosen systems whose package is not installed, with the reason (reported as skipped)."""
    import importlib.util

    out = {}
    for name in names:
        module = _MODULES.get(name)
        if module is not None and importlib.util.find_spec(module) is None:
            out[name] = f"not installed (no module {module!r}; pip install 'fastload[bench]')"
    return out


def installed(names: list[str]) -> list[str]:
    """``names`` without the missing ones, each missing one reported on stderr and stdout as skipped."""
    import sys

    gone = missing(names)
    for name, why in gone.items():
        print(f"# skipped: {name}: {why}", flush=True)
        print(f"skipped: {name}: {why}", file=sys.stderr, flush=True)
    return [n for n in names if n not in gone]


def preload(names) -> None:
    """Import every chosen system once before timing: Streaming alone takes 5–7 s to import."""
    import fastload  # noqa: F401

    for name in names:
        if name == "mds":
            import_streaming()
        elif name.startswith("litdata"):
            import litdata  # noqa: F401
            from litdata.streaming.item_loader import TokensLoader  # noqa: F401
        elif name == "wds":
            import webdataset  # noqa: F401
