"""A whole dataset's integrity: each shard's file checksum against the manifest, each block's, and
the record sizes files against the blocks."""

from __future__ import annotations

from typing import Callable

from ..errors import FormatError
from .codec import checksum
from .record_sizes import check_record_sizes


def verify_dataset(ds, progress: Callable[[int, str], None] | None = None) -> None:
    """Check every shard of ``ds`` (a :class:`~fastload.format.dataset.Dataset`) against the
    manifest's file checksum and every block against its checksum; raise FormatError naming the
    shard (and the corrupt block, when one is), then each record sizes file against the blocks
    (:func:`~fastload.format.record_sizes.check_record_sizes`). ``progress(s, name)`` is called
    after each shard."""
    for s, name in enumerate(ds.manifest.shard_names):
        reader = ds.shard(s)
        if f"{checksum(reader.buf):016x}" != ds.manifest.shard_checksums[s]:
            reader.verify_all()  # names the corrupt block when one is
            raise FormatError(f"shard {ds.locator.where(name)}: file checksum differs from the manifest")
        reader.verify_all()
        if ds.locator.max_open is not None:
            del reader
            ds.release(s)  # a cache smaller than the dataset must be able to evict it
        if progress is not None:
            progress(s, name)
    check_record_sizes(ds)
