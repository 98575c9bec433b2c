"""The ``fastload bench`` subcommand: arguments to a BenchConfig, run, then table / JSON / plot."""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import SourceError
from ..storage.cli import add_storage_options
from .config import SYNTHETIC_KINDS, BenchConfig

# --quick: about 15 s on 2 cores; the default: about a minute (budgets below, per measurement)
QUICK = {"repeats": 1, "run_seconds": 0.4, "storage_seconds": 1.0, "stall_seconds": 1.0, "shuffles": ("block",)}


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, not {text!r}") from None


def _words(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``fastload bench`` on the ``fastload`` command's subparsers."""
    b = subparsers.add_parser(
        "bench", help="measure storage, decode, loader throughput and data stall on a dataset; advise settings",
        description="Measure where the time goes on your data: the storage limit, decode cost per core, "
                    "the loader over a small grid of settings, the data stall under a simulated step, and "
                    "advice. With no URL, a synthetic token dataset is generated first.")
    b.add_argument("url", nargs="?", help="a fastload dataset: local directory or s3://, gs://, http(s):// URL")
    b.add_argument("--synthetic", choices=SYNTHETIC_KINDS, help="generate a small dataset of this kind first")
    b.add_argument("--records", type=int, help="records in the synthetic dataset (default depends on kind)")
    b.add_argument("--synthetic-dir", help="keep generated/converted data here (default: a temporary dir, removed)")
    b.add_argument("--torch-dataset", metavar="MODULE:FACTORY",
                   help="benchmark your torch Dataset (factory() returns it) via torch's and fastload's DataLoader")
    b.add_argument("--torch-samples", type=int, default=5_000, help="items of --torch-dataset used (default 5000)")
    b.add_argument("--workers", type=_ints, help="num_workers grid, e.g. 0,1,2 (default: 0, 1, cores)")
    b.add_argument("--batch-sizes", type=_ints, default=(64,), help="batch sizes, e.g. 64,256 (default 64)")
    b.add_argument("--shuffles", type=_words, help="of none,block,full (default block,full; --quick: block)")
    b.add_argument("--worker-types", type=_words, default=("thread", "process"), help="of thread,process")
    b.add_argument("--repeats", type=int, help="runs per measurement; medians reported (default 3; --quick 1)")
    b.add_argument("--run-seconds", type=float, help="seconds per loader run after its first batch (default 1)")
    b.add_argument("--step-ms", type=float, help="simulated training step per batch in ms (default 50)")
    b.add_argument("--target-samples-per-s", type=float, help="simulate the step a target rate allows instead")
    b.add_argument("--cold", action="store_true",
                   help="also measure storage with the dataset's files evicted from the page cache")
    b.add_argument("--drop-all-caches", action="store_true",
                   help="implies --cold; as root, drop the whole machine's page cache when evicting the files "
                        "alone does not work (slows every other program on the machine for a while)")
    add_storage_options(b)
    b.add_argument("--cache-dir", help="local cache directory for remote datasets")
    b.add_argument("--cache-limit", help="byte limit of that cache, e.g. 200GB (default: its configured limit)")
    b.add_argument("--quick", action="store_true", help="one repeat, short runs: ~15 s on 2 cores")
    b.add_argument("--json", dest="json_out", metavar="PATH", help="write all measurements as JSON ('-': stdout)")
    b.add_argument("--plot", metavar="PNG", help="plot samples/s against workers with the storage limit")
    b.add_argument("--no-progress", action="store_true")
    b.set_defaults(run=run_cli)
    return b


def config_from_args(a: argparse.Namespace) -> BenchConfig:
    synthetic = a.synthetic
    if a.url is None and synthetic is None and a.torch_dataset is None:
        synthetic = "tokens"  # a new user's first run: see it work with no data of their own
    quick = QUICK if a.quick else {}
    kw = {k: v for k, v in {
        "repeats": a.repeats, "run_seconds": a.run_seconds, "shuffles": a.shuffles, "workers": a.workers,
    }.items() if v is not None}
    return BenchConfig(url=a.url, synthetic=synthetic, synthetic_records=a.records, synthetic_dir=a.synthetic_dir,
                       torch_dataset=a.torch_dataset, torch_samples=a.torch_samples,
                       batch_sizes=a.batch_sizes, worker_types=a.worker_types, step_ms=a.step_ms,
                       target_samples_per_s=a.target_samples_per_s, cold=a.cold or a.drop_all_caches,
                       drop_all_caches=a.drop_all_caches,
                       storage_options=a.storage_options, cache_dir=a.cache_dir, cache_limit=a.cache_limit,
                       quick=a.quick,
                       progress=not a.no_progress, **{**quick, **kw})


def run_cli(a: argparse.Namespace) -> int:
    from . import report, runner

    cfg = config_from_args(a)
    if a.plot:
        try:
            import matplotlib  # noqa: F401  (checked before minutes of measuring, not after)
        except ImportError:
            raise SourceError("--plot needs matplotlib: pip install 'fastload[bench]' (or matplotlib)") from None
    m = runner.run(cfg)
    if a.json_out == "-":
        print(json.dumps(m, indent=1, default=str))
    else:
        print(report.text(m))
        if a.json_out:
            report.write_json(a.json_out, m)
            print(f"json: {a.json_out}", file=sys.stderr)
    if a.plot:
        report.plot(a.plot, m)
        print(f"plot: {a.plot}", file=sys.stderr)
    return 0
