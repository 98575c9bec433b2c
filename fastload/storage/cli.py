"""``fastload cache stats|prefetch|plan|clear``: a thin layer over the node cache and its forecast."""

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
        add_cache_dir(q)
        return q

    st = common(sub.add_parser("stats", help="per dataset: bytes cached, shards, hit rate"))
    st.add_argument("--json", action="store_true", help="print machine-readable JSON")
    st.set_defaults(run=_stats)

    pf = common(sub.add_parser("prefetch", help="download a remote dataset's shards into the cache"))
    pf.add_argument("url", help="the remote dataset, e.g. s3://bucket/ds")
    pf.add_argument("--cache-limit", help="byte limit of the whole cache, e.g. 200GB")
    add_storage_options(pf)
    pf.set_defaults(run=_prefetch)

    pl = common(sub.add_parser("plan", help="forecast an epoch's downloads under a cache limit, per shuffle mode"))
    pl.add_argument("url", help="the dataset (remote or local), e.g. s3://bucket/ds")
    pl.add_argument("--cache-limit", help="byte limit of each node's cache, e.g. 200GB (default: none)")
    pl.add_argument("--batch-size", type=int, default=256)
    pl.add_argument("--workers", type=int, default=8, help="loader workers per rank (default 8)")
    pl.add_argument("--world-size", type=int, default=1, help="ranks in the job (default 1)")
    pl.add_argument("--ranks-per-node", type=int, default=1, help="ranks sharing a node's cache (default 1)")
    pl.add_argument("--partitions", type=int, default=None, help="canonical partitions (default: one per node)")
    pl.add_argument("--shuffle", choices=["true", "block", "full", "none"], action="append",
                    help="the shuffle to forecast (repeatable; default: true, block and full)")
    pl.add_argument("--seed", type=int, default=0)
    pl.add_argument("--epoch", type=int, default=0)
    pl.add_argument("--json", action="store_true", help="print machine-readable JSON")
    add_storage_options(pl)
    pl.set_defaults(run=_plan)

    cl = common(sub.add_parser("clear", help="delete cached shards (of URL only, when given) not in use"))
    cl.add_argument("url", nargs="?", help="only this dataset's shards (default: every dataset's)")
    cl.set_defaults(run=_clear)


def add_cache_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache-dir", help="node cache directory for remote shards (default: FASTLOAD_CACHE_DIR, "
                                            "config file, ~/.cache/fastload)")


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
        done = list(pool.map(lambda s: cache.ensure(s, blocking=False, ahead=s), range(ds.n_shards)))
    cached = sum(cache.is_cached(s) for s in range(ds.n_shards))
    print(f"{cached} of {ds.n_shards} shards of {args.url} cached in {cache.dir}")
    if not all(done):
        print(f"{done.count(False)} shards did not fit under the cache limit or were being downloaded "
              "by another process", file=sys.stderr)
    return 0


def _plan(args) -> int:
    from .._sizes import parse_size
    from ..plan.world import World
    from .epochs import AUTO, Layout, resolve
    from .forecast import MAX_VISITS, forecast

    if args.world_size < 1 or args.ranks_per_node < 1 or args.world_size % args.ranks_per_node:
        raise ValueError("--ranks-per-node must divide --world-size (the same number of ranks on every node)")
    manifest, remote = read_manifest(args.url, args.storage_options)
    limit = parse_size(args.cache_limit, what="--cache-limit") if args.cache_limit else None
    layout = Layout(manifest)
    world = World(0, args.world_size, args.ranks_per_node)
    partitions = args.partitions or world.nodes
    readers = args.ranks_per_node * max(args.workers, 1)
    rows = []
    for choice in args.shuffle or ["true", "block", "full"]:
        request = AUTO if choice == "true" else choice
        reading, _ = resolve(request, layout, remote=remote, limit=limit, readers=readers, world=world,
                             partitions=partitions, seed=args.seed, epoch=args.epoch)
        fc = forecast(layout, reading, world, seed=args.seed, epoch=args.epoch, batch_size=args.batch_size,
                      limit=limit, workers=args.workers, max_visits=max(MAX_VISITS // world.nodes, 100_000))
        rows.append((choice, fc))
    if args.json:
        print(json.dumps({"url": args.url, "shards": manifest.n_shards, "bytes": layout.n_bytes,
                          "forecasts": {choice: fc.to_dict() for choice, fc in rows}}, indent=1))
        return 0
    print(f"{args.url}: {manifest.n_shards} shards, {format_size(layout.n_bytes)}; cache_limit "
          f"{format_size(limit) if limit else 'none'} per node; {world.nodes} node(s) x {args.ranks_per_node} rank(s) "
          f"x {args.workers} worker(s); batch {args.batch_size}")
    print(f"{'shuffle':8} {'order':24} {'per node per epoch':>20} {'x dataset':>10} {'hit rate':>9} {'peak':>10} "
          f"{'min limit':>10}")
    for choice, fc in rows:
        order = fc.mode + (f", {fc.window} shards" if fc.window else "") + (f", P={fc.partitions}" if fc.partitions > 1 else "")
        note = "" if fc.replayed >= 1 else f"  (extrapolated from {fc.replayed:.0%} of the epoch)"
        note += "" if fc.workable else "  (limit below the minimum: would fail)"
        print(f"{choice:8} {order:24} {format_size(fc.bytes_per_node):>20} {fc.multiple:>10.2f} {fc.hit_rate:>9.1%} "
              f"{format_size(fc.peak_bytes):>10} {format_size(fc.min_limit):>10}{note}")
    return 0


def read_manifest(url: str, storage_options: dict | None):
    """(manifest, remote?) of a dataset, reading nothing else and creating no cache directory."""
    from ..format.local_shards import LocalShards
    from ..format.manifest import Manifest
    from ..format.spec import MANIFEST_NAME
    from .remote import Remote, normalise_url

    scheme = url.split("://", 1)[0].lower() if "://" in url else "file"
    if scheme == "file":
        return LocalShards(url.split("://", 1)[-1]).open(), False
    remote = Remote(normalise_url(url), storage_options)
    return Manifest.loads(remote.read(MANIFEST_NAME), remote.url_of(MANIFEST_NAME)), True


def _clear(args) -> int:
    removed, kept = _node(args).clear(args.url)
    print(f"removed {removed} files" + (f"; kept {kept} in use or being downloaded" if kept else ""))
    return 0
