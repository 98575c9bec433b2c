"""Write a dataset: the user-facing :class:`Writer`, and the shard sink the pack driver shares."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .._sizes import parse_size
from ..errors import OutputExistsError, SchemaError
from .block import BlockBuilder, EncodedBlock, SpilledBlock
from .columns import convert_columns, filter_rows
from .infer import infer_schema
from .manifest import Manifest
from .record_sizes import is_sizes_name, write_record_sizes
from .schema import Field, Schema
from .shard_writer import TEMP_MARK, ShardInfo, ShardWriter, SpillFile
from .spec import CODEC_NAMES, MANIFEST_NAME, PACK_JOURNAL, SHARD_SUFFIX, shard_name

ON_ERROR = ("raise", "skip")


def codec_settings(block_size: int | str, compression: str, level: int) -> dict[str, Any]:
    """Validated codec settings as stored in the manifest and shard headers."""
    if compression not in CODEC_NAMES:
        raise ValueError(f"compression must be one of {sorted(CODEC_NAMES)}, not {compression!r}")
    if not isinstance(level, int) or not 1 <= level <= 22:
        raise ValueError(f"zstd level must be an integer in 1..22, not {level!r}")
    return {"block_size": parse_size(block_size, what="block_size"), "compression": compression,
            "level": level}


def is_fastload_file(name: str) -> bool:
    return (name == MANIFEST_NAME or name == PACK_JOURNAL or name.endswith(SHARD_SUFFIX)
            or is_sizes_name(name) or (name.startswith(".") and TEMP_MARK in name))


def prepare_output(out: str | os.PathLike, overwrite: bool) -> Path:
    """Create ``out``; refuse a non-empty one unless ``overwrite`` (then remove only fastload files)."""
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    present = sorted(p.name for p in root.iterdir())
    if present and not overwrite:
        raise OutputExistsError(
            f"output {root} is not empty ({len(present)} entries, e.g. {present[0]!r}); "
            "pass overwrite=True (--overwrite) to replace a previous dataset"
        )
    for name in present:
        if is_fastload_file(name):
            (root / name).unlink()
    return root


class ShardSink:
    """Appends encoded blocks to numbered shards, starting a new shard once ``shard_size`` is reached."""

    def __init__(self, root: Path, schema: Schema, settings: dict[str, Any], shard_size: int,
                 first_index: int = 0, *, durable: bool = True):
        self.root = root
        self.durable = durable  # fsync each shard (False: staging copies that are uploaded)
        self.schema = schema
        self.settings = settings
        self.shard_size = shard_size
        self.next_index = first_index
        self._current: ShardWriter | None = None
        self._spill: SpillFile | None = None

    def add(self, block: EncodedBlock | SpilledBlock) -> ShardInfo | None:
        """Add a block; returns the shard that this block closed, if any (the block starts the next).

        A :class:`SpilledBlock` is copied from its pack worker's spill file, which stays open
        until :meth:`release_spill` or a block from another spill file.
        """
        closed = None
        cur = self._current
        if cur is not None and cur.n_blocks and cur.n_bytes + block.stored_size > self.shard_size:
            closed = self._close()
        if self._current is None:
            self._current = ShardWriter(self.root / shard_name(self.next_index), self.schema, self.settings,
                                        durable=self.durable)
            self.next_index += 1
        if isinstance(block, SpilledBlock):
            if self._spill is None or str(self._spill.path) != block.spill:
                self.release_spill()
                self._spill = SpillFile(block.spill)
            self._current.add_copy(self._spill, block)
        else:
            self._current.add(block)
        return closed

    def release_spill(self) -> None:
        """Close and delete the spill file blocks were last copied from."""
        if self._spill is not None:
            spill, self._spill = self._spill, None
            spill.close()

    def finish(self) -> ShardInfo | None:
        self.release_spill()
        return self._close() if self._current is not None else None

    def _close(self) -> ShardInfo:
        info = self._current.close()
        self._current = None
        return info

    def abort(self) -> None:
        try:
            self.release_spill()
        finally:
            if self._current is not None:
                self._current.abort()
                self._current = None


class Writer:
    """Write records to a new dataset directory; the manifest is written by ``close()``.

    Records go in one at a time (``write({"x": 1, ...})``) or as columns (``write_batch``: a dict
    of equal-length arrays/lists, a pyarrow Table/RecordBatch, or a pandas DataFrame). Without a
    schema, field types are inferred from the first records. Leaving the ``with`` block through an
    exception removes the partial shard and writes no manifest.
    """

    def __init__(self, out: str | os.PathLike, schema: Schema | str | None = None, *,
                 shard_size: int | str = "256MB", block_size: int | str = "1MB",
                 compression: str = "none", level: int = 3, overwrite: bool = False,
                 metadata: dict[str, Any] | None = None, on_error: str = "raise",
                 buffer_records: int = 4096):
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, not {on_error!r}")
        self.schema = Schema.parse(schema) if isinstance(schema, str) else schema
        self.settings = codec_settings(block_size, compression, level)
        self.shard_size = parse_size(shard_size, what="shard_size")
        self.root = prepare_output(out, overwrite)
        self.metadata = dict(metadata or {})
        self.on_error = on_error
        self.skipped: list[tuple[int, str]] = []
        self._buffer_records = buffer_records
        self._rows: list[dict[str, Any]] = []
        self._n_seen = 0
        self._shards: list[ShardInfo] = []
        self._builder: BlockBuilder | None = None
        self._sink: ShardSink | None = None
        self._closed = False
        self.manifest: Manifest | None = None

    # -- input -----------------------------------------------------------------------------
    def write(self, record: dict[str, Any]) -> None:
        """Add one record (a dict of field name -> value)."""
        self._check_open()
        self._rows.append(record)
        if len(self._rows) >= self._buffer_records:
            self._flush_rows()

    def write_batch(self, batch: Any) -> None:
        """Add many records given as columns: dict of arrays/lists, pyarrow Table/RecordBatch, DataFrame."""
        self._check_open()
        self._flush_rows()
        columns = _as_columns(batch)
        self._add_columns(columns)

    def _flush_rows(self) -> None:
        if not self._rows:
            return
        rows, self._rows = self._rows, []
        names = list(self.schema.names) if self.schema else list(rows[0])
        columns: dict[str, list] = {n: [] for n in names}
        for i, r in enumerate(rows):
            if set(r) != set(names):
                raise SchemaError(
                    f"record {self._n_seen + i} has fields {sorted(r)}, expected {sorted(names)}"
                )
            for n in names:
                columns[n].append(r[n])
        self._add_columns(columns)

    def _add_columns(self, columns: dict[str, Any]) -> None:
        n = len(next(iter(columns.values()))) if columns else 0
        if n == 0:
            return
        if self.schema is None:
            self.schema = infer_schema(columns)
        self._ensure_started()
        conv, bad = convert_columns(self.schema, columns, n)
        if bad:
            rows = sorted(bad)
            if self.on_error == "raise":
                first = rows[0]
                raise SchemaError(f"record {self._n_seen + first}: {bad[first]}")
            self.skipped.extend((self._n_seen + r, bad[r]) for r in rows)
            keep = np.ones(n, dtype=bool)
            keep[rows] = False
            self._n_seen += n
            columns = filter_rows(columns, keep)
            n = int(keep.sum())
            conv, bad = convert_columns(self.schema, columns, n)
        else:
            self._n_seen += n
        for block in self._builder.add(conv, n):
            self._add_block(block)

    def _ensure_started(self) -> None:
        if self._builder is None:
            codec = CODEC_NAMES[self.settings["compression"]]
            self._builder = BlockBuilder(self.schema, self.settings["block_size"], codec, self.settings["level"])
            self._sink = ShardSink(self.root, self.schema, self.settings, self.shard_size)

    def _add_block(self, block: EncodedBlock) -> None:
        closed = self._sink.add(block)
        if closed is not None:
            self._shards.append(closed)

    # -- lifecycle -------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("write to a closed Writer")

    def close(self) -> Manifest:
        """Finish the last block and shard, then write the manifest (the dataset's commit point)."""
        if self._closed:
            return self.manifest
        self._flush_rows()
        if self.schema is None:
            raise SchemaError("nothing was written and no schema was given: an empty dataset needs a schema")
        self._ensure_started()
        for block in self._builder.flush():
            self._add_block(block)
        last = self._sink.finish()
        if last is not None:
            self._shards.append(last)
        self._closed = True
        self.manifest = Manifest.from_shards(self.schema, self.settings, self._shards, self.metadata)
        write_record_sizes(self.root, self.manifest)  # before the manifest, the commit point
        self.manifest.write(self.root)
        return self.manifest

    def abort(self) -> None:
        """Stop writing: remove the partial shard; finished shards stay but no manifest is written."""
        self._closed = True
        if self._sink is not None:
            self._sink.abort()

    def __enter__(self) -> "Writer":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.close()  # buffered rows are converted here, so a bad one can raise now
            except BaseException:
                self.abort()
                raise
        else:
            self.abort()


def _as_columns(batch: Any) -> dict[str, Any]:
    """Columns from a dict, a pyarrow Table/RecordBatch or a pandas DataFrame."""
    if isinstance(batch, dict):
        return batch
    mod = type(batch).__module__
    if mod.startswith("pyarrow"):
        return {name: batch.column(name) for name in batch.schema.names}
    if mod.startswith("pandas"):
        from .arrow_types import table_from_pandas

        table = table_from_pandas(batch)
        return {name: table.column(name) for name in table.schema.names}
    raise TypeError(f"write_batch takes a dict of columns, a pyarrow Table/RecordBatch or a DataFrame, "
                    f"not {type(batch).__name__}")


def write_records(out: str | os.PathLike, records: Iterable[dict[str, Any]], schema: Schema | None = None,
                  **options: Any) -> Manifest:
    """Write an iterable of dicts to ``out`` in one call (a convenience over :class:`Writer`)."""
    with Writer(out, schema, **options) as w:
        for r in records:
            w.write(r)
    return w.manifest


__all__ = ["Writer", "ShardSink", "prepare_output", "write_records", "Field", "Schema"]
