"""Image loading: fastload vs torch DataLoader + Pillow, MosaicML Streaming, LitData and FFCV.

Input: ``bench/datasets.py``'s JPEGs (20,000 real-photo crops of scikit-learn's two sample
photographs, 256–500 px per side, quality 90, 10 classes; ``--quick``: 2,000), each system's
dataset written once by its own writer (cached under ``<data-dir>/images/jpegs-<n>/<system>``;
``--data-dir`` defaults to ``$FASTLOAD_BENCH_DATA`` or ``~/.cache/fastload/bench``).
Two transforms, uint8 output, batches of 64, shuffled, 2 workers everywhere:

* ``train``: RandomResizedCrop(224) + RandomHorizontalFlip, NHWC uint8;
* ``eval``: Resize(256) (shorter side) + CenterCrop(224).

Systems: ``fastload`` (2 thread workers, and 2 process workers); ``torch`` (torch's DataLoader over
the image folder, Pillow decode + the same augmentation written with Pillow/NumPy per sample, the
way torchvision does it: ``Image.resize(box=..., BILINEAR)``); ``mds`` (MosaicML StreamingDataset,
raw bytes, the same Pillow code in its workers); ``litdata`` (StreamingDataset + StreamingDataLoader,
same); ``ffcv`` (its own writer, which re-encodes at quality 90, and its RandomResizedCrop /
CenterCrop decoders), when importable. Peers missing from the running interpreter are reported as
skipped. Each measured run is a fresh Python process (``--child``) that builds the loader and reads
one epoch, capped at ``--cap`` seconds; the rate is images after the first batch / time after the
first batch (the first batch's time, where FFCV compiles for 14–19 s, is its own column).

The practical limit is measured in the same run, in this process: the single-core decode rate of
Pillow (``Image.open(...).convert("RGB")``) and of simplejpeg over the same files, and of
fastload's window decode of the train transform's windows (``fastload.image.window``), times the cores.
Systems run interleaved (A, B, C, A, B, C, ...), ``--repeats`` times; medians (min–max). The
"×" columns are medians of the ratios within each repeat (paired runs, minutes apart).

    .venv-bench/bin/python -m bench.images [--quick] [--repeats 3] [--cap 30] [--json out.json]

On a shared machine, split the repeats over several runs (each under its own lock) and combine
their ``--json`` files into one table: ``--merge a.json b.json [--json all.json]``.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from . import datasets, peers
from .common import (DEFAULT_DATA_DIR, fmt_range, interleaved, machine_info, med, print_machine, print_table,
                     warm, write_json)


def fmt_rate(values: list[float]) -> str:
    """Images/s as ``median (min–max)`` in whole numbers."""
    m = med(values)
    return f"{m:,.0f}" if len(values) == 1 else f"{m:,.0f} ({min(values):,.0f}–{max(values):,.0f})"

BATCH = 64
WORKERS = 2
SIZE = 224
RESIZE = 256
SEED = 1234
SYSTEMS = ("fastload-thread", "fastload-process", "torch", "mds", "litdata", "ffcv")
TRANSFORMS = ("train", "eval")
_MODULES = {"mds": "streaming", "litdata": "litdata", "ffcv": "ffcv"}


# -- the same augmentation, written with Pillow/NumPy, for the peers ------------------------------
def _rrc_box(w: int, h: int, rnd: random.Random) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop.get_params: (left, top, right, bottom)."""
    area = w * h
    log_ratio = (math.log(3 / 4), math.log(4 / 3))
    for _ in range(10):
        target = area * rnd.uniform(0.08, 1.0)
        aspect = math.exp(rnd.uniform(*log_ratio))
        cw, ch = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            top, left = rnd.randint(0, h - ch), rnd.randint(0, w - cw)
            return left, top, left + cw, top + ch
    in_ratio = w / h  # the fallback: the whole image, cut to the nearest allowed ratio
    cw, ch = (w, int(round(w * 3 / 4))) if in_ratio < 3 / 4 else ((int(round(h * 4 / 3)), h) if in_ratio > 4 / 3 else (w, h))
    left, top = (w - cw) // 2, (h - ch) // 2
    return left, top, left + cw, top + ch


def pil_transform(data: bytes, transform: str, rnd: random.Random) -> np.ndarray:
    """Decode with Pillow and apply ``transform``: the (224, 224, 3) uint8 array."""
    from PIL import Image

    img = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = img.size
    if transform == "train":
        img = img.resize((SIZE, SIZE), Image.BILINEAR, box=_rrc_box(w, h, rnd))
        if rnd.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
    else:  # torchvision's Resize(RESIZE) + CenterCrop(SIZE): whole-pixel sizes and offsets
        long = int(RESIZE * max(w, h) / min(w, h))
        img = img.resize((RESIZE, long) if w <= h else (long, RESIZE), Image.BILINEAR)
        left, top = int(round((img.size[0] - SIZE) / 2.0)), int(round((img.size[1] - SIZE) / 2.0))
        img = img.crop((left, top, left + SIZE, top + SIZE))
    return np.asarray(img)


# -- the systems' datasets ----------------------------------------------------------------------
def ffcv_write(src: Path, out: Path, workers: int) -> None:
    from ffcv.fields import IntField, RGBImageField
    from ffcv.writer import DatasetWriter
    from PIL import Image

    files = peers.image_files(src)

    class Folder:
        def __len__(self):
            return len(files)

        def __getitem__(self, i):
            path, label = files[i]
            return Image.open(path).convert("RGB"), label

    out.mkdir(parents=True, exist_ok=True)
    writer = DatasetWriter(str(out / "data.beton"), {"image": RGBImageField(write_mode="jpg", jpeg_quality=90),
                                                     "label": IntField()}, num_workers=workers)
    writer.from_indexed_dataset(Folder())


WRITERS = {"fastload": peers.fastload_pack, "mds": peers.mds_jpegs, "litdata": peers.litdata_jpegs,
           "ffcv": ffcv_write}


def system_dir(system: str, src: Path, data_dir: Path) -> Path:
    base = system.split("-")[0]
    return src if base == "torch" else data_dir / "images" / src.name / base


def ensure_written(system: str, src: Path, data_dir: Path) -> Path:
    out = system_dir(system, src, data_dir)
    if system == "torch" or (out / ".complete").exists():
        return out
    base = system.split("-")[0]
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    if base == "mds":
        peers.import_streaming()
    t0 = time.perf_counter()
    WRITERS[base](src, tmp, 2)
    print(f"# wrote {base} dataset in {time.perf_counter() - t0:.1f} s: {out}", file=sys.stderr, flush=True)
    (tmp / ".complete").write_text("")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


# -- loaders (run in the child) -----------------------------------------------------------------
def _fastload(path: Path, transform: str, worker_type: str):
    import fastload
    from fastload.image import CenterCrop, RandomHorizontalFlip, RandomResizedCrop, Resize

    ops = [RandomResizedCrop(SIZE), RandomHorizontalFlip()] if transform == "train" else \
        [Resize(RESIZE), CenterCrop(SIZE)]
    return fastload.DataLoader(str(path), batch_size=BATCH, shuffle=True, seed=SEED, num_workers=WORKERS,
                               worker_type=worker_type, transforms={"image": ops})


def _torch(path: Path, transform: str):
    import torch

    files = peers.image_files(path)

    class Folder(torch.utils.data.Dataset):
        def __len__(self):
            return len(files)

        def __getitem__(self, i):
            p, label = files[i]
            with open(p, "rb") as f:
                data = f.read()
            return {"image": pil_transform(data, transform, random.Random(SEED * 1_000_003 + int(i))), "label": label}

    return torch.utils.data.DataLoader(Folder(), batch_size=BATCH, shuffle=True, num_workers=WORKERS)


def _mds(path: Path, transform: str):
    import torch

    streaming = peers.import_streaming()

    class Images(streaming.StreamingDataset):
        def __getitem__(self, i):
            row = super().__getitem__(i)
            return {"image": pil_transform(row["image"], transform, random.Random(SEED * 1_000_003 + int(i))),
                    "label": row["label"]}

    streaming.base.util.clean_stale_shared_memory()
    ds = Images(local=str(path), shuffle=True, shuffle_seed=SEED, batch_size=BATCH)
    return torch.utils.data.DataLoader(ds, batch_size=BATCH, num_workers=WORKERS)


def _litdata(path: Path, transform: str):
    import litdata

    class Images(litdata.StreamingDataset):
        def __getitem__(self, index):
            row = super().__getitem__(index)
            return {"image": pil_transform(row["image"], transform, random.Random()), "label": row["label"]}

    ds = Images(str(path), shuffle=True, seed=SEED)
    return litdata.StreamingDataLoader(ds, batch_size=BATCH, num_workers=WORKERS)


def _ffcv(path: Path, transform: str):
    from ffcv.fields.decoders import CenterCropRGBImageDecoder, IntDecoder, RandomResizedCropRGBImageDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.transforms import RandomHorizontalFlip

    image = [RandomResizedCropRGBImageDecoder((SIZE, SIZE)), RandomHorizontalFlip()] if transform == "train" \
        else [CenterCropRGBImageDecoder((SIZE, SIZE), ratio=SIZE / RESIZE)]
    return Loader(str(path / "data.beton"), batch_size=BATCH, num_workers=WORKERS, order=OrderOption.RANDOM,
                  seed=SEED, drop_last=False, pipelines={"image": image, "label": [IntDecoder()]})


def child(system: str, transform: str, path: Path, cap: float) -> dict:
    """One fresh loader, one epoch (capped): images/s after the first batch, and the first batch's time."""
    base = system.split("-")[0]
    t0 = time.perf_counter()
    if base == "fastload":
        loader = _fastload(path, transform, system.split("-")[1])
    else:
        loader = {"torch": _torch, "mds": _mds, "litdata": _litdata, "ffcv": _ffcv}[base](path, transform)
    images, first, t_first, capped = 0, None, None, False
    shape = None
    for batch in loader:
        img = batch["image"] if isinstance(batch, dict) else batch[0]
        n = len(img)
        now = time.perf_counter()
        if first is None:
            first, t_first, shape = now - t0, now, tuple(img.shape)
        else:
            images += n
            if now - t_first > cap:
                capped = True
                break
    seconds = time.perf_counter() - t_first
    if hasattr(loader, "close"):
        loader.close()
    return {"images_s": images / seconds if seconds > 0 else 0.0, "first_batch_s": first, "images": images,
            "capped": capped, "shape": list(shape or ())}


# -- the practical limit, in this process --------------------------------------------------------
def _train_windows(blobs: list[bytes]) -> list[tuple[int, int, int, int]]:
    """The window fastload decodes of each JPEG for the train transform (its planner's boxes)."""
    import simplejpeg

    from fastload.image import RandomResizedCrop, window
    from fastload.image.pipeline import ImagePipeline

    sizes = np.array([simplejpeg.decode_jpeg_header(b)[:2] for b in blobs])
    boxes, _ = ImagePipeline.of([RandomResizedCrop(SIZE)]).plan(sizes[:, 0], sizes[:, 1], SEED, 0,
                                                                np.arange(len(blobs)))
    return [window.window_of(tuple(box), SIZE, SIZE, int(h), int(w)) for box, (h, w) in zip(boxes.tolist(), sizes)]


def decode_limit(files: list[str], seconds: float = 3.0) -> dict[str, float]:
    """Single-core decode rates (images/s) over ``files``, each for ~``seconds``: Pillow and
    simplejpeg decoding whole images, and fastload's window decode (fast IDCT) of the train
    transform's windows, where Pillow ships a libjpeg-turbo it can open."""
    import simplejpeg
    from PIL import Image

    from fastload.image import window

    blobs = [Path(p).read_bytes() for p in files]
    decoders = [("pillow", lambda k: Image.open(io.BytesIO(blobs[k])).convert("RGB").load()),
                ("simplejpeg", lambda k: simplejpeg.decode_jpeg(blobs[k], "RGB"))]
    lib = window.library()
    if lib.handle is not None:
        windows, buf = _train_windows(blobs), np.empty(4096 * 4096 * 3, np.uint8)
        decoders.append(("window", lambda k: window.decode_window(lib, blobs[k], 1, windows[k], buf, True)))
    out = {}
    for name, fn in decoders:
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            fn(n % len(blobs))
            n += 1
        out[name] = n / (time.perf_counter() - t0)
    return out


def ffcv_status() -> str | None:
    """Why FFCV cannot run here, or None."""
    try:
        import ffcv  # noqa: F401
        from ffcv.loader import Loader  # noqa: F401
    except Exception as exc:  # a failed build shows up as any import error
        return f"not installed: {type(exc).__name__}: {exc}"
    return None


def table(results: dict, systems: list[str], transforms: list[str], skipped: dict[str, str],
          cores: int) -> tuple[list[str], list[list[str]]]:
    """The table of a run: rates, first batches, the paired ratios and the decode limits."""
    lim = results["limit"]
    pillow = [r["pillow"] for r in lim]
    limit_ref = med(pillow) * cores

    def paired(system: str, ref: str, t: str) -> str:
        """The median over repeats of the rate ratio within each repeat (the two ran minutes
        apart, where the shared machine's speed drifts 1.2-2x within an hour), with its range."""
        if f"{ref}|{t}" not in results:
            return "–"
        ratios = [a["images_s"] / b["images_s"] for a, b in zip(results[f"{system}|{t}"], results[f"{ref}|{t}"])
                  if b["images_s"] > 0]
        return f"{med(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})" if ratios else "–"

    headers = ["system", "transform", "images/s", "first batch s", "× torch+Pillow", "× FFCV", "% of Pillow limit"]
    rows = []
    for t in transforms:
        for s in systems:
            rs = results[f"{s}|{t}"]
            rate = [r["images_s"] for r in rs]
            rows.append([s, t, fmt_rate(rate), fmt_range([r["first_batch_s"] for r in rs]), paired(s, "torch", t),
                         paired(s, "ffcv", t), f"{100 * med(rate) / limit_ref:.0f}%"])
    limits = [("Pillow", pillow), ("simplejpeg", [r["simplejpeg"] for r in lim]),
              ("fastload train-window", [r["window"] for r in lim if "window" in r])]
    for name, rates in limits:
        if rates:
            rows.append([f"limit: {name} decode × cores", "decode only", fmt_rate([r * cores for r in rates]), "–",
                         "–", "–", f"{100 * med(rates) / med(pillow):.0f}%"])
    for s, why in skipped.items():
        rows.append([s, "–", f"skipped: {why}", "–", "–", "–", "–"])
    return headers, rows


def merge(paths: list[Path], out: Path | None) -> None:
    """One table from the ``--json`` files of runs of the same systems and transforms: their
    repeats, in order, as if one run (each repeat's ratios stay paired within it)."""
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise SystemExit(f"--merge: no such file: {', '.join(missing)}")
    runs = [json.loads(p.read_text()) for p in paths]
    jobs = [list(r["results"]) for r in runs]
    if any(j != jobs[0] for j in jobs):
        raise SystemExit(f"--merge: the runs measured different systems or transforms: {jobs}")
    results = {job: [r for run in runs for r in run["results"][job]] for job in jobs[0]}
    pairs = [job.split("|") for job in jobs[0] if job != "limit"]
    systems = list(dict.fromkeys(s for s, _ in pairs))
    transforms = list(dict.fromkeys(t for _, t in pairs))
    info = runs[0]["machine"]
    print_machine(info)
    print(f"# merged {len(runs)} runs ({', '.join(str(p) for p in paths)}): {len(results['limit'])} repeats")
    headers, rows = table(results, systems, transforms, runs[0]["skipped"], info["cores"])
    print()
    text = print_table(headers, rows)
    write_json(out, {**runs[0], "headers": headers, "rows": rows, "table": text, "results": results,
                     "repeats": len(results["limit"]), "merged": [str(p) for p in paths]})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2,000 images, 1 repeat, 2 s cap (< 90 s)")
    ap.add_argument("--scale", type=float, default=None, help="fraction of the 20,000 images")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--cap", type=float, default=None, help="seconds per epoch run (default 60; quick 2)")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                    help="inputs and the peers' datasets (default: $FASTLOAD_BENCH_DATA or ~/.cache/fastload/bench)")
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--transforms", default=",".join(TRANSFORMS))
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--merge", nargs="+", type=Path, default=None, metavar="JSON",
                    help="print one table from the --json files of split runs (nothing is measured)")
    ap.add_argument("--child", nargs=3, metavar=("SYSTEM", "TRANSFORM", "PATH"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    scale = a.scale if a.scale is not None else (0.1 if a.quick else 1.0)
    repeats = a.repeats if a.repeats is not None else (1 if a.quick else 3)
    cap = a.cap if a.cap is not None else (2.0 if a.quick else 60.0)
    if a.child:
        print(json.dumps(child(a.child[0], a.child[1], Path(a.child[2]), cap)), flush=True)
        return 0
    if a.merge:
        merge(a.merge, a.json)
        return 0

    info = machine_info(a.data_dir)
    print_machine(info)
    src = datasets.jpegs(a.data_dir, scale)
    files = [p for p, _ in peers.image_files(src)]
    print(f"# input: {len(files):,} JPEGs in {src}; batch {BATCH}, {WORKERS} workers, cap {cap:g} s, "
          f"{repeats} repeat(s)", flush=True)
    skipped = {}
    systems = [s for s in a.systems.split(",") if s]
    for s in systems:
        module = _MODULES.get(s)
        if module is not None:
            import importlib.util

            if importlib.util.find_spec(module) is None:
                skipped[s] = f"not installed (no module {module!r})"
            elif s == "ffcv" and ffcv_status():
                skipped[s] = ffcv_status()
    for s, why in skipped.items():
        print(f"# skipped: {s}: {why}", flush=True)
    systems = [s for s in systems if s not in skipped]
    paths = {s: ensure_written(s, src, a.data_dir) for s in systems}
    warm([paths[s] for s in systems])
    transforms = [t for t in a.transforms.split(",") if t]

    def run(system: str, transform: str) -> dict:
        cmd = [sys.executable, "-m", "bench.images", "--child", system, transform, str(paths[system]),
               "--cap", str(cap)]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).parents[1])
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            return {"images_s": float("nan"), "first_batch_s": float("nan"), "error": proc.stderr[-300:]}
        return json.loads(proc.stdout.strip().splitlines()[-1])

    jobs = {f"{s}|{t}": (lambda s=s, t=t: run(s, t)) for t in transforms for s in systems}
    jobs["limit"] = lambda: decode_limit(files[:500], 1.0 if a.quick else 4.0)
    results = interleaved(jobs, repeats)

    headers, rows = table(results, systems, transforms, skipped, os.cpu_count() or 1)
    print()
    text = print_table(headers, rows)
    write_json(a.json, {"benchmark": "images", "headers": headers, "rows": rows, "table": text,
                        "command": info["command"], "machine": info, "versions": info["versions"],
                        "results": results, "skipped": skipped, "images": len(files), "cap_s": cap,
                        "repeats": repeats})
    return 0


if __name__ == "__main__":
    sys.exit(main())
