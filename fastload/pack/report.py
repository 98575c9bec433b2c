"""The summary a pack prints at the end: records, shards, bytes, ratio, speed and skipped rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .._sizes import format_size
from .clean.report import CleanTally

SKIPPED_WARNING_SHARE = 0.01  # past this share of skipped rows, a pack warns (without max_skipped)


@dataclass
class PackReport:
    out: str
    source: str
    records: int = 0
    shards: int = 0
    bytes_in: int = 0  # input bytes read (file sizes when known, else record bytes)
    bytes_out: int = 0  # shard bytes written
    raw_bytes: int = 0  # record bytes before compression
    seconds: float = 0.0
    workers: int = 1
    skipped: int = 0
    skip_examples: list[str] = field(default_factory=list)
    resumed_shards: int = 0
    compression: str = "none"  # the codec of the blocks: the ratio is shown only when compressing
    warning: str = ""  # set when more than SKIPPED_WARNING_SHARE of the rows were skipped
    cleaning: CleanTally | None = None  # what --dedup/--filter/--drop-invalid dropped, per rule
    dedup_table: dict[str, Any] | None = None  # the seen set at the end: distinct, bytes, spilled
    # distributed packs: seconds summed over tasks, per stage (read_s, encode_s, upload_s, wait_s)
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def compression_ratio(self) -> float:
        return self.raw_bytes / self.bytes_out if self.bytes_out else 1.0

    @property
    def mb_per_s_in(self) -> float:
        return self.bytes_in / 1e6 / self.seconds if self.seconds else 0.0

    @property
    def mb_per_s_out(self) -> float:
        return self.bytes_out / 1e6 / self.seconds if self.seconds else 0.0

    def __str__(self) -> str:
        lines = [
            f"packed   {self.source}",
            f"into     {self.out}",
            f"records  {self.records:,}" + (f"  ({self.skipped:,} skipped)" if self.skipped else ""),
            f"shards   {self.shards}" + (f"  ({self.resumed_shards} kept from an interrupted run)"
                                         if self.resumed_shards else ""),
            f"bytes    {format_size(self.bytes_in)} in -> {format_size(self.bytes_out)} out"
            + (f" ({self.compression} compression ratio {self.compression_ratio:.2f})"
               if self.compression != "none" else ""),
            f"time     {self.seconds:.2f} s with {self.workers} worker(s): "
            f"{self.mb_per_s_in:.1f} MB/s in, {self.mb_per_s_out:.1f} MB/s out, "
            f"{self.records / self.seconds if self.seconds else 0:,.0f} records/s",
        ]
        if self.cleaning is not None:
            lines += self.cleaning.lines(self.records)
        if self.dedup_table is not None:
            t = self.dedup_table
            lines.append(f"  (dedup table: {t['distinct']:,} distinct records, {format_size(t['bytes'])} "
                         + ("in a file: more than --dedup-memory)" if t["spilled"] else "in memory)"))
        if self.warning:
            lines.append(f"WARNING  {self.warning}")
        if self.skip_examples:
            lines.append("skipped rows (first ones):")
            lines += [f"  {e}" for e in self.skip_examples]
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-able values (``fastload pack --json``)."""
        out = {name: getattr(self, name) for name in (
            "out", "source", "records", "shards", "bytes_in", "bytes_out", "raw_bytes", "seconds", "workers",
            "skipped", "skip_examples", "resumed_shards", "compression", "warning", "dedup_table", "stage_seconds")}
        out["cleaning"] = self.cleaning.to_json() if self.cleaning is not None else None
        return out
