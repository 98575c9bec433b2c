"""LitData's side of ``bench/lm.py``, run by a Python that has litdata (its own virtual environment).

    python bench/lm_litdata.py write <inputs dir> <out dir>
    python bench/lm_litdata.py read <out dir> <batches> <warmup>   # prints {"windows_per_s": ...}

``write`` turns the benchmark's documents (``lengths.npy`` + ``corpus.bin``, uint16) into LitData
chunks with ``optimize(item_loader=TokensLoader())``; ``read`` reads 2048-token blocks with
``TokensLoader(block_size=2048)`` (a flat token stream cut into blocks, shuffled), batch 32, 2
workers. Only numpy, torch and litdata are imported, so it runs outside fastload's environment.
"""

from __future__ import annotations

import json
import sys
import time
import warnings

import numpy as np

DOCS_PER_INPUT = 20_000


def _docs(k: int, root: str):
    import torch

    lengths = np.load(f"{root}/lengths.npy")
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    tokens = np.memmap(f"{root}/corpus.bin", dtype=np.uint16, mode="r")
    for i in range(k * DOCS_PER_INPUT, min((k + 1) * DOCS_PER_INPUT, len(lengths))):
        yield torch.from_numpy(np.array(tokens[offsets[i]:offsets[i + 1]]))


def write(root: str, out: str) -> None:
    from functools import partial

    from litdata import TokensLoader, optimize

    n = len(np.load(f"{root}/lengths.npy"))
    optimize(fn=partial(_docs, root=root), inputs=list(range(-(-n // DOCS_PER_INPUT))), output_dir=out,
             chunk_size=2049 * 4096, item_loader=TokensLoader(), num_workers=2)


def read(out: str, batches: int, warmup: int) -> dict:
    from litdata import StreamingDataLoader, StreamingDataset, TokensLoader

    ds = StreamingDataset(out, item_loader=TokensLoader(block_size=2048), shuffle=True, drop_last=True)
    loader = StreamingDataLoader(ds, batch_size=32, num_workers=2, drop_last=True)

    def cycle():
        while True:
            yield from loader

    it = cycle()
    for _ in range(warmup):
        next(it)
    t0 = time.perf_counter()
    windows = sum(len(next(it)) for _ in range(batches))
    return {"windows_per_s": windows / (time.perf_counter() - t0), "windows": windows, "total": len(ds)}


if __name__ == "__main__":
    warnings.simplefilter("ignore")
    if sys.argv[1] == "write":
        write(sys.argv[2], sys.argv[3])
    else:
        print(json.dumps(read(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
