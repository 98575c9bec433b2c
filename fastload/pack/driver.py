"""``fastload.pack``: read a source in segments (in parallel), encode blocks, write shards in order.

Workers encode whole segments into blocks, each segment's into a hidden spill file in the output
directory; the calling process alone writes shards, appending blocks in segment order (copied from
the spill files inside the kernel). Because segments and block cuts depend only on the input and
the options, the shards are byte-identical whatever the number of workers. After each finished shard
a journal records where the next one starts, so an interrupted pack resumes where it stopped.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time
from collections import deque
from dataclasses import replace
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from itertools import islice
from pathlib import Path
from typing import Any, Iterable, Iterator

from .._sizes import parse_size
from ..errors import OutputExistsError, SchemaError, WorkerError
from ..format.infer import infer_schema
from ..format.manifest import Manifest
from ..format.schema import Schema, parse_overrides, parse_renames
from ..format.shard_reader import ShardReader
from ..format.shard_writer import temp_path_for
from ..format.spec import CODEC_NAMES, MANIFEST_NAME, PACK_JOURNAL
from ..format.writer import ON_ERROR, ShardSink, codec_settings, is_fastload_file, prepare_output
from .encode import EncodeJob, SegmentResult, encode_segment, first_chunk, stream_segment
from .image_options import ImageOptions
from .journal import Journal, fingerprint
from .report import PackReport
from .sources import open_source
from .sources.base import Source
from .sources.renamed import RenamedSource


def pack(source: Any, out: str | os.PathLike, *, schema: Schema | str | dict | None = None,
         shard_size: int | str = "256MB", block_size: int | str = "1MB", compression: str = "none",
         level: int = 3, workers: int = 1, overwrite: bool = False, on_error: str = "raise",
         progress: bool = True, metadata: dict[str, Any] | None = None, max_side: int | None = None,
         jpeg_quality: int = 90, image_format: str = "keep",
         rename: dict[str, str] | list[str] | None = None) -> PackReport:
    """Convert ``source`` into a fastload dataset in directory ``out``.

    ``source`` is a path, directory or glob (Parquet/Arrow/Feather, JSONL, CSV, .npy/.npz, an
    image folder, WebDataset tars, an MDS or LitData dataset), a pyarrow Table/RecordBatchReader,
    a pandas DataFrame, a map-style torch Dataset, or any iterable of dicts. ``schema`` is a full
    :class:`Schema` or overrides of inferred types (``"tokens:uint16[2049]"``). ``max_side``,
    ``jpeg_quality`` and ``image_format`` (``"keep"``, ``"jpeg"``, ``"raw"``) re-encode image
    fields (see :mod:`fastload.pack.image_options`). ``rename`` maps source column names to the
    names stored (``{"sepal length (cm)": "sepal_length"}`` or ``["OLD=NEW", ...]``); ``schema``
    names the new ones.
    """
    images = ImageOptions(max_side=max_side, jpeg_quality=jpeg_quality, image_format=image_format)
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, not {on_error!r}")
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, not {workers!r}")
    started = time.perf_counter()
    src = open_source(source)
    if rename:
        src = RenamedSource(src, parse_renames(rename))
    settings = codec_settings(block_size, compression, level)
    shard_bytes = parse_size(shard_size, what="shard_size")
    info = src.info()
    segments = list(src.segments())
    schema = images.schema_for(_resolve_schema(src, info.schema, segments, schema))
    resumable = getattr(src, "resumable", True)
    fp = fingerprint(src.description, _input_stamp(src), [repr(s) for s in segments], schema.to_json(),
                     settings, shard_bytes, on_error, *([images.to_json()] if images.active else [])
                     ) if resumable else ""
    root, journal = _prepare_output(Path(out), overwrite, fp if resumable else None)
    report = PackReport(out=str(root), source=src.description, workers=workers,
                        resumed_shards=len(journal.shards))
    # the kept shards' record bytes, so the compression ratio covers the whole dataset
    report.raw_bytes = sum(int(ShardReader.open(root / s.name, verify="never").blocks["raw_size"].sum())
                           for s in journal.shards)

    sink = ShardSink(root, schema, settings, shard_bytes, first_index=len(journal.shards))
    shards = list(journal.shards)
    codec = CODEC_NAMES[settings["compression"]]
    jobs = (EncodeJob(src, segments[i], i, schema, settings["block_size"], codec, level, on_error,
                      image_options=images if images.active else None)
            for i in range(journal.next_segment, len(segments)))
    bar = _progress_bar(progress, info.bytes_hint)
    known_in = True
    # no more processes than segments: a one-segment input (the 250k-row Parquet bench file) took
    # 0.42 s with a pool of 2 vs 0.18 s in this process, for no parallelism at all
    pool_size = max(1, min(workers, len(segments) - journal.next_segment))
    results = _encode_all(jobs, pool_size, src, root)
    try:
        for res in results:
            skip = journal.next_block if res.index == journal.next_segment else 0
            seg_raw = 0
            for k, block in enumerate(res.blocks):
                if k < skip:
                    continue
                closed = sink.add(block)
                if closed is not None:
                    shards.append(closed)
                    if resumable:
                        Journal(fp, shards, res.index, k).write(root)
                report.raw_bytes += block.raw_size
                report.records += block.n_records
                seg_raw += block.raw_size
            sink.release_spill()  # a worker's spill file goes once its blocks are in the shards
            report.skipped += res.skipped
            report.skip_examples.extend(res.skip_examples[: 20 - len(report.skip_examples)])
            known_in = known_in and res.in_bytes is not None
            report.bytes_in += res.in_bytes or 0
            if bar is not None:
                bar.update(res.in_bytes if info.bytes_hint else seg_raw)
                bar.set_postfix(records=f"{report.records:,}", refresh=False)
        last = sink.finish()
        if last is not None:
            shards.append(last)
    except BaseException:
        sink.abort()  # the unfinished shard's temporary file goes; finished shards and journal stay
        raise
    finally:
        results.close()  # stops the worker pool now, also when the error was raised on this side
        if bar is not None:
            bar.close()

    image_meta = {"image_options": images.to_json()} if images.active else {}
    manifest = Manifest.from_shards(schema, settings, shards, {**info.metadata, **image_meta, **(metadata or {})})
    manifest.write(root)
    (root / PACK_JOURNAL).unlink(missing_ok=True)
    report.shards = manifest.n_shards
    report.bytes_out = manifest.n_bytes
    if not known_in or report.resumed_shards:
        report.bytes_in = max(report.bytes_in, report.raw_bytes)
    report.records = manifest.n_records
    report.seconds = time.perf_counter() - started
    return report


def _resolve_schema(src: Source, known: Schema | None, segments: list, given: Any) -> Schema:
    if isinstance(given, Schema):
        return given
    overrides = parse_overrides(given)
    base = known
    if base is None:
        chunk = first_chunk(src, segments)
        if chunk is None:
            if overrides:
                return Schema.parse(",".join(f"{k}:{v}" for k, v in overrides.items()))
            raise SchemaError(f"{src.description} holds no readable rows: pass a full schema to pack it")
        base = infer_schema(chunk.columns, overrides)  # an overridden column is not inferred
    return base.with_overrides(overrides) if overrides else base


def _prepare_output(root: Path, overwrite: bool, fp: str | None) -> tuple[Path, Journal]:
    """Create or check the output; resume from a journal left by the same pack when there is one."""
    fresh = Journal(fp or "", [])
    if overwrite or not root.exists():
        return prepare_output(root, overwrite), fresh
    names = [p.name for p in root.iterdir()]
    if MANIFEST_NAME in names:
        raise OutputExistsError(f"{root} already holds a finished dataset; pass overwrite=True (--overwrite) to replace it")
    if any(not is_fastload_file(n) for n in names):
        return prepare_output(root, overwrite), fresh  # raises: not empty
    journal = Journal.read(root)  # a journal is never ours when this source cannot resume (fp None)
    if journal is not None and journal.fingerprint != fp:
        raise OutputExistsError(
            f"{root} holds an interrupted pack made with other inputs or options; re-run it with the "
            "same arguments to resume, or pass overwrite=True (--overwrite) to start again"
        )
    if journal is None or not journal.shards_intact(root):
        journal = fresh
    keep = {s.name for s in journal.shards} | ({PACK_JOURNAL} if journal.shards else set())
    for name in names:  # stale temporaries and shards past the journal's end
        if name not in keep:
            (root / name).unlink()
    return root, journal


def _input_stamp(src: Source) -> list:
    """Size and mtime of each input file, so that a resume refuses inputs changed since the interruption."""
    stamp = []
    for path in getattr(src, "paths", None) or ():
        try:
            st = os.stat(path)
            stamp.append((os.fspath(path), st.st_size, st.st_mtime_ns))
        except OSError:
            stamp.append((os.fspath(path), None, None))
    return stamp


def _encode_all(jobs: Iterable[EncodeJob], workers: int, src: Source, root: Path) -> Iterator[SegmentResult]:
    """Segment results in order; encoded by a process pool with a bounded window when workers > 1.

    Pool workers write each segment's blocks to a spill file in ``root`` named here (hidden, with
    the temporary mark, so an interrupted pack's clean-up removes it too); the files still present
    when this generator ends (a failed or dead worker's, unread results') are deleted then.
    """
    if workers == 1 or not src.parallel_safe:
        for job in jobs:
            yield stream_segment(job)  # blocks are written as they are encoded
        return
    # fork where available, as torch's DataLoader does: spawn and forkserver re-import the user's
    # __main__ in every worker, which breaks scripts without a main guard.
    default = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    ctx = mp.get_context(getattr(src, "mp_context", None) or default)
    pool = ProcessPoolExecutor(workers, mp_context=ctx)
    it = iter(jobs)
    window: deque = deque()
    spills: list[Path] = []
    try:
        while True:
            try:  # once a worker has died, submit() raises this too, not only result()
                for job in islice(it, 2 * workers - len(window)):
                    spills.append(temp_path_for(root / f"segment-{job.index:06d}.blocks"))
                    window.append(pool.submit(encode_segment, replace(job, spill=str(spills[-1]))))
                if not window:
                    return
                res = window.popleft().result()
            except BrokenProcessPool as exc:
                raise WorkerError("a pack worker process died (killed, out of memory or crashed); "
                                  "re-run the same command to resume") from exc
            yield res
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # no worker writes a spill file after this
        for path in spills:
            path.unlink(missing_ok=True)


def _progress_bar(enabled: bool, total_bytes: int | None):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1000, desc="pack",
                file=sys.stderr, dynamic_ncols=True, disable=None)
