"""Gather kernels side by side: fastload's C gather_rows vs the same kernel in Numba.

Each copies the same random 64-row batches of 4098-byte rows (2049 uint16 tokens) out of one
memory-mapped, uncompressed shard, block lookup included, in one interleaved run; the full
Dataset.get_batch is timed too. This is the figure behind the C extension (csrc/fastload_native.c);
bench/read_random.py compares get_batch with a plain NumPy memmap gather.

    python -m bench.kernels [--rows 50000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numba
import numpy as np

import fastload
from fastload import _native


@numba.njit(nogil=True, cache=True)
def _numba_gather_rows(local, block_first, block_offset, buf, itemsize, out):
    """Same work as _native.gather_rows, on a uint8 view of the shard instead of raw addresses."""
    flat = out.reshape(-1).view(np.uint8)
    for i in range(local.shape[0]):
        r = local[i]
        b = np.searchsorted(block_first, r, side="right") - 1
        src = block_offset[b] + (r - block_first[b]) * itemsize
        flat[i * itemsize:(i + 1) * itemsize] = buf[src:src + itemsize]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 50_000, size=(args.rows, 2049), dtype=np.uint16)
    with tempfile.TemporaryDirectory() as tmp:
        with fastload.Writer(tmp, shard_size="4GB") as w:
            w.write_batch({"tokens": tokens})
        ds = fastload.open(tmp)
        ds.get_batch(np.arange(len(ds)))  # map and verify every block once
        reader = ds.shard(0)
        itemsize = tokens.shape[1] * 2
        col_addr = reader.column_address(0)
        block_lo = reader.base_address + reader.block_offset  # the bytes each block's reads must stay in
        block_hi = block_lo + reader.block_raw_size
        col_offset = reader.block_offset + reader.col_offsets64[:, 0]
        buf = reader.buf
        batches = np.array_split(rng.permutation(args.rows), args.rows // args.batch)
        out = np.empty((args.batch + 1, 2049), np.uint16)

        def c_kernel():
            for b in batches:
                _native.gather_rows(b, reader.first_record, col_addr, block_lo, block_hi, reader.n_records, itemsize,
                                    out[: len(b)])

        def numba_kernel():
            for b in batches:
                _numba_gather_rows(b, reader.first_record, col_offset, buf, itemsize, out[: len(b)])

        def get_batch():
            for b in batches:
                ds.get_batch(b)

        numba_kernel()  # compile outside the timing
        systems = {"C gather_rows": c_kernel, "Numba kernel": numba_kernel,
                   "Dataset.get_batch": get_batch}
        times = {name: [] for name in systems}
        for _ in range(args.repeats):
            for name, fn in systems.items():  # interleaved, so drift hits every system alike
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["C gather_rows"])
    print(f"{args.rows} rows of {itemsize} B, batches of {args.batch}, {reader.n_blocks} blocks, "
          f"median of {args.repeats} interleaved runs")
    print(f"{'kernel':<20}{'rows/s':>14}{'GB/s':>8}{'us/batch':>10}{'vs C':>8}")
    for name, ts in times.items():
        t = statistics.median(ts)
        print(f"{name:<20}{args.rows / t:>14,.0f}{args.rows * itemsize / t / 1e9:>8.2f}"
              f"{t / len(batches) * 1e6:>10.1f}{t / base:>8.2f}x")


if __name__ == "__main__":
    main()
