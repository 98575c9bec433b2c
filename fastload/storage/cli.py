"""``fastload cache stats|prefetch|clear``: a thin layer over the node cache."""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor

from .._sizes import format_size
from .node import NodeCache
from .config import CacheConfig
from .prefetch import IN_FLIGHT


def add_parser(subparsers) -> None:
    """Register the ``cache`` subcommand on the ``fastload`` command's subparsers."""
    p = subparsers.add_parser("cache", help="inspect, warm or clear the node-local shard cache")
    sub = p.add_subparsers(dest="cache_command", required=True)

    def common(q):
        q.add_argument("--cache-dir", help="cache directory (default: FASTLOAD_CACHE_DIR, config file, ~/.cache/fastload)")
        return q

    st = common(sub.add_parser("stats", help="per dataset: bytes cached, shards, hit rate"))
    st.add_argument("--json", action="store_true", help="print machine-readable JSON")
    st.set_defaults(run=_stats)

    pf = common(sub.add_parser("prefetch", help="download a remote dataset's shards into the cache"))
    pf.add_argument("url", help="the remote dataset, e.g. s3://bucket/ds")
    pf.add_argument("--cache-limit", help="byte limit of the whole cache, e.g. 200GB")
    add_storage_options(pf)
    pf.set_defaults(run=_prefetch)

    cl = common(sub.add_parser("clear", help="delete cached shards (of URL only, when given) not in use"))
    cl.add_argument("url", nargs="?", help="only this dataset's shards (default: every dataset's)")
    cl.set_defaults(run=_clear)


def add_storage_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--storage-options", type=json.loads, default=None, metavar="JSON",
                        help='fsspec options as JSON, e.g. \'{"anon": true}\'')


def _node(args) -> NodeCache:
    return NodeCache(CacheConfig.resolve(cache_dir=args.cache_dir, cache_limit=getattr(args, "cache_limit", None)))


def _stats(args) -> int:
    node = _node(args)
    rows = node.describe()
    if args.json:
        print(json.dumps({"cache_dir": str(node.root), "limit": node.limit, "bytes": node.usage(), "datasets": rows},
                         indent=1))
        return 0
    limit = format_size(node.limit) if node.limit else "none"
    print(f"cache {node.root}: {format_size(node.usage())} used, limit {limit}")
    for r in rows:
        rate = f"{100 * r['hit_rate']:.1f}%" if r["hit_rate"] is not None else "-"
        print(f"  {r['url']}  {format_size(r['bytes'])} in {r['shards']} shards, hit rate {rate} "
              f"({r['hits']} hits, {r['misses']} misses), {r['evictions']} evictions")
    return 0


def _prefetch(args) -> int:
    from ..opening import open_dataset

    ds = open_dataset(args.url, storage_options=args.storage_options, cache_dir=args.cache_dir,
                      cache_limit=args.cache_limit)
    cache = getattr(ds.locator, "cache", None)
    if cache is None:
        print(f"{args.url} is a local dataset: it is read in place, nothing to prefetch", file=sys.stderr)
        return 0
    with ThreadPoolExecutor(IN_FLIGHT) as pool:  # non-blocking: stops adding once the limit is full
        done = list(pool.map(lambda s: cache.ensure(s, blocking=False), range(ds.n_shards)))
    cached = sum(cache.is_cached(s) for s in range(ds.n_shards))
    print(f"{cached} of {ds.n_shards} shards of {args.url} cached in {cache.dir}")
    if not all(done):
        print(f"{done.count(False)} shards did not fit under the cache limit or were being downloaded "
              "by another process", file=sys.stderr)
    return 0


def _clear(args) -> int:
    removed, kept = _node(args).clear(args.url)
    print(f"removed {removed} files" + (f"; kept {kept} in use or being downloaded" if kept else ""))
    return 0
