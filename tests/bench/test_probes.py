"""The storage probe (reads, page-cache drop, working set) and the config's validation."""

from __future__ import annotations


import numpy as np
import pytest

from fastload.bench import storage
from fastload.bench.config import BenchConfig
from fastload.bench.grid import settings


@pytest.fixture
def files(tmp_path):
    out = []
    for k, size in enumerate((3 << 20, (1 << 20) + 123)):
        p = tmp_path / f"f{k}"
        p.write_bytes(np.random.default_rng(k).integers(0, 255, size, dtype=np.uint8).tobytes())
        out.append(storage.ShardFile(path=str(p), size=size))
    return out


def test_read_local_reads_every_byte(files):
    n, s = storage.read_local(files, chunk=1 << 20)
    assert n == sum(f.size for f in files) and s > 0


def test_read_local_stops_at_its_budget(files):
    n, _ = storage.read_local(files, chunk=4096, budget_s=1e-9)
    assert n == 4096


def test_working_set_keeps_at_least_one_file(files):
    assert storage.working_set(files, available_bytes=None) == files
    assert storage.working_set(files, available_bytes=4) == files[:1]


def test_drop_cache_evicts_or_says_it_could_not(files):
    storage.read_local(files, chunk=1 << 20)
    method, dropped = storage.drop_cache(files, allow_global=False)
    assert "posix_fadvise" in method
    left = storage.cached_fraction(files)
    if dropped:
        assert left is not None and left < 0.05
    else:
        assert left is None or left >= 0.05


def test_measure_warm_and_cold(files):
    ticks = []
    m = storage.measure(files, chunk=1 << 20, repeats=2, budget_s=0.5, cold=True, available_bytes=None,
                        tick=lambda: ticks.append(1))
    assert len(m["mb_s"]) == 2 and all(x > 0 for x in m["mb_s"]) and all(x > 0 for x in m["memcpy_mb_s"])
    assert m["working_set_bytes"] == sum(f.size for f in files)
    assert ("cold_mb_s" in m and len(m["cold_mb_s"]) == 2) or "could not drop" in m["cold_skipped"]
    assert len(ticks) == 2 + len(m.get("cold_mb_s", []))


def test_config_validation_names_the_choices():
    with pytest.raises(ValueError, match="exactly one of"):
        BenchConfig(url="x", synthetic="tokens")
    with pytest.raises(ValueError, match="exactly one of"):
        BenchConfig()
    with pytest.raises(ValueError, match=r"--synthetic must be one of \('tokens', 'images', 'records'\)"):
        BenchConfig(synthetic="audio")
    with pytest.raises(ValueError, match="--shuffles takes values from"):
        BenchConfig(url="x", shuffles=("random",))
    with pytest.raises(ValueError, match="not both"):
        BenchConfig(url="x", step_ms=10, target_samples_per_s=100)
    with pytest.raises(ValueError, match="MODULE:FACTORY"):
        BenchConfig(torch_dataset="nocolon")
    with pytest.raises(TypeError):
        BenchConfig("x")  # keyword-only
    assert BenchConfig(url="x", target_samples_per_s=1280).step_seconds(64) == pytest.approx(0.05)
    assert BenchConfig(url="x").step_seconds(64) == pytest.approx(0.05)


def test_grid_varies_worker_type_only_with_workers():
    grid = settings((0, 2), (64,), ("block", "full"), ("thread", "process"))
    assert len(grid) == 2 + 4
    assert {s.worker_type for s in grid if s.num_workers == 0} == {"thread"}
    assert len({s.label for s in grid}) == len(grid)


def test_drop_cache_leaves_the_rest_of_the_machine_alone_by_default(files):
    """Pages a process keeps mapped survive posix_fadvise; even as root, only an explicit
    allow_global (--drop-all-caches) may then drop the machine's whole page cache."""
    import mmap

    with open(files[0].path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        sum(mm[k] for k in range(0, len(mm), 4096))  # fault every page in, and keep it mapped
        method, _ = storage.drop_cache(files[:1])
        assert "drop_caches" not in method
        m = storage.measure(files[:1], chunk=1 << 20, repeats=1, budget_s=0.2, cold=True, available_bytes=None)
        assert "drop_caches" not in m["cold_method"]
        if "cold_skipped" in m:
            assert "--drop-all-caches" in m["cold_skipped"]


def test_drop_all_caches_goes_with_cold():
    with pytest.raises(ValueError, match="give --cold too"):
        BenchConfig(url="x", drop_all_caches=True)
    assert BenchConfig(url="x", cold=True, drop_all_caches=True).drop_all_caches
