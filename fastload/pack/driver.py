"""``fastload.pack``: read a source in segments (in parallel), encode blocks, write shards in order.

Workers encode whole segments into blocks, each segment's into a hidden spill file in the output
directory; the calling process alone writes shards, appending blocks in segment order (copied from
the spill files inside the kernel). Because segments and block cuts depend only on the input and
the options, the shards are byte-identical whatever the number of workers. After each finished shard
a journal records where the next one starts, so an interrupted pack resumes where it stopped.
"""

from __future__ import annotations

import errno
import multiprocessing as mp
import os
import sys
import time
import warnings
from collections import deque
from contextlib import contextmanager
from dataclasses import replace
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from itertools import islice
from pathlib import Path
from typing import Any, Iterable, Iterator

from .._sizes import parse_size
from ..errors import SkippedRowsError, SkippedRowsWarning, StorageError, WorkerError
from ..format.manifest import Manifest
from ..format.schema import Schema, parse_renames
from ..format.shard_writer import temp_path_for
from ..format.spec import CODEC_NAMES
from ..format.writer import ON_ERROR, ShardSink, codec_settings
from ..storage.remote import RetryPolicy
from .clean import CleanOptions, CleanTally
from .clean.dedup import SeenHashes
from .clean.ordered import encode_in_order
from .clean.stage import rule_names
from .encode import EncodeJob, SegmentResult, encode_segment, stream_segment
from .image_options import ImageOptions
from .inference import resolve_schema
from .engines import distributed_pack
from .journal import Journal, fingerprint
from .lifeline import die_with_parent
from .output import open_output
from .report import SKIPPED_WARNING_SHARE, PackReport
from .sources import open_source
from .sources.base import Source
from .sources.files import InputFiles
from .sources.renamed import RenamedSource


def pack(source: Any, out: str | os.PathLike, *, schema: Schema | str | dict | None = None,
         shard_size: int | str = "256MB", block_size: int | str = "1MB", compression: str = "none",
         level: int = 3, workers: int = 1, overwrite: bool = False, on_error: str = "raise",
         progress: bool = True, metadata: dict[str, Any] | None = None, max_side: int | None = None,
         jpeg_quality: int = 90, image_format: str = "keep", delimiter: str | None = None,
         max_skipped: float | None = None, storage_options: dict | None = None, timeout: float = 60.0,
         retries: int = 5, staging_dir: str | os.PathLike | None = None, staging_limit: int | str = "2GB",
         uploads: int = 4, rename: dict[str, str] | list[str] | None = None, dedup: Any = None,
         normalize: Any = None, filter: Any = None, drop_invalid: Any = None,
         dedup_memory: int | str | None = None) -> PackReport:
    """Convert ``source`` into a fastload dataset in directory ``out``.

    ``source`` is a path, directory or glob (Parquet/Arrow/Feather, JSON Lines or JSON-array
    files, CSV, those text files compressed, .npy/.npz, an image folder, WebDataset tars, an MDS
    or LitData dataset, a Hugging Face ``save_to_disk`` folder), a pyarrow Table/RecordBatchReader,
    a pandas or polars DataFrame, a Hugging Face Dataset, a map-style torch Dataset, or any
    iterable of dicts. ``schema`` is a full :class:`Schema` or overrides of inferred types
    (``"tokens:uint16[2049]"``). ``delimiter`` is a CSV field separator (one character or
    ``"whitespace"``). ``max_skipped`` is the fraction of rows ``on_error="skip"`` may skip before
    the pack fails with :class:`SkippedRowsError` (default: a warning past 1%, an error when every
    row is skipped). ``max_side``, ``jpeg_quality`` and ``image_format`` (``"keep"``, ``"jpeg"``,
    ``"raw"``) re-encode image fields (see :mod:`fastload.pack.image_options`). ``rename`` maps
    source column names to the names stored (``{"sepal length (cm)": "sepal_length"}`` or
    ``["OLD=NEW", ...]``); ``schema`` names the new ones.

    ``source`` and ``out`` may be URLs of any fsspec filesystem (``s3://bucket/raw/*.parquet``,
    ``gs://``, ``https://`` inputs): inputs are read with ranged requests, never copied whole
    first; shards are staged in ``staging_dir`` (default: the temporary directory), at most
    ``staging_limit`` bytes of finished shards waiting there, and uploaded by ``uploads`` threads
    as they finish; the manifest is uploaded last. ``storage_options`` go to fsspec for both;
    every request gets ``timeout`` seconds and ``retries`` attempts. A Ray Dataset or a Dask
    DataFrame or Bag is packed by that engine's own workers (:mod:`fastload.ray`, :mod:`fastload.dask`).

    Cleaning (docs/cleaning.md): ``dedup`` drops records whose content hash was seen before
    (True: the whole record; a field name, ``"a,b"`` or a list: those fields), keeping the first
    in source order; ``normalize`` (``"nfc,case,whitespace"`` or True) applies to text in the
    hash; ``dedup_memory`` (default 1GiB) bounds the seen set in memory, beyond which it is a file
    in the staging directory. ``filter`` keeps the records it holds for: filter text
    (``"len(text) >= 200 and lang in ['en']"``), a ``pyarrow.compute.Expression``, a callable on
    a ``pyarrow.Table`` of rows, or a list of them. ``drop_invalid`` (True, or
    ``"image,utf8,empty,nan"``) drops records with unusable values instead of failing. The report
    counts each rule's drops. A Ray or Dask pack does not clean (yet): these options are refused.
    """
    engine = distributed_pack(source, workers=workers, max_side=max_side, image_format=image_format,
                              delimiter=delimiter, max_skipped=max_skipped, dedup=dedup, normalize=normalize,
                              filter=filter, drop_invalid=drop_invalid, dedup_memory=dedup_memory, rename=rename)
    if engine is not None:
        return engine(source, out, schema=schema, shard_size=shard_size, block_size=block_size,
                      compression=compression, level=level, overwrite=overwrite, on_error=on_error,
                      metadata=metadata, storage_options=storage_options, timeout=timeout, retries=retries,
                      staging_dir=staging_dir, staging_limit=staging_limit, uploads=uploads)
    images = ImageOptions(max_side=max_side, jpeg_quality=jpeg_quality, image_format=image_format)
    cleaning = CleanOptions.of(dedup=dedup, normalize=normalize, filter=filter, drop_invalid=drop_invalid,
                               dedup_memory=dedup_memory)
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, not {on_error!r}")
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, not {workers!r}")
    if max_skipped is not None and not (isinstance(max_skipped, (int, float)) and 0 <= max_skipped <= 1):
        raise ValueError(f"max_skipped must be a fraction between 0 and 1, not {max_skipped!r}")
    started = time.perf_counter()
    policy = RetryPolicy(attempts=retries, timeout_s=timeout)
    src = open_source(source, delimiter=delimiter, files=InputFiles(storage_options, policy))
    if rename:
        src = RenamedSource(src, parse_renames(rename))
    settings = codec_settings(block_size, compression, level)
    shard_bytes = parse_size(shard_size, what="shard_size")
    info = src.info()
    segments = list(src.segments())
    schema = images.schema_for(resolve_schema(src, info.schema, segments, schema, on_error))
    plan = cleaning.bind(schema) if cleaning.active else None
    if plan is not None and workers > 1 and src.parallel_safe:
        _check_picklable(plan)
    resumable = getattr(src, "resumable", True)
    fp = fingerprint(src.description, _input_stamp(src), [repr(s) for s in segments], schema.to_json(),
                     settings, shard_bytes, on_error, *([images.to_json()] if images.active else []),
                     *([cleaning.to_json()] if plan is not None else [])) if resumable else ""
    output = open_output(out, storage_options=storage_options, policy=policy, staging_dir=staging_dir,
                         staging_limit=parse_size(staging_limit, what="staging_limit"), uploads=uploads)
    try:
        journal = output.resume(fp if resumable else None, overwrite)
    except BaseException:
        output.abort()
        raise
    root = output.staging
    report = PackReport(out=output.url, source=src.description, workers=workers,
                        resumed_shards=len(journal.shards), compression=settings["compression"],
                        records=sum(s.n_records for s in journal.shards), skipped=journal.skipped,
                        cleaning=CleanTally.of_rules(rule_names(plan)) if plan is not None else None)
    # the kept shards' record bytes, so the compression ratio covers the whole dataset
    report.raw_bytes = output.kept_raw_bytes(journal)

    sink = ShardSink(root, schema, settings, shard_bytes, first_index=len(journal.shards),
                     durable=output.durable_staging)
    shards = list(journal.shards)
    codec = CODEC_NAMES[settings["compression"]]
    # a resumed pack that cleans first replays the finished segments' cleaning (no blocks), so
    # that dedup knows their records and the report counts their drops
    first_job = 0 if plan is not None else journal.next_segment
    jobs = (EncodeJob(src, segments[i], i, schema, settings["block_size"], codec, level, on_error,
                      image_options=images if images.active else None, clean=plan,
                      replay=i < journal.next_segment)
            for i in range(first_job, len(segments)))
    sizes = [src.segment_bytes(s) for s in segments]
    sized = all(n is not None for n in sizes)  # else the bar counts record bytes, with no total
    bar = _progress_bar(progress, sum(sizes) if sized else None, sum(sizes[:journal.next_segment]) if sized else 0)
    known_in = True
    # no more processes than segments: a one-segment input (the 250k-row Parquet bench file) took
    # 0.42 s with a pool of 2 vs 0.18 s in this process, for no parallelism at all
    pool_size = max(1, min(workers, len(segments) - first_job))
    seen = SeenHashes(memory_limit=cleaning.dedup_memory, spill_dir=root) if plan and plan.dedup is not None else None
    with _disk_full_is_a_storage_error(root):
        results = _encode_all(jobs, pool_size, src, root, seen)
        try:
            for res in results:
                if res.index < journal.next_segment:  # replayed: only what cleaning dropped counts
                    for _ in res.blocks:
                        pass
                    report.cleaning.merge(res.clean)
                    continue
                skip = journal.next_block if res.index == journal.next_segment else 0
                seg_raw = 0
                for k, block in enumerate(res.blocks):
                    if k < skip:
                        continue
                    closed = sink.add(block)
                    if closed is not None:
                        shards.append(closed)
                        # the rows skipped before this segment, for a resumed count
                        output.shard_closed(closed, Journal(fp, shards, res.index, k, report.skipped,
                                                            report.raw_bytes) if resumable else None)
                    report.raw_bytes += block.raw_size
                    report.records += block.n_records
                    seg_raw += block.raw_size
                sink.release_spill()  # a worker's spill file goes once its blocks are in the shards
                report.skipped += res.skipped
                if report.cleaning is not None:
                    report.cleaning.merge(res.clean)
                report.skip_examples.extend(res.skip_examples[: 20 - len(report.skip_examples)])
                known_in = known_in and res.in_bytes is not None
                report.bytes_in += res.in_bytes or 0
                if bar is not None:
                    bar.update(res.in_bytes if sized else seg_raw)
                    bar.set_postfix(records=f"{report.records:,}", refresh=False)
            _check_skipped(report, max_skipped)
            last = sink.finish()
            if last is not None:
                shards.append(last)
                output.shard_closed(last, None)
        except BaseException:
            sink.abort()  # the unfinished shard's temporary file goes; finished shards and journal stay
            output.abort()
            raise
        finally:
            results.close()  # stops the worker pool now, also when the error was raised on this side
            if seen is not None:
                report.dedup_table = {"distinct": seen.distinct, "bytes": seen.table_bytes, "spilled": seen.spilled}
                seen.close()
            if bar is not None:
                bar.close()

        image_meta = {"image_options": images.to_json()} if images.active else {}
        if report.cleaning is not None:  # how the dataset was made, for fastload info
            image_meta["cleaning"] = {"settings": cleaning.to_json(), "dropped": report.cleaning.to_json()}
        manifest = Manifest.from_shards(schema, settings, shards, {**info.metadata, **image_meta, **(metadata or {})})
        output.commit(manifest)
    report.shards = manifest.n_shards
    report.bytes_out = manifest.n_bytes
    if not known_in or report.resumed_shards:
        report.bytes_in = max(report.bytes_in, report.raw_bytes)
    report.records = manifest.n_records
    report.seconds = time.perf_counter() - started
    return report


def _check_picklable(plan) -> None:
    """Pack workers receive the filters by pickling: say so before any work, not from a worker."""
    import pickle

    for f in plan.filters:
        try:
            pickle.dumps(f)
        except Exception as exc:
            raise ValueError(f"filter {f.label} cannot be sent to pack workers ({type(exc).__name__}: {exc}); "
                             "define it at module level (not a lambda or a local function), or pack with "
                             "workers=1") from None


def _check_skipped(report: PackReport, max_skipped: float | None) -> None:
    """Fail when every row, or more than ``max_skipped`` of them, was skipped; warn past 1% by default."""
    if not report.skipped:
        return
    seen = report.records + report.skipped
    share = report.skipped / seen
    reasons = "; ".join(report.skip_examples[:3])
    if report.records == 0 or (max_skipped is not None and share > max_skipped):
        what = (f"every row ({seen:,}) was skipped" if report.records == 0 else
                f"{report.skipped:,} of {seen:,} rows ({share:.1%}) were skipped, more than "
                f"max_skipped={max_skipped:g} allows")
        raise SkippedRowsError(
            f"{report.source}: {what}. First reasons: {reasons}. Fix the input, or raise the limit "
            "(--max-skipped / max_skipped=); shards already finished are kept and reused by a re-run"
        )
    if max_skipped is None and share > SKIPPED_WARNING_SHARE:
        report.warning = (f"{report.skipped:,} of {seen:,} rows ({share:.1%}) were skipped; check the "
                          "reasons below, or set --max-skipped to make this an error")
        warnings.warn(f"{report.source}: {report.warning}", SkippedRowsWarning, stacklevel=3)


@contextmanager
def _disk_full_is_a_storage_error(root: Path):
    """A full disk (in this process or a worker) is a StorageError saying so, not a raw OSError."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) or isinstance(exc, StorageError):
            raise
        raise StorageError(
            f"{root}: no space left to write the dataset ({exc.strerror or exc}); free some space or "
            "choose another output directory, then re-run the same command to resume"
        ) from exc


def _input_stamp(src: Source) -> list:
    """Size and mtime (or ETag) of each input file, so that a resume refuses inputs changed since
    the interruption."""
    return [src.files.stamp(os.fspath(path)) for path in getattr(src, "paths", None) or ()]


def _encode_all(jobs: Iterable[EncodeJob], workers: int, src: Source, root: Path,
                seen: SeenHashes | None = None) -> Iterator[SegmentResult]:
    """Segment results in order; encoded by a process pool with a bounded window when workers > 1.

    Pool workers write each segment's blocks to a spill file in ``root`` named here (hidden, with
    the temporary mark, so an interrupted pack's clean-up removes it too); the files still present
    when this generator ends (a failed or dead worker's, unread results') are deleted then. With
    ``seen`` (dedup), this process decides each segment's duplicates in order (pack.clean.ordered).
    """
    decide = seen.first if seen is not None else None
    if workers == 1 or not src.parallel_safe:
        for job in jobs:
            yield stream_segment(job, decide)  # blocks are written as they are encoded
        return
    # fork where available, as torch's DataLoader does: spawn and forkserver re-import the user's
    # __main__ in every worker, which breaks scripts without a main guard.
    default = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    ctx = mp.get_context(getattr(src, "mp_context", None) or default)
    # workers end with this process, even when it is killed (kill -9 of pack left them running)
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=die_with_parent, initargs=(os.getpid(),))
    it = iter(jobs)
    window: deque = deque()
    spills: list[Path] = []
    try:
        if seen is not None:
            try:
                yield from encode_in_order(it, pool, workers, seen, root, spills)
            except BrokenProcessPool as exc:
                raise _worker_died() from exc
            return
        while True:
            try:  # once a worker has died, submit() raises this too, not only result()
                for job in islice(it, 2 * workers - len(window)):
                    spills.append(temp_path_for(root / f"segment-{job.index:06d}.blocks"))
                    window.append(pool.submit(encode_segment, replace(job, spill=str(spills[-1]))))
                if not window:
                    return
                res = window.popleft().result()
            except BrokenProcessPool as exc:
                raise _worker_died() from exc
            yield res
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # no worker writes a spill file after this
        for path in spills:
            path.unlink(missing_ok=True)


def _worker_died() -> WorkerError:
    return WorkerError("a pack worker process died (killed, out of memory or crashed); re-run the same "
                       "command to resume")


def _progress_bar(enabled: bool, total_bytes: int | None, done_bytes: int):
    """A bar over the input bytes (its total is the sum of what it will count), on stderr."""
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total_bytes, initial=done_bytes, unit="B", unit_scale=True, unit_divisor=1000,
                desc="pack", file=sys.stderr, dynamic_ncols=True, disable=None)
