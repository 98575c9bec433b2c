"""The ``fastload`` command: a thin layer over the library (pack, info, verify, head, demo, bench, cache).

Progress goes to stderr, results to stdout; each error class has its own exit status.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from typing import Any, Sequence

import numpy as np

from . import errors
from ._sizes import format_size

EXIT_CODES = (  # most specific first
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
        return args.run(args) or 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (errors.FastloadError, ValueError, OSError) as exc:
        print(f"fastload {args.command}: error: {exc}", file=sys.stderr)
        for cls, code in EXIT_CODES:
            if isinstance(exc, cls):
                return code
        return 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fastload", description="Pack, inspect and verify fastload datasets.")
    sub = p.add_subparsers(dest="command")

    pk = sub.add_parser("pack", help="convert a source (Parquet, JSONL, CSV, npy, images, tar, MDS, LitData) to shards")
    pk.add_argument("source", help="file, directory or glob")
    pk.add_argument("out", help="output directory")
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
    pk.add_argument("--no-progress", action="store_true")
    pk.add_argument("--max-side", type=int, help="resize images whose longer side exceeds N pixels")
    pk.add_argument("--jpeg-quality", type=int, default=90, help="quality of re-encoded JPEGs (default 90)")
    pk.add_argument("--image-format", choices=["keep", "jpeg", "raw"], default="keep",
                    help="store images as given (default), re-encoded as JPEG, or as raw RGB pixels")
    pk.set_defaults(run=_pack)

    inf = sub.add_parser("info", help="schema, records, shards, bytes, compression, version")
    inf.add_argument("url")
    inf.add_argument("--json", action="store_true", help="print machine-readable JSON")
    inf.set_defaults(run=_info)

    ver = sub.add_parser("verify", help="check every checksum; non-zero exit naming what is corrupt")
    ver.add_argument("url")
    ver.set_defaults(run=_verify)

    hd = sub.add_parser("head", help="print the first records as readable text")
    hd.add_argument("url")
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
    for name in ("info", "verify", "head"):
        storage_cli.add_storage_options(sub.choices[name])
    return p


def _demo(args) -> int:
    from .demo import main as demo_main

    return demo_main(args)


def _pack(args) -> int:
    from .pack.driver import pack

    report = pack(args.source, args.out, schema=args.schema, shard_size=args.shard_size,
                  block_size=args.block_size, compression=args.compression, level=args.level,
                  workers=args.workers, overwrite=args.overwrite, on_error=args.on_error,
                  progress=not args.no_progress, max_side=args.max_side, jpeg_quality=args.jpeg_quality,
                  image_format=args.image_format, rename=args.rename)
    print(report)
    return 0


def _open(url: str, storage_options: dict | None = None):
    from .opening import open_dataset

    return open_dataset(url, storage_options=storage_options)


def _info(args) -> int:
    ds = _open(args.url, args.storage_options)
    m = ds.manifest
    info = {
        "url": args.url, "format_version": m.version, "records": m.n_records, "shards": m.n_shards,
        "bytes": m.n_bytes, "settings": m.settings, "schema": {f.name: f.spec for f in ds.schema},
        "metadata_keys": sorted(m.metadata),
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
    return 0


def _verify(args) -> int:
    ds = _open(args.url, args.storage_options)
    ds.verify_all(progress=lambda s, name: print(f"ok  {name}", file=sys.stderr))
    print(f"verified {ds.n_shards} shards, {len(ds):,} records: all checksums match")
    return 0


def _head(args) -> int:
    ds = _open(args.url, args.storage_options)
    n = min(args.n, len(ds))
    batch = ds.get_batch(np.arange(n))
    for k in range(n):
        record = {name: _readable(values[k]) for name, values in batch.items()}
        print(json.dumps(record, ensure_ascii=False, default=str))  # Decimal, nested dates: their text
    return 0


def _readable(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        if v.size > 16:
            return f"array(shape={list(v.shape)}, dtype={v.dtype}, first={v.reshape(-1)[:8].tolist()})"
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, bytes):
        head = base64.b64encode(v[:24]).decode()
        return f"<{len(v)} bytes, base64 {head}{'...' if len(v) > 24 else ''}>"
    return v


if __name__ == "__main__":
    sys.exit(main())
