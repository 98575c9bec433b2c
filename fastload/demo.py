"""``fastload demo``: generate a small real-looking corpus, pack it, load it, print throughput.

The corpus imitates a language-model pre-training set: documents whose words follow a Zipf law,
tokenised into fixed windows of uint16 ids, with the text, a source name and an id. It is
written as Parquet (several row groups), converted by ``fastload.pack`` like any user file, and
read back in random order, which is what a shuffled training epoch does.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

SOURCES = ("web", "books", "code", "papers", "forums")


def make_corpus(path: Path, records: int, window: int, seed: int = 0) -> int:
    """Write the synthetic corpus as Parquet; returns the file size."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    vocab_size = 32000
    syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "an", "or", "el", "is", "um"]
    # words of 1-4 syllables; frequent words are short, as in natural language
    words = ["".join(rng.choice(syllables, size=1 + min(3, int(np.log10(i + 1)))))
             for i in range(4000)]
    with pq.ParquetWriter(path, _schema(window)) as out:
        step = 5000
        for start in range(0, records, step):
            n = min(step, records - start)
            ids = rng.zipf(1.3, size=(n, window)) % vocab_size
            text_len = rng.integers(20, 60, size=n)
            word_ids = rng.zipf(1.5, size=int(text_len.sum())) % len(words)
            cuts = np.cumsum(text_len)[:-1]
            texts = [" ".join(words[w] for w in chunk) for chunk in np.split(word_ids, cuts)]
            table = pa.table({
                "id": np.arange(start, start + n, dtype=np.int64),
                "tokens": pa.FixedSizeListArray.from_arrays(ids.astype(np.uint16).reshape(-1), window),
                "text": texts,
                "source": [SOURCES[k] for k in rng.integers(0, len(SOURCES), size=n)],
            })
            out.write_table(table, row_group_size=step)
    return path.stat().st_size


def _schema(window: int):
    import pyarrow as pa

    return pa.schema([("id", pa.int64()), ("tokens", pa.list_(pa.uint16(), window)),
                      ("text", pa.string()), ("source", pa.string())])


def run(out_dir: str | None = None, records: int = 100_000, window: int = 257, batch_size: int = 64,
        workers: int = 2) -> dict:
    """Generate, pack and load; prints a short report and returns the figures."""
    import fastload

    root = Path(out_dir or tempfile.mkdtemp(prefix="fastload-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    src = root / "corpus.parquet"
    t0 = time.perf_counter()
    size = make_corpus(src, records, window)
    print(f"generated {records:,} documents ({size / 1e6:.1f} MB of Parquet) in {time.perf_counter() - t0:.1f} s")

    report = fastload.pack(str(src), root / "packed", shard_size="32MB", workers=workers,
                           overwrite=True, progress=False)
    print(report)

    ds = fastload.open(root / "packed")
    rng = np.random.default_rng(1)
    order = rng.permutation(len(ds))
    ds.get_batch(order[:batch_size])  # maps the shards: the first touch verifies checksums
    t0 = time.perf_counter()
    samples = nbytes = 0
    for start in range(0, len(order) - batch_size + 1, batch_size):
        batch = ds.get_batch(order[start : start + batch_size], fields=["id", "tokens"])
        samples += len(batch["id"])
        nbytes += batch["tokens"].nbytes + batch["id"].nbytes
    dt = time.perf_counter() - t0
    assert np.array_equal(batch["id"], order[start : start + batch_size]), "records came back out of order"
    print(f"read     one shuffled epoch with get_batch ({samples:,} samples, id + tokens, batches of {batch_size}):"
          f" {samples / dt:,.0f} samples/s, {nbytes / dt / 1e9:.2f} GB/s")

    from fastload.loader import DataLoader

    loader = DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers, fields=["id", "tokens"])
    t0 = time.perf_counter()
    seen = 0
    for batch in loader:
        seen += len(batch["id"])
    dt = time.perf_counter() - t0
    stats = loader.stats()
    print(f"train    one epoch through fastload.DataLoader (shuffle=True, {workers} workers): "
          f"{seen / dt:,.0f} samples/s; data stall {stats['stall_pct']:.0f}% of the loop "
          f"(a loop that does nothing but wait for data)")
    t0 = time.perf_counter()
    texts = ds.get_batch(order[:10_000], fields=["text"])["text"]
    dt_text = time.perf_counter() - t0
    print(f"         10,000 random texts in {dt_text * 1e3:.0f} ms ({10_000 / dt_text:,.0f} records/s); "
          f"e.g. {texts[0][:60]!r}")
    print(f"dataset  {root / 'packed'} (inspect it: fastload info {root / 'packed'})")
    return {"samples_per_s": samples / dt, "gb_per_s": nbytes / dt / 1e9, "pack_seconds": report.seconds}


def main(args) -> int:
    run(args.out, records=args.records, workers=args.workers)
    return 0


if __name__ == "__main__":
    run(os.environ.get("FASTLOAD_DEMO_DIR"))
