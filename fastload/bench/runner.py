"""One ``fastload bench`` run: resolve the dataset, then storage, decode, loader grid, stall, advice.

Returns the measurements as one JSON-ready dict; printing and files are the CLI's business.
Progress goes to stderr through tqdm.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from statistics import median
from typing import Any, Iterator

from . import advice, decode, grid, stall, storage, synthetic
from .config import BenchConfig
from .machine import machine_info

def is_remote(url: str) -> bool:
    return "://" in url and not url.startswith("file://")


def open_any(url: str, cfg: BenchConfig):
    """Open a local or remote dataset (through the node cache: ``--cache-dir``, ``--cache-limit``)."""
    from ..opening import open_dataset

    if not is_remote(url):
        return open_dataset(url)
    return open_dataset(url, storage_options=cfg.storage_options, cache_dir=cfg.cache_dir,
                        cache_limit=cfg.cache_limit)


@contextmanager
def _workdir(cfg: BenchConfig) -> Iterator[Path]:
    """Where synthetic or converted data goes: ``--synthetic-dir`` (kept) or a temporary one (removed)."""
    if cfg.synthetic_dir:
        p = Path(cfg.synthetic_dir)
        p.mkdir(parents=True, exist_ok=True)
        yield p
        return
    p = Path(tempfile.mkdtemp(prefix="fastload-bench-"))
    try:
        yield p
    finally:
        shutil.rmtree(p, ignore_errors=True)


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc="fastload bench", unit="step", file=sys.stderr, disable=not enabled,
                leave=False, dynamic_ncols=True)


def dataset_info(ds, url: str, kind: str | None) -> dict[str, Any]:
    m = ds.manifest
    return {"url": url, "synthetic": kind, "records": m.n_records, "shards": m.n_shards, "bytes": m.n_bytes,
            "bytes_per_record": m.n_bytes / max(m.n_records, 1),
            "compression": m.settings.get("compression", "none"), "block_size": m.settings.get("block_size"),
            "schema": ds.schema.describe()}


def _shard_files(ds, url: str, cfg: BenchConfig):
    """The shard files as the storage probe reads them, and the fsspec filesystem for remote ones."""
    m = ds.manifest
    if not is_remote(url):
        return [storage.ShardFile(path=str(Path(ds.root) / n), size=int(b))
                for n, b in zip(m.shard_names, m.shard_bytes)], None
    import fsspec

    fs, root = fsspec.core.url_to_fs(url, **(cfg.storage_options or {}))
    return [storage.ShardFile(path=f"{root.rstrip('/')}/{n}", size=int(b))
            for n, b in zip(m.shard_names, m.shard_bytes)], fs


def run(cfg: BenchConfig) -> dict[str, Any]:
    """Everything ``fastload bench`` measures, as one dict (see docs/bench.md for the keys)."""
    t_start = time.perf_counter()
    with _workdir(cfg) as work:
        result: dict[str, Any] = {"fastload_bench": 1, "config": dataclasses.asdict(cfg), "notes": []}
        url = _resolve(cfg, work, result)
        ds = open_any(url, cfg)
        result["dataset"] = dataset_info(ds, url, cfg.synthetic)
        result["machine"] = machine_info(url)
        _measure(ds, url, cfg, result)
        result["target_samples_s"] = cfg.target_samples_per_s
        result["advice"] = advice.advise(result)
        result["elapsed_s"] = time.perf_counter() - t_start
    return result


def _resolve(cfg: BenchConfig, work: Path, result: dict) -> str:
    """The dataset to measure: the URL, a generated synthetic one, or the user's torch Dataset packed."""
    if cfg.synthetic:
        table = synthetic.QUICK_RECORDS if cfg.quick else synthetic.DEFAULT_RECORDS
        n = cfg.synthetic_records or table[cfg.synthetic]
        print(f"generating a synthetic {cfg.synthetic} dataset of {n:,} records in {work}", file=sys.stderr)
        return str(synthetic.generate(cfg.synthetic, work / f"synthetic-{cfg.synthetic}", n))
    if cfg.torch_dataset:
        from . import torch_compare  # torch: only for --torch-dataset

        print(f"benchmarking torch Dataset {cfg.torch_dataset} (first {cfg.torch_samples:,} items)", file=sys.stderr)
        tc, packed = torch_compare.compare(cfg.torch_dataset, work, samples=cfg.torch_samples,
                                           batch_size=cfg.batch_sizes[0], workers=cfg.workers,
                                           seconds=cfg.run_seconds)
        result["torch_compare"] = tc
        return str(packed)
    return cfg.url


def _measure(ds, url: str, cfg: BenchConfig, result: dict) -> None:
    """Storage, decode, loader grid and stall, in that order, into ``result``, with progress."""
    info, notes = result["dataset"], result["notes"]
    settings = grid.settings(cfg.workers, cfg.batch_sizes, cfg.shuffles, cfg.worker_types)
    has_images = any(f.kind == "image" for f in ds.schema)
    if has_images and grid.image_transforms(ds) is not None:
        # what training on images runs: the loader decodes and crops; advice is based on these rows
        settings += grid.decoded_settings(settings)
    files, fs = _shard_files(ds, url, cfg)
    cold = cfg.cold and fs is None
    if cfg.cold and fs is not None:
        notes.append("--cold applies to local datasets; remote reads are uncached already")
    total = cfg.repeats * (2 + cold + len(settings)) + 1
    with _progress(total, cfg.progress) as bar:
        def tick(label: str = "") -> None:
            bar.set_postfix_str(label)
            bar.update()

        avail = result["machine"]["memory"].get("available_gib")
        # storage first: nothing of ours maps the shards yet, so a cold pass can evict them
        result["storage"] = storage.measure(
            files, chunk=int(info["block_size"] or 1 << 20), repeats=cfg.repeats, budget_s=cfg.storage_seconds,
            cold=cold, drop_all_caches=cfg.drop_all_caches, available_bytes=int(avail * 2**30) if avail else None,
            remote_fs=fs,
            tick=lambda: tick("storage"))
        codec = decode.zstd_and_checksum(ds, cfg.repeats)
        fields = decode.fields(ds, cfg.repeats)
        result["decode"] = {"codec": codec, "fields": fields,
                            "per_sample_s": decode.per_sample_seconds(fields, codec, info["bytes_per_record"])}
        tick("decode")
        grid.warm_up(ds, settings[0])
        if settings[-1].decoded:
            grid.warm_up(ds, settings[-1])
        rows = grid.measure(ds, settings, seconds=cfg.run_seconds, repeats=cfg.repeats,
                            bytes_per_record=info["bytes_per_record"],
                            storage_mb_s=median(result["storage"]["mb_s"]), tick=tick)
        result["loader"] = rows
        top = advice.best_setting(advice.judged_rows(rows))
        chosen = grid.Setting(num_workers=top["num_workers"], batch_size=top["batch_size"], shuffle=top["shuffle"],
                              worker_type=top["worker_type"], decoded=bool(top.get("decoded")))
        result["stall"] = stall.measure(ds, chosen, step_s=cfg.step_seconds(chosen.batch_size),
                                        seconds=cfg.stall_seconds, repeats=cfg.repeats, tick=lambda: tick("stall"))
    locator = getattr(ds, "locator", None)
    if fs is not None and locator is not None and hasattr(locator, "stats"):
        result["cache"] = locator.stats()  # the remote cache's counters after all the runs
    if has_images:
        notes.append(_image_note(settings[-1].decoded))


def _image_note(decoded: bool) -> str:
    if not decoded:
        from ..image.decode import missing_decoders

        return (f"image fields: {' and '.join(missing_decoders())} not installed (pip install 'fastload[images]'), "
                "so the loader grid reads encoded bytes; the decode cost above is what decoding would add per "
                "image and core")
    return (f"image fields: rows marked +decode decode and augment in the loader ({grid.IMAGE_TRANSFORMS}); "
            "the advice is based on them, the others read encoded bytes")
