"""The resume journal of an unfinished pack: finished shards and where the next one starts.

It is rewritten atomically each time a shard is finished, so a pack killed at any point can be
re-run with the same arguments: finished shards are checked and kept, and work restarts at the
block that began the first unfinished shard.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..format.codec import checksum
from ..format.shard_reader import map_file
from ..format.shard_writer import ShardInfo, write_file_atomically
from ..format.spec import PACK_JOURNAL


@dataclass
class Journal:
    fingerprint: str
    shards: list[ShardInfo]
    next_segment: int = 0  # the segment holding the first block of the next shard
    next_block: int = 0  # that block's number within its segment
    skipped: int = 0  # rows skipped in the segments before next_segment
    raw_bytes: int | None = None  # record bytes of the finished shards (the report's ratio on resume)
    tails: list[str] | None = None  # xxh3 of each shard's last 64 bytes (remote outputs' resume check)

    def dumps(self) -> bytes:
        # Rewritten after every shard, so kept cheap: plain field dicts and compact JSON, which the
        # C encoder writes (asdict + indent made a 500-shard pack spend 10 s here).
        body = {"fingerprint": self.fingerprint, "shards": [dict(vars(s)) for s in self.shards],
                "next_segment": self.next_segment, "next_block": self.next_block, "skipped": self.skipped}
        if self.raw_bytes is not None:
            body["raw_bytes"] = self.raw_bytes
        if self.tails is not None:
            body["tails"] = self.tails
        return json.dumps(body).encode()

    @classmethod
    def loads(cls, data: bytes) -> "Journal | None":
        """The journal in ``data``; None when it is not a readable journal."""
        try:
            body = json.loads(data)
            j = cls(body["fingerprint"], [ShardInfo(**s) for s in body["shards"]],
                    int(body["next_segment"]), int(body["next_block"]), int(body.get("skipped", 0)),
                    body.get("raw_bytes"), body.get("tails"))
        except (ValueError, KeyError, TypeError):
            return None
        if j.tails is not None and len(j.tails) != len(j.shards):
            return None
        return j

    def write(self, root: Path) -> None:
        write_file_atomically(root / PACK_JOURNAL, self.dumps(), durable=False)

    @classmethod
    def read(cls, root: Path) -> "Journal | None":
        try:
            data = (root / PACK_JOURNAL).read_bytes()
        except FileNotFoundError:
            return None
        return cls.loads(data)

    def shards_intact(self, root: Path) -> bool:
        """True when every finished shard is on disk with its recorded size and checksum."""
        for s in self.shards:
            path = root / s.name
            try:
                if path.stat().st_size != s.n_bytes:
                    return False
            except FileNotFoundError:
                return False
            if f"{checksum(map_file(path)):016x}" != s.checksum:
                return False
        return True


def fingerprint(*parts: object) -> str:
    return f"{checksum(json.dumps(parts, sort_keys=True, default=repr).encode()):016x}"
