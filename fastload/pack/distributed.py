"""Pack the partitions of a distributed engine's dataset in its own tasks; the driver commits.

The shard-commit protocol shared by :mod:`fastload.ray` and :mod:`fastload.dask`:

1. **Start** (driver, :func:`start`): refuse an output holding a dataset unless ``overwrite``
   (then its manifest goes first, so it stops being a dataset before anything else changes),
   and remove what an earlier failed run of ours left (shards, staging directories, a journal).
2. **Write** (one task per partition, :func:`write_partition`): the partition's rows are encoded
   with the pack's own pieces (sources, ``stream_segment``, ``BlockBuilder``, ``ShardSink``) into
   shards named ``shard-PPPPPP-KKKKKK.fls`` (partition P, its K-th shard), cut in a staging
   directory and published (renamed, or uploaded in background threads) as each is finished.
   A task returns its :class:`PartitionResult`; it writes no manifest.
3. **Commit** (driver, :func:`commit`): results in partition order give the manifest's shard
   table, so record indices are global and contiguous in the engine's partition order, and the
   manifest is written last. Shard bytes depend only on a partition's rows and the options, so a
   fixed partitioning gives byte-identical output whatever the number of workers.
4. **Failure** (driver, :func:`discard`): every file of ours under the output is removed; no
   manifest was written, so no reader ever saw a dataset. A re-run starts again from step 1.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from .._sizes import parse_size
from ..errors import OutputExistsError, SchemaError
from ..format.manifest import Manifest
from ..format.record_sizes import write_record_sizes
from ..format.schema import Schema
from ..format.shard_writer import TEMP_MARK, ShardInfo
from ..format.spec import CODEC_NAMES, MANIFEST_NAME, SHARD_SUFFIX
from ..format.writer import ON_ERROR, ShardSink, codec_settings, is_fastload_file
from ..storage.remote import RetryPolicy
from .destination import Destination, LocalDestination, open_destination
from .encode import EncodeJob, stream_segment
from .inference import resolve_schema
from .report import PackReport
from .sources import open_source
from .sources.base import Chunk, Source, SourceInfo
from .uploads import Uploader


def partition_shard_name(partition: int, k: int) -> str:
    return f"shard-{partition:06d}-{k:06d}{SHARD_SUFFIX}"


@dataclass(frozen=True)
class PartitionPlan:
    """What every task needs to write its partition (picklable, the same for all tasks)."""

    out: str
    schema: Any = None  # a full Schema, overrides ("tokens:uint16[2049]") or None: inferred per partition
    settings: dict = field(default_factory=lambda: codec_settings("1MB", "none", 3))
    shard_bytes: int = 256_000_000
    on_error: str = "raise"
    storage_options: dict | None = None
    policy: RetryPolicy = RetryPolicy()
    staging_dir: str | None = None  # remote outputs: where a task stages its shards (default: temp dir)
    staging_limit: int = 2_000_000_000
    uploads: int = 2  # upload threads per task

    @classmethod
    def make(cls, out: str | os.PathLike, *, schema: Any = None, shard_size: int | str = "256MB",
             block_size: int | str = "1MB", compression: str = "none", level: int = 3, on_error: str = "raise",
             storage_options: dict | None = None, timeout: float = 60.0, retries: int = 5,
             staging_dir: str | os.PathLike | None = None, staging_limit: int | str = "2GB",
             uploads: int = 2) -> "PartitionPlan":
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, not {on_error!r}")
        return cls(out=os.fspath(out), schema=schema, settings=codec_settings(block_size, compression, level),
                   shard_bytes=parse_size(shard_size, what="shard_size"), on_error=on_error,
                   storage_options=storage_options, policy=RetryPolicy(attempts=retries, timeout_s=timeout),
                   staging_dir=None if staging_dir is None else os.fspath(staging_dir),
                   staging_limit=parse_size(staging_limit, what="staging_limit"), uploads=uploads)

    def destination(self) -> Destination:
        return open_destination(self.out, self.storage_options, self.policy)


@dataclass
class PartitionResult:
    """What a task reports: its shards, the schema it wrote, counts and where its time went."""

    partition: int
    shards: list[ShardInfo]
    schema: dict | None  # the schema's JSON form; None for a partition without rows
    records: int = 0
    raw_bytes: int = 0
    skipped: int = 0
    skip_examples: list[str] = field(default_factory=list)
    read_s: float = 0.0  # waiting for the engine's rows
    encode_s: float = 0.0  # converting, encoding and writing shards to staging
    upload_s: float = 0.0  # publishing shards (summed over upload threads; overlaps encoding)
    wait_s: float = 0.0  # waiting for uploads (staging full, or at the end)


class TableStream(Source):
    """Rows handed to a write task as a stream of tables or frames (Ray blocks, Dask partitions)."""

    parallel_safe = False
    resumable = False

    def __init__(self, tables: Iterable[Any], description: str):
        self._tables = iter(tables)
        self.description = description
        t0 = time.perf_counter()
        self._first = self._next()
        self.read_s = time.perf_counter() - t0  # waiting for the engine's next table

    def _next(self):
        import pyarrow as pa

        for t in self._tables:
            if not isinstance(t, pa.Table):
                t = open_source(t).table  # pandas (and any frame): the pack's own conversion rules
            if t.num_rows:
                return t
        return None

    def info(self) -> SourceInfo:
        if self._first is None:
            return SourceInfo()
        from ..format.arrow_types import schema_from_arrow

        return SourceInfo(schema=schema_from_arrow(self._first.schema))

    def segments(self) -> list[str]:
        return ["all"]

    def read(self, segment: str) -> Iterator[Chunk]:
        table, first = self._first, 0
        while table is not None:
            yield Chunk({name: table.column(name) for name in table.column_names}, self.description, first)
            first += table.num_rows
            t0 = time.perf_counter()
            table = self._next()
            self.read_s += time.perf_counter() - t0


def write_partition(plan: PartitionPlan, partition: int, rows: Any) -> PartitionResult:
    """One task: encode ``rows`` (a table, a data frame, blocks or dict records) into shards and
    publish them under ``plan.out``; the manifest is the driver's."""
    result = PartitionResult(partition, [], None)
    if _is_empty(rows):
        return result  # no rows: no shards, and nothing to infer a schema from
    src = rows if isinstance(rows, Source) else open_source(rows)
    info = src.info()
    segments = list(src.segments())
    schema = resolve_schema(src, info.schema, segments, plan.schema, plan.on_error)
    result.schema = schema.to_json()
    dest = plan.destination()
    staging = _staging_dir(plan, dest, partition)
    # a remote output's staged copies need no fsync; a local one's shards are renamed into place
    sink = ShardSink(staging, schema, plan.settings, plan.shard_bytes, durable=isinstance(dest, LocalDestination))
    uploader = Uploader(dest, threads=plan.uploads, limit=plan.staging_limit)
    codec = CODEC_NAMES[plan.settings["compression"]]

    def publish(info: ShardInfo) -> None:
        name = partition_shard_name(partition, len(result.shards))
        result.shards.append(ShardInfo(name, info.n_records, info.n_bytes, info.n_blocks, info.checksum))
        uploader.submit(staging / info.name, name, info.n_bytes)

    try:
        encode_start = time.perf_counter()
        for i, seg in enumerate(segments):
            res = stream_segment(EncodeJob(src, seg, i, schema, plan.settings["block_size"], codec,
                                           plan.settings["level"], plan.on_error))
            for block in res.blocks:
                closed = sink.add(block)
                if closed is not None:
                    publish(closed)
                result.raw_bytes += block.raw_size
                result.records += block.n_records
            result.skipped += res.skipped
            result.skip_examples.extend(res.skip_examples[: 20 - len(result.skip_examples)])
        last = sink.finish()
        if last is not None:
            publish(last)
        waited = time.perf_counter()
        uploader.wait()
        # the loop's time is reading the next table, encoding, and waiting for staging room
        result.read_s = getattr(src, "read_s", 0.0)
        result.encode_s = waited - encode_start - uploader.blocked_s - result.read_s
        result.wait_s = time.perf_counter() - waited + uploader.blocked_s
        result.upload_s = uploader.busy_s
    except BaseException:
        sink.abort()
        raise
    finally:
        uploader.close()
        shutil.rmtree(staging, ignore_errors=True)
    return result


def _is_empty(rows: Any) -> bool:
    if isinstance(rows, TableStream):
        return rows._first is None
    try:
        return len(rows) == 0
    except TypeError:  # an iterator: its source finds out
        return False


def _staging_dir(plan: PartitionPlan, dest: Destination, partition: int) -> Path:
    """A local output stages inside itself (hidden, so a rename publishes); a remote one in a
    temporary directory of the task's machine."""
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    if isinstance(dest, LocalDestination):
        path = dest.root / f".partition-{partition:06d}{TEMP_MARK}{tag}"
        path.mkdir(parents=True)
        return path
    if plan.staging_dir is not None:
        Path(plan.staging_dir).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"fastload-partition-{partition:06d}-", dir=plan.staging_dir))


# -- the driver's side ------------------------------------------------------------------------
def start(plan: PartitionPlan, overwrite: bool) -> None:
    """Check the output and clear what an earlier run of ours left there (before any task runs)."""
    dest = plan.destination()
    names = dest.list()
    if MANIFEST_NAME in names:
        if not overwrite:
            raise OutputExistsError(f"{dest.url} already holds a finished dataset; pass overwrite=True to replace it")
        dest.delete([MANIFEST_NAME])
        del names[MANIFEST_NAME]
    others = sorted(n for n in names if not is_fastload_file(n))
    if others and not overwrite:
        raise OutputExistsError(f"output {dest.url} is not empty ({len(others)} entries, e.g. {others[0]!r}); "
                                "pass overwrite=True to replace a previous dataset")
    dest.delete(sorted(n for n in names if is_fastload_file(n)))
    if isinstance(dest, LocalDestination):
        dest.root.mkdir(parents=True, exist_ok=True)
    else:
        dest.abort_incomplete_uploads()  # a killed run's unfinished parts


def commit(plan: PartitionPlan, results: list[PartitionResult], metadata: dict | None = None) -> Manifest:
    """Write the manifest of every partition's shards, in partition order (the commit point)."""
    results = sorted(results, key=lambda r: r.partition)
    numbers = [r.partition for r in results]
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"two write tasks reported the same partition number: {numbers[:20]}")
    schemas = {}
    for r in results:
        if r.schema is not None:
            schemas.setdefault(Schema.from_json(r.schema), []).append(r.partition)
    if not schemas:
        if isinstance(plan.schema, Schema):
            schemas[plan.schema] = []
        else:
            raise SchemaError(f"{plan.out}: every partition was empty; nothing to infer a schema from, "
                              "pass a full schema to write an empty dataset")
    if len(schemas) > 1:
        described = "; ".join(f"partitions {parts[:5]}: ({s.describe()})" for s, parts in schemas.items())
        raise SchemaError(f"{plan.out}: partitions inferred different schemas ({described}); pass schema= "
                          "(a full schema or type overrides) so that every partition writes the same one")
    schema = next(iter(schemas))
    shards = [s for r in results for s in r.shards]
    manifest = Manifest.from_shards(schema, plan.settings, shards, metadata)
    dest = plan.destination()
    if isinstance(dest, LocalDestination):  # a remote output gets none (its shards are not here)
        write_record_sizes(dest.root, manifest)
    dest.write_bytes(MANIFEST_NAME, manifest.dumps())
    return manifest


def discard(plan: PartitionPlan) -> None:
    """After a failed write: remove every file of ours under the output (best effort). An output
    that holds a manifest is a finished dataset (start() refused it, or removed its manifest
    first): it is never touched."""
    dest = plan.destination()
    names = dest.list()
    if MANIFEST_NAME not in names:
        dest.delete(sorted(n for n in names if is_fastload_file(n)))


def report(plan: PartitionPlan, description: str, results: list[PartitionResult], manifest: Manifest,
           seconds: float, workers: int) -> PackReport:
    rep = PackReport(out=plan.out, source=description, workers=workers,
                     compression=plan.settings["compression"])
    rep.records, rep.shards, rep.bytes_out = manifest.n_records, manifest.n_shards, manifest.n_bytes
    rep.raw_bytes = sum(r.raw_bytes for r in results)
    rep.bytes_in = rep.raw_bytes
    rep.skipped = sum(r.skipped for r in results)
    rep.skip_examples = [e for r in results for e in r.skip_examples][:20]
    rep.seconds = seconds
    rep.stage_seconds = {k: sum(getattr(r, k) for r in results) for k in ("read_s", "encode_s", "upload_s", "wait_s")}
    return rep
