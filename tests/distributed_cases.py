"""What the Ray and Dask pack tests share: a source frame, reading a dataset back, comparing outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

import fastload

OPTS = {"shard_size": "60KB", "block_size": "16KB"}  # several shards per partition


def source_frame(n: int = 16_000) -> pd.DataFrame:
    rng = np.random.default_rng(11)
    return pd.DataFrame({"id": np.arange(n, dtype=np.int64),
                         "text": [f"row {i} " + "y" * int(k) for i, k in enumerate(rng.integers(0, 30, n))],
                         "score": rng.random(n)})


def assert_equals_frame(ds, df: pd.DataFrame) -> None:
    """Every record, in order, against pandas' own values (the reference)."""
    assert len(ds) == len(df)
    got = ds.get_batch(np.arange(len(df)))
    np.testing.assert_array_equal(got["id"], df["id"].to_numpy())
    np.testing.assert_array_equal(got["score"], df["score"].to_numpy())
    assert got["text"] == df["text"].tolist()


def files_of(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(Path(root).iterdir())}


def objects(s3, prefix: str) -> dict[str, bytes]:
    listing = s3.client.list_objects_v2(Bucket=s3.bucket, Prefix=prefix + "/").get("Contents", [])
    return {o["Key"].rsplit("/", 1)[1]: s3.client.get_object(Bucket=s3.bucket, Key=o["Key"])["Body"].read()
            for o in listing}


def open_remote(url: str, s3, tmp_path: Path):
    return fastload.open(url, storage_options=s3.storage_options, cache_dir=tmp_path / "cache")
