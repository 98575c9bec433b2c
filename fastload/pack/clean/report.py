"""What cleaning dropped, per rule: records, bytes and the first few places (file and row).

A segment's tally travels back from its worker; the pack merges them in segment order, so the
examples are the first ones in source order whatever the number of workers. The merged tally goes
into the pack report, its JSON, and the manifest's metadata (``fastload info`` shows it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from ..._sizes import format_size

MAX_EXAMPLES = 5


@dataclass
class RuleTally:
    records: int = 0
    bytes: int = 0  # the dropped records' stored bytes (before compression)
    examples: list[str] = field(default_factory=list)  # "data.jsonl line 17", first ones first


@dataclass
class CleanTally:
    """Drops per rule, in the order rules apply (a record counts under the first rule dropping it)."""

    rules: dict[str, RuleTally] = field(default_factory=dict)

    @classmethod
    def of_rules(cls, names: Iterable[str]) -> "CleanTally":
        """An empty tally listing ``names`` in this order (a rule that drops nothing still shows)."""
        return cls({name: RuleTally() for name in names})

    def add(self, rule: str, records: int, nbytes: int, examples: Iterable[str] = ()) -> None:
        tally = self.rules.setdefault(rule, RuleTally())
        tally.records += records
        tally.bytes += nbytes
        for where in examples:
            if len(tally.examples) >= MAX_EXAMPLES:
                break
            tally.examples.append(where)

    def merge(self, other: "CleanTally | None") -> None:
        """Add a later segment's tally (its examples come after this one's)."""
        for rule, t in (other.rules.items() if other is not None else ()):
            self.add(rule, t.records, t.bytes, t.examples)

    @property
    def records(self) -> int:
        return sum(t.records for t in self.rules.values())

    @property
    def bytes(self) -> int:
        return sum(t.bytes for t in self.rules.values())

    def to_json(self) -> list[dict[str, Any]]:
        """A list, so the rules keep their order in JSON written with sorted keys (the manifest)."""
        return [{"rule": rule, "records": t.records, "bytes": t.bytes, "examples": list(t.examples)}
                for rule, t in self.rules.items()]

    @classmethod
    def from_json(cls, obj: list[dict[str, Any]]) -> "CleanTally":
        return cls({t["rule"]: RuleTally(int(t["records"]), int(t["bytes"]), list(t.get("examples", [])))
                    for t in obj})

    def lines(self, kept: int) -> list[str]:
        """The report's text: a total, then one line per rule with its first examples."""
        seen = kept + self.records
        out = [f"cleaning {self.records:,} of {seen:,} records dropped ({format_size(self.bytes)} of records)"]
        width = max((len(rule) for rule in self.rules), default=0)
        for rule, t in self.rules.items():
            line = f"  {rule:<{width}}  {t.records:>11,}  {format_size(t.bytes):>9}"
            out.append(line + (f"  e.g. {'; '.join(t.examples)}" if t.examples else ""))
        return out
