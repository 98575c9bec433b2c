"""A pack written to object storage: shards uploaded as they finish, the manifest last.

Shards are cut exactly as for a local output, into a private staging directory, so the uploaded
files are byte-identical to a local pack's. Each finished shard is uploaded in the background
(several at once; multipart on S3) while encoding goes on, and leaves the staging directory once
stored; :class:`~.uploads.Uploader` bounds the bytes waiting there. The resume journal goes to
the output too, rewritten at most every :data:`JOURNAL_EVERY_S` seconds and covering only shards
already stored (uploads finish out of order). The manifest is uploaded after every shard; until
then no reader sees a dataset at the URL.

On a re-run with the same arguments, the shards the journal lists are kept when the store holds
each with the journal's size and the same last 64 bytes (the trailer, which carries the shard's
record and block counts and the checksums of its index and header); anything else of ours under
the prefix is deleted. Checking whole-file checksums would mean downloading every finished
shard again; ``fastload verify URL`` does that when wanted, and every reader checks a shard's
checksum when it first opens it.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import replace
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from ..errors import OutputExistsError
from ..format.codec import checksum
from ..format.manifest import Manifest
from ..format.shard_writer import ShardInfo
from ..format.spec import MANIFEST_NAME, PACK_JOURNAL, TRAILER_DTYPE
from ..format.writer import is_fastload_file
from .destination import RemoteDestination
from .journal import Journal
from .output import PackOutput, check_fingerprint
from .uploads import Uploader

JOURNAL_EVERY_S = 2.0  # the journal holds O(shards); rewriting it per shard would be quadratic
TAIL = TRAILER_DTYPE.itemsize
_CHECK_THREADS = 16  # concurrent tail reads when checking a resumed pack's shards


class RemoteOutput(PackOutput):
    # staged shards are uploaded, not kept: fsync'ing them cost 21 ms per 120 KB shard here
    durable_staging = False

    def __init__(self, dest: RemoteDestination, *, staging_dir=None, staging_limit: int, uploads: int):
        self.dest = dest
        self.url = dest.url
        if staging_dir is not None:
            Path(staging_dir).mkdir(parents=True, exist_ok=True)
        self.staging = Path(tempfile.mkdtemp(prefix="fastload-pack-", dir=staging_dir))
        self.uploader = Uploader(dest, threads=uploads, limit=staging_limit)
        self._tails: list[str] = []  # per shard, kept ones included
        self._kept = 0
        self._uploads: list[Future] = []  # per shard after the kept ones
        # journals waiting for their shards' uploads, oldest first, with their shard counts (a
        # journal's shard list is the driver's growing list: copying it per shard was quadratic)
        self._pending: list[tuple[int, Journal]] = []
        self._journal_written = 0.0
        self._journal_shards = -1

    # -- start -------------------------------------------------------------------------------
    def resume(self, fp: str | None, overwrite: bool) -> Journal:
        fresh = Journal(fp or "", [])
        names = self.dest.list()
        if MANIFEST_NAME in names:
            if not overwrite:
                raise OutputExistsError(f"{self.url} already holds a finished dataset; pass overwrite=True "
                                        "(--overwrite) to replace it")
            self.dest.delete([MANIFEST_NAME])  # first: the old dataset stops being one before its shards go
            del names[MANIFEST_NAME]
        others = sorted(n for n in names if not is_fastload_file(n))
        if others and not overwrite:
            raise OutputExistsError(f"output {self.url} is not empty ({len(others)} entries, e.g. {others[0]!r}); "
                                    "pass overwrite=True (--overwrite) to replace a previous dataset")
        journal = None
        if not overwrite and fp is not None and PACK_JOURNAL in names:
            journal = Journal.loads(self.dest.read(PACK_JOURNAL))
            check_fingerprint(journal, fp, self.url)
            if journal is not None and not self._intact(journal, names):
                journal = None
        journal = journal or fresh
        keep = {s.name for s in journal.shards} | ({PACK_JOURNAL} if journal.shards else set())
        self.dest.delete(sorted(n for n in names if is_fastload_file(n) and n not in keep))
        self.dest.abort_incomplete_uploads()  # a killed run's unfinished parts
        self._tails = list(journal.tails or [])
        self._kept = len(journal.shards)
        return journal

    def _intact(self, journal: Journal, names: dict[str, int]) -> bool:
        if journal.tails is None:
            return False
        if any(names.get(s.name) != s.n_bytes for s in journal.shards):
            return False

        def tail_ok(k: int) -> bool:
            s = journal.shards[k]
            return f"{checksum(self.dest.read(s.name, s.n_bytes - TAIL, s.n_bytes)):016x}" == journal.tails[k]

        with ThreadPoolExecutor(_CHECK_THREADS) as pool:
            return all(pool.map(tail_ok, range(len(journal.shards))))

    # -- shards ------------------------------------------------------------------------------
    def shard_closed(self, info: ShardInfo, journal: Journal | None) -> None:
        path = self.staging / info.name
        with open(path, "rb") as f:
            f.seek(info.n_bytes - TAIL)
            self._tails.append(f"{checksum(f.read(TAIL)):016x}")
        self._uploads.append(self.uploader.submit(path, info.name, info.n_bytes))
        if journal is not None:
            self._pending.append((len(journal.shards), journal))
        self._write_journal(force=False)

    def _stored(self) -> int:
        """Shards stored so far, counted from the first: uploads may finish out of order."""
        n = 0
        for fut in self._uploads:
            if not fut.done() or fut.cancelled() or fut.exception() is not None:
                break
            n += 1
        return self._kept + n

    def _write_journal(self, force: bool) -> None:
        if not self._pending or (not force and time.monotonic() - self._journal_written < JOURNAL_EVERY_S):
            return
        stored = self._stored()
        ready = [k for k, (n, _) in enumerate(self._pending) if n <= stored]
        if not ready:
            return
        n, journal = self._pending[ready[-1]]
        del self._pending[: ready[-1] + 1]
        if n == self._journal_shards:
            return
        done = replace(journal, shards=journal.shards[:n], tails=self._tails[:n])
        self.dest.write_bytes(PACK_JOURNAL, done.dumps())
        self._journal_written = time.monotonic()
        self._journal_shards = n

    # -- end ---------------------------------------------------------------------------------
    def commit(self, manifest: Manifest) -> None:
        try:
            self.uploader.wait()
            self.dest.write_bytes(MANIFEST_NAME, manifest.dumps())
        except BaseException:
            self.abort()
            raise
        self.uploader.close()
        self.dest.delete([PACK_JOURNAL])
        shutil.rmtree(self.staging, ignore_errors=True)

    def abort(self) -> None:
        """Stop uploading and record, best effort, the shards already stored, for a re-run."""
        try:
            self.uploader.close()
            self._write_journal(force=True)
        except Exception:  # noqa: BLE001 - the pack's own error is the one to report
            pass
        finally:
            shutil.rmtree(self.staging, ignore_errors=True)
