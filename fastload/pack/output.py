"""Where ``fastload.pack`` writes: the output's side of the shard-commit protocol.

The driver encodes blocks and cuts shards into ``output.staging`` (a local directory); the output
makes each finished shard durable (:meth:`PackOutput.shard_closed`), keeps the resume journal,
and writes the manifest last (:meth:`PackOutput.commit`), so a reader never sees a partial
dataset. A local output is its own staging directory (shards are renamed into place by the shard
writer); a remote one (:mod:`.remote_output`) uploads shards from a bounded staging directory.
"""

from __future__ import annotations

import os
import shutil
from abc import ABC, abstractmethod
from pathlib import Path

from ..errors import OutputExistsError
from ..format.manifest import Manifest
from ..format.record_sizes import write_record_sizes
from ..format.shard_reader import ShardReader
from ..format.shard_writer import ShardInfo
from ..format.spec import MANIFEST_NAME, PACK_JOURNAL
from ..format.writer import is_fastload_file, prepare_output
from ..storage.remote import RetryPolicy
from .destination import is_remote_url
from .journal import Journal


class PackOutput(ABC):
    """One pack's output: staging directory, resume journal, shard publishing, manifest."""

    url: str  # the output as the user named it (the report's "into")
    staging: Path  # where the shard sink writes and pack workers spill
    durable_staging = True  # whether shards in staging are fsync'ed (they are the output itself)

    @abstractmethod
    def resume(self, fp: str | None, overwrite: bool) -> Journal:
        """Check or clear the output; the journal of an interrupted pack with fingerprint ``fp``
        whose finished shards are all intact (else an empty one). ``fp`` None: not resumable."""

    @abstractmethod
    def shard_closed(self, info: ShardInfo, journal: Journal | None) -> None:
        """Shard ``info`` is finished in ``staging``; ``journal`` says where the next one starts."""

    @abstractmethod
    def commit(self, manifest: Manifest) -> None:
        """Every shard is finished: make them durable, then publish the manifest (the commit point)."""

    def abort(self) -> None:
        """The pack failed: stop, keeping what a re-run can resume from."""

    def kept_raw_bytes(self, journal: Journal) -> int:
        """Record bytes of the shards kept from an interrupted run."""
        return journal.raw_bytes or 0


class LocalOutput(PackOutput):
    """A local directory: shards are renamed into it as they finish; the journal follows each one."""

    def __init__(self, root: str | os.PathLike):
        self.staging = Path(root)
        self.url = str(self.staging)

    def resume(self, fp: str | None, overwrite: bool) -> Journal:
        root = self.staging
        fresh = Journal(fp or "", [])
        if root.is_dir():  # staging directories a killed Ray/Dask pack left here: ours, never data
            for p in root.iterdir():
                if p.is_dir() and is_fastload_file(p.name):
                    shutil.rmtree(p)
        if overwrite or not root.exists():
            prepare_output(root, overwrite)
            return fresh
        names = [p.name for p in root.iterdir()]
        if MANIFEST_NAME in names:
            raise OutputExistsError(f"{root} already holds a finished dataset; pass overwrite=True (--overwrite) to replace it")
        if any(not is_fastload_file(n) for n in names):
            prepare_output(root, overwrite)  # raises: not empty
        journal = Journal.read(root)  # a journal is never ours when this source cannot resume (fp None)
        check_fingerprint(journal, fp, root)
        if journal is None or not journal.shards_intact(root):
            journal = fresh
        keep = {s.name for s in journal.shards} | ({PACK_JOURNAL} if journal.shards else set())
        for name in names:  # stale temporaries and shards past the journal's end
            if name not in keep:
                (root / name).unlink()
        return journal

    def shard_closed(self, info: ShardInfo, journal: Journal | None) -> None:
        if journal is not None:
            journal.write(self.staging)

    def commit(self, manifest: Manifest) -> None:
        write_record_sizes(self.staging, manifest)  # before the manifest, the commit point
        manifest.write(self.staging)
        (self.staging / PACK_JOURNAL).unlink(missing_ok=True)

    def kept_raw_bytes(self, journal: Journal) -> int:
        if journal.raw_bytes is not None:
            return journal.raw_bytes
        return sum(int(ShardReader.open(self.staging / s.name, verify="never").blocks["raw_size"].sum())
                   for s in journal.shards)  # a journal written before raw_bytes was recorded


def check_fingerprint(journal: Journal | None, fp: str | None, where) -> None:
    if journal is not None and journal.fingerprint != fp:
        raise OutputExistsError(
            f"{where} holds an interrupted pack made with other inputs or options; re-run it with the "
            "same arguments to resume, or pass overwrite=True (--overwrite) to start again"
        )


def open_output(out: str | os.PathLike, *, storage_options: dict | None = None,
                policy: RetryPolicy = RetryPolicy(), staging_dir: str | os.PathLike | None = None,
                staging_limit: int, uploads: int) -> PackOutput:
    """A LocalOutput for a path, a RemoteOutput for a URL (``s3://bucket/ds``, ``gs://...``)."""
    text = os.fspath(out)
    if not is_remote_url(text):
        return LocalOutput(text.split("://", 1)[1] if text.startswith("file://") else text)
    from .destination import RemoteDestination
    from .remote_output import RemoteOutput

    return RemoteOutput(RemoteDestination(text, storage_options, policy=policy), staging_dir=staging_dir,
                        staging_limit=staging_limit, uploads=uploads)
