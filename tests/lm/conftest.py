"""Tokenized-document datasets written with fastload's Writer, for the packing and mixture tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import fastload
from fastload.format.spec import SIZES_SUFFIX


def write_docs(root, docs, *, compression="none", dtype=np.uint16, extra=None, sizes=True):
    """One record per document (field "tokens"), in several shards and many blocks. ``sizes=False``:
    without the record sizes file (as a dataset written before them), so that what needs the
    documents' lengths reads the blocks' offset tables."""
    with fastload.Writer(root, schema=f"tokens:{np.dtype(dtype).name}[-1]" + (extra or ""),
                         shard_size="8KB", block_size="1KB", compression=compression) as w:
        for i, d in enumerate(docs):
            rec = {"tokens": np.asarray(d, dtype=dtype)}
            if extra:
                rec["id"] = i
            w.write(rec)
    if not sizes:
        for path in Path(root).glob(f"*{SIZES_SUFFIX}"):
            path.unlink()
    return fastload.open(root)


@pytest.fixture(scope="module")
def docs():
    rng = np.random.default_rng(7)
    lengths = np.minimum(rng.lognormal(3.5, 1.0, size=400).astype(np.int64), 400)
    lengths[::23] = 0
    return [rng.integers(1, 60000, size=int(k)).astype(np.uint16) for k in lengths]


def in_another_process(dataset, fields):
    """Reopen ``dataset`` from its pickled spec in a fresh Python; every record's ``fields`` from there."""
    import pickle
    import subprocess
    import sys

    code = ("import pickle, sys, numpy as np\n"
            "spec, fields = pickle.loads(sys.stdin.buffer.read())\n"
            "ds = spec.open()\n"
            "b = ds.get_batch(np.arange(len(ds)))\n"
            "sys.stdout.buffer.write(pickle.dumps((len(ds), [b[f] for f in fields])))")
    res = subprocess.run([sys.executable, "-c", code], input=pickle.dumps((dataset.reopen_spec(), fields)),
                         capture_output=True, check=True)
    return pickle.loads(res.stdout)
