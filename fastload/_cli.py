"""The ``fastload`` command: a thin layer over the library (pack, info, verify, head, demo, bench, cache).

Progress goes to stderr, results to stdout; each error class has its own exit status.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import decimal
import json
import math
import os
import sys
import warnings
from typing import Any, Sequence

import numpy as np

from . import errors
from ._sizes import format_size

EXIT_CODES = (  # most specific first
    (errors.SkippedRowsError, 9),
    (errors.OutputExistsError, 5),
    (errors.SourceError, 4),
    (errors.FormatError, 3),
    (errors.SchemaError, 6),
    (errors.StorageError, 7),
    (errors.WorkerError, 8),
    (errors.FastloadError, 1),
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        status = args.run(args) or 0
        sys.stdout.flush()  # here, so that a closed pipe is met inside this try
        return status
    except BrokenPipeError:
        return _reader_went_away()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (errors.FastloadError, ValueError, OSError) as exc:
        print(f"fastload {args.command}: error: {exc}", file=sys.stderr)
        for cls, code in EXIT_CODES:
            if isinstance(exc, cls):
                return code
        return 1


def _reader_went_away() -> int:
    """stdout's reader has gone (``fastload head ds | head -1``): end quietly, as Unix tools do."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush does not complain
    os.close(devnull)
    return 141  # 128 + SIGPIPE, the status of a tool killed by the closed pipe


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fastload", description="Pack, inspect and verify fastload datasets.")
    sub = p.add_subparsers(dest="command")

    from .pack.sources import PATH_KINDS

    pk = sub.add_parser("pack", help="convert a source (Parquet, Arrow, Feather, JSON Lines, JSON, CSV, "
                        ".npy/.npz, images, WebDataset, MDS, LitData, Hugging Face, Megatron .bin/.idx) to shards",
                        description=f"Convert a source to a fastload dataset. Sources: {PATH_KINDS}.")
    pk.add_argument("source", help="input file, directory or glob (quote globs: 'data/*.parquet'), or a URL: "
                    "s3://bucket/raw/*.parquet, gs://..., https://... (any fsspec URL)")
    pk.add_argument("out", help="output directory or URL (s3://bucket/ds; must be empty unless --overwrite)")
    pk.add_argument("--schema", help="type overrides, e.g. 'tokens:uint16[2049],label:int32'; quote names "
                    """with spaces or punctuation: '"Body Mass (g)":float32'""")
    pk.add_argument("--rename", action="append", metavar="OLD=NEW",
                    help="store column OLD as NEW (repeatable; quote names holding '=': '\"a=b\"=ab')")
    pk.add_argument("--shard-size", default="256MB", help="target shard size (default 256MB)")
    pk.add_argument("--block-size", default="1MB", help="target raw block size (default 1MB)")
    pk.add_argument("--compression", choices=["none", "zstd"], default="none")
    pk.add_argument("--level", type=int, default=3, help="zstd level 1-22 (default 3)")
    pk.add_argument("--workers", type=int, default=1, help="parallel conversion processes")
    pk.add_argument("--overwrite", action="store_true", help="replace a dataset already in OUT")
    pk.add_argument("--on-error", choices=["raise", "skip"], default="raise",
                    help="stop at the first bad row (default) or skip and count bad rows")
    pk.add_argument("--max-skipped", type=float, metavar="FRACTION",
                    help="with --on-error skip, fail (exit 9) when more than this share of rows is "
                         "skipped, e.g. 0.01 (default: warn past 1%%, fail only when every row is)")
    pk.add_argument("--delimiter", help="CSV field separator: one character, an escape or name "
                    "('\\t', tab, semicolon, pipe, space) or 'whitespace' for runs of spaces and tabs "
                    "(default: comma; tab for .tsv)")
    pk.add_argument("--no-progress", action="store_true")
    pk.add_argument("--max-side", type=int, help="resize images whose longer side exceeds N pixels")
    pk.add_argument("--jpeg-quality", type=int, default=90, help="quality of re-encoded JPEGs (default 90)")
    pk.add_argument("--image-format", choices=["keep", "jpeg", "raw"], default="keep",
                    help="store images as given (default), re-encoded as JPEG, or as raw RGB pixels")
    pk.add_argument("--timeout", type=float, default=60.0, help="seconds per remote request (default 60)")
    pk.add_argument("--retries", type=int, default=5, help="attempts per remote request (default 5)")
    pk.add_argument("--uploads", type=int, default=4, help="shards uploaded at once to a remote output (default 4)")
    pk.add_argument("--staging-dir", help="where a remote output's shards wait for upload (default: the "
                    "temporary directory)")
    pk.add_argument("--staging-limit", default="2GB", help="at most this many bytes of finished shards wait "
                    "there (default 2GB)")
    cl = pk.add_argument_group("cleaning (see docs/cleaning.md)")
    cl.add_argument("--dedup", nargs="?", const=True, metavar="FIELD[,FIELD...]",
                    help="drop records whose content (these fields; alone, after the paths, or --dedup='*': "
                         "the whole record) was seen before; the first in source order is kept")
    cl.add_argument("--normalize", metavar="nfc,case,whitespace",
                    help="normalise text for --dedup's hash only: Unicode NFC, lowercase, white-space runs ('all')")
    cl.add_argument("--dedup-memory", metavar="SIZE",
                    help="memory for the dedup table (default 1GiB; 32-64 bytes per distinct record), "
                         "beyond which it is a file in OUT (a remote OUT: in --staging-dir)")
    cl.add_argument("--filter", action="append", metavar="EXPR",
                    help="keep records for which EXPR holds, e.g. \"len(text) >= 200 and lang in ['en', 'fr']\" "
                         "(repeatable: all must hold)")
    cl.add_argument("--drop-invalid", nargs="?", const=True, metavar="RULES",
                    help="drop records with unusable values instead of failing: image (does not decode), utf8, "
                         "empty (text), nan (NaN/inf); all when given alone, after the paths")
    pk.add_argument("--json", action="store_true", help="print the report as JSON")
    pk.set_defaults(run=_pack)

    inf = sub.add_parser("info", help="schema, records, shards, bytes, compression, version")
    inf.add_argument("url", help="a fastload dataset: local directory or s3://, gs://, http(s):// URL")
    inf.add_argument("--json", action="store_true", help="print machine-readable JSON")
    inf.set_defaults(run=_info)

    ver = sub.add_parser("verify", help="check every checksum; non-zero exit naming what is corrupt")
    ver.add_argument("url", help="a fastload dataset: local directory or s3://, gs://, http(s):// URL")
    ver.set_defaults(run=_verify)

    hd = sub.add_parser("head", help="print the first records as JSON lines (NaN and infinities as strings)")
    hd.add_argument("url", help="a fastload dataset: local directory or s3://, gs://, http(s):// URL")
    hd.add_argument("-n", type=int, default=5, help="number of records (default 5)")
    hd.set_defaults(run=_head)

    dm = sub.add_parser("demo", help="generate a small corpus, pack it, load it and print throughput")
    dm.add_argument("--out", help="directory for the demo files (default: a new temporary directory)")
    dm.add_argument("--records", type=int, default=100_000)
    dm.add_argument("--workers", type=int, default=2)
    dm.set_defaults(run=_demo)

    from .bench.cli import add_parser as add_bench  # stdlib-only at import: no torch until it runs
    add_bench(sub)

    from .storage import cli as storage_cli  # cheap: fsspec loads only when a remote dataset opens

    storage_cli.add_parser(sub)
    for name in ("pack", "info", "verify", "head"):
        storage_cli.add_storage_options(sub.choices[name])
    for name in ("info", "verify", "head"):  # they read a remote dataset through the node cache
        storage_cli.add_cache_dir(sub.choices[name])
    return p


def _demo(args) -> int:
    from .demo import main as demo_main

    return demo_main(args)


def _pack(args) -> int:
    from .pack.driver import pack

    with warnings.catch_warnings():  # the report itself shows the warning, in its place
        warnings.simplefilter("ignore", errors.SkippedRowsWarning)
        report = pack(args.source, args.out, schema=args.schema, shard_size=args.shard_size,
                      block_size=args.block_size, compression=args.compression, level=args.level,
                      workers=args.workers, overwrite=args.overwrite, on_error=args.on_error,
                      progress=not args.no_progress, max_side=args.max_side,
                      jpeg_quality=args.jpeg_quality, image_format=args.image_format,
                      delimiter=args.delimiter, max_skipped=args.max_skipped,
                      storage_options=args.storage_options, timeout=args.timeout, retries=args.retries,
                      uploads=args.uploads, staging_dir=args.staging_dir, staging_limit=args.staging_limit,
                      rename=args.rename, dedup=True if args.dedup == "*" else args.dedup,
                      normalize=args.normalize, dedup_memory=args.dedup_memory, filter=args.filter,
                      drop_invalid=args.drop_invalid)
    print(json.dumps(report.to_json(), indent=1) if args.json else report)
    return 0


def _open(args):
    from .opening import open_dataset

    return open_dataset(args.url, storage_options=args.storage_options, cache_dir=args.cache_dir)


def _info(args) -> int:
    ds = _open(args)
    m = ds.manifest
    info = {
        "url": args.url, "format_version": m.version, "records": m.n_records, "shards": m.n_shards,
        "bytes": m.n_bytes, "settings": m.settings, "schema": {f.name: f.spec for f in ds.schema},
        "metadata_keys": sorted(m.metadata), "cleaning": m.metadata.get("cleaning"),
    }
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    print(f"dataset      {args.url}")
    print(f"format       fastload v{m.version}")
    print(f"records      {m.n_records:,}")
    print(f"shards       {m.n_shards}  ({format_size(m.n_bytes)})")
    comp = m.settings.get("compression")
    print(f"compression  {comp}" + (f" (level {m.settings.get('level')})" if comp == "zstd" else "")
          + f", blocks of {format_size(m.settings.get('block_size', 0))}")
    print("schema")
    width = max(len(f.name) for f in ds.schema)
    for f in ds.schema:
        print(f"  {f.name:<{width}}  {f.spec}{'  (has nulls)' if f.nullable else ''}")
    if m.metadata:
        print("metadata     " + ", ".join(sorted(m.metadata)))
    if isinstance(m.metadata.get("cleaning"), dict):
        _print_cleaning(m.metadata["cleaning"], m.n_records)
    return 0


def _print_cleaning(cleaning: dict, records: int) -> None:
    """How the dataset was cleaned when packed: the settings, then what each rule dropped."""
    from .pack.clean.report import CleanTally

    settings = cleaning.get("settings", {})
    dedup = settings.get("dedup")
    if dedup:
        on = "the whole record" if dedup.get("fields") == "record" else ", ".join(dedup.get("fields", []))
        norm = f", text normalised: {', '.join(dedup['normalize'])}" if dedup.get("normalize") else ""
        print(f"dedup        on {on} ({dedup.get('hash')}{norm})")
    for text in settings.get("filters", []):
        print(f"filter       {text}")
    if settings.get("drop_invalid"):
        print(f"drop-invalid {', '.join(settings['drop_invalid'])}")
    for line in CleanTally.from_json(cleaning.get("dropped", [])).lines(records):
        print(line)


def _verify(args) -> int:
    ds = _open(args)
    ds.verify_all(progress=lambda s, name: print(f"ok  {name}", file=sys.stderr))
    print(f"verified {ds.n_shards} shards, {len(ds):,} records: all checksums match")
    return 0


def _head(args) -> int:
    ds = _open(args)
    n = min(args.n, len(ds))
    batch = ds.get_batch(np.arange(n))
    for k in range(n):
        record = {name: _readable(values[k]) for name, values in batch.items()}
        print(json.dumps(record, ensure_ascii=False, allow_nan=False, default=_json_default))
    return 0


def _readable(v: Any) -> Any:
    """A value as JSON can hold it: floats in their shortest form, NaN and infinities as strings."""
    if isinstance(v, np.ndarray):
        if v.size > 16:
            first = [_readable(x) for x in v.reshape(-1)[:8]]
            return f"array(shape={list(v.shape)}, dtype={v.dtype}, first={json.dumps(first)})"
        return [_readable(x) for x in v] if v.ndim else _readable(v[()])
    if isinstance(v, (np.floating, float)):
        # repr of the value's own precision: float32 0.1 is 0.1, not 0.10000000149011612
        x = float(str(v)) if isinstance(v, np.floating) else v
        return x if math.isfinite(x) else str(x).replace("inf", "Infinity").replace("nan", "NaN")
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, bytes):
        head = base64.b64encode(v[:24]).decode()
        return f"<{len(v)} bytes, base64 {head}{'...' if len(v) > 24 else ''}>"
    if isinstance(v, (list, tuple)):
        return [_readable(x) for x in v]
    if isinstance(v, dict):
        return {k: _readable(x) for k, x in v.items()}
    return v


def _json_default(v: Any) -> Any:
    """Values JSON has no type for: dates and times in ISO form, decimals and the rest as text."""
    if isinstance(v, (datetime.date, datetime.time)):
        return v.isoformat()
    if isinstance(v, (decimal.Decimal, datetime.timedelta)):
        return str(v)
    return repr(v)


if __name__ == "__main__":
    sys.exit(main())
