"""Fuzz fastload's read side for a while: random crafted datasets, read in a separate process.

Each case copies a small base dataset (zstd or not), applies 1 to 3 random mutations from
tests/format/fuzzing.py (integers at the limits in trailers, block tables, column offsets,
headers and manifests; byte flips; rewritten record offsets and shapes; every checksum
recomputed), then has the reader process open it, read every record three ways and verify it.
Outcomes: a correct read, a clean error (FastloadError), or a finding: another exception, reads
that disagree or differ from the written records, a crash of the reader, a hang. Findings are kept
under --keep with their mutations; the figures go to docs/format.md.

    .venv/bin/python tools/fuzz_read.py --cases 20000 --seed 1
"""

from __future__ import annotations

import argparse
import collections
import platform
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.format.fuzzing import (  # noqa: E402 - after the path is set
    EXTREMES, FLIP_PARTS, HOSTILE_CHECKSUMS, HOSTILE_NAMES, MANIFEST_KEYS, TABLE_FIELDS, TRAILER_FIELDS, Mutation,
    Reader, apply, build, fresh_copy, save_case,
)

KINDS = ("trailer", "table", "block_span", "cols", "json_len", "header_schema", "manifest", "flip", "var_offset", "nd_shape")


def random_int(rng: random.Random) -> int:
    pick = rng.random()
    if pick < 0.5:
        return rng.choice(EXTREMES)
    if pick < 0.75:
        return rng.choice(EXTREMES) + rng.randint(-3, 3)
    if pick < 0.9:
        return rng.getrandbits(64)
    return rng.randint(-(2**63), -1)


def random_mutation(rng: random.Random) -> Mutation:
    kind = rng.choice(KINDS)
    shard, index = rng.randint(0, 3), rng.randint(0, 10_000)
    if kind == "trailer":
        return Mutation(kind, shard, rng.choice(TRAILER_FIELDS), value=random_int(rng))
    if kind == "table":
        return Mutation(kind, shard, rng.choice(TABLE_FIELDS), index, random_int(rng))
    if kind == "header_schema":
        value = random_int(rng) if rng.random() < 0.5 else rng.choice(["uint64", "int8", "str", "array", "", "x/y"])
        return Mutation(kind, shard, rng.choice(["shape", "dtype", "kind", "name"]), index, value)
    if kind == "manifest":
        value = rng.choice([random_int(rng), random_int(rng), rng.choice(HOSTILE_NAMES + HOSTILE_CHECKSUMS),
                            None, True, 1.5])
        return Mutation(kind, shard, rng.choice(MANIFEST_KEYS), index, value)
    if kind == "flip":
        return Mutation(kind, shard, rng.choice(FLIP_PARTS), index, rng.randint(0, 254))
    return Mutation(kind, shard, "", index, random_int(rng))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds before a read counts as a hang")
    ap.add_argument("--keep", default="fuzz-findings", help="directory for the cases that found something")
    args = ap.parse_args()

    rng = random.Random(args.seed)
    counts: collections.Counter[str] = collections.Counter()
    by_kind: collections.Counter[tuple[str, str]] = collections.Counter()
    keep = Path(args.keep)
    reader = Reader(timeout=args.timeout)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bases = {c: build(work / f"base-{c}", c) for c in ("none", "zstd")}
        try:
            for case in range(args.cases):
                muts = [random_mutation(rng) for _ in range(rng.choice((1, 1, 2, 3)))]
                compression, verify = rng.choice(("none", "zstd")), rng.choice(("never", "first", "always"))
                root = fresh_copy(bases[compression], work / "case")
                apply(root, muts)
                outcome, detail = reader.check(root, verify, strict=all(m.strict for m in muts))
                counts[outcome] += 1
                for m in muts:
                    by_kind[(m.kind, outcome)] += 1
                if outcome not in ("ok", "error"):
                    found = keep / f"case-{case:06d}-{outcome}"
                    shutil.copytree(root, found, dirs_exist_ok=True)
                    save_case(found, muts, verify)
                    print(f"case {case}: {outcome}: {[m.describe() for m in muts]} ({compression}, verify={verify})\n"
                          f"  {detail.strip().splitlines()[-1] if detail.strip() else ''}", file=sys.stderr)
                if (case + 1) % 1000 == 0:
                    print(f"{case + 1} cases, {dict(counts)}", file=sys.stderr)
        finally:
            reader.close()
    seconds = time.perf_counter() - t0
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"machine: {platform.platform()}, Python {platform.python_version()}; {seconds:.0f} s")
    print(f"cases: {args.cases}; correct reads: {counts['ok']}; clean errors (FastloadError): {counts['error']}; "
          f"other failures: {counts['failure']}; crashes: {counts['crash']}; hangs: {counts['hang']}")
    for kind in KINDS:
        row = {o: by_kind[(kind, o)] for o in ("ok", "error", "failure", "crash", "hang") if by_kind[(kind, o)]}
        print(f"  {kind:14s} {row}")
    return 0 if counts["failure"] + counts["crash"] + counts["hang"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
