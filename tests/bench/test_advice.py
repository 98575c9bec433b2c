"""The advice rules: a pure function from measurements to sentences, checked on typical cases."""

from __future__ import annotations

from fastload.bench.advice import advise, best_setting


def row(w, t="thread", s="block", b=64, rate=1000.0, bpr=1000.0):
    label = f"w{w}" + (f" {t}" if w else "") + f" b{b} {s}"
    return {"num_workers": w, "worker_type": t, "shuffle": s, "batch_size": b, "samples_s": rate,
            "mb_s": rate * bpr / 1e6, "first_batch_s": 0.01, "label": label}


def measurements(rows, *, warm=100.0, cores=4, stall=None, parts=None, remote=False, cold=None, bpr=1000.0):
    m = {"dataset": {"bytes_per_record": bpr}, "machine": {"cores": cores},
         "storage": {"mb_s": [warm], "remote": remote}, "loader": rows, "stall": stall,
         "decode": {"per_sample_s": parts or {"gather": 1e-6}}}
    if cold is not None:
        m["storage"]["cold_mb_s"] = [cold]
    return m


def stall(pct, step_ms=50.0, label="w2 thread b64 block"):
    return {"stall_pct": pct, "step_ms": step_ms, "step_samples_s": 64 / (step_ms / 1e3), "samples_s": 900.0,
            "setting": {"label": label}}


def test_recommends_the_fastest_setting_with_its_share_of_storage():
    rows = [row(0, rate=1000), row(2, "thread", rate=50_000), row(2, "process", rate=20_000)]
    text = advise(measurements(rows, warm=100.0))
    assert text[0].startswith("Use num_workers=2, worker_type='thread', shuffle='block', batch_size=64")
    assert "50% of what storage (page cache) delivers" in text[0]


def test_ties_go_to_fewer_workers_and_threads():
    rows = [row(1, "process", rate=1000), row(1, "thread", rate=990), row(2, "thread", rate=1010)]
    assert best_setting(rows)["num_workers"] == 1 and best_setting(rows)["worker_type"] == "thread"


def test_storage_bound():
    rows = [row(0, rate=90_000), row(4, rate=95_000)]
    text = " ".join(advise(measurements(rows, warm=100.0)))
    assert "The bottleneck is storage" in text and "More workers will not help" in text


def test_remote_storage_bound_suggests_a_cache():
    text = " ".join(advise(measurements([row(2, rate=95_000)], warm=100.0, remote=True)))
    assert "remote read bandwidth" in text and "cache_dir" in text


def test_remote_faster_than_remote_means_the_cache_served_it():
    text = " ".join(advise(measurements([row(2, rate=300_000)], warm=100.0, remote=True)))
    assert "3.0x the remote read bandwidth" in text and "100,000 samples/s" in text
    assert "bottleneck is storage" not in text and "Reading from the cache; the CPU is" in text


def test_decompression_bound_names_zstd():
    parts = {"decompression": 8e-5, "gather": 1e-5, "decode": 1e-5}
    text = " ".join(advise(measurements([row(0, rate=1000), row(1, rate=1100)], parts=parts, cores=4)))
    assert "zstd decompression takes 80%" in text
    assert "Up to 4 workers may help" in text


def test_image_decode_bound_with_every_core_busy():
    parts = {"image decode": 9e-3, "gather": 1e-4}
    text = " ".join(advise(measurements([row(2, rate=200, bpr=100_000)], parts=parts, cores=2, warm=1000.0)))
    assert "image decoding takes 99%" in text and "All 2 cores are in use" in text


def test_stall_starved_and_not():
    starved = " ".join(advise(measurements([row(2)], stall=stall(40.0))))
    assert "The GPU is starved" in starved and "40%" in starved
    fed = " ".join(advise(measurements([row(2)], stall=stall(1.2))))
    assert "The GPU is not starved" in fed and "1.2%" in fed


def test_threads_against_processes():
    faster_procs = [row(2, "thread", rate=1000), row(2, "process", rate=2000)]
    assert any("Process workers are 100% faster" in a for a in advise(measurements(faster_procs)))
    same = [row(2, "thread", rate=1000), row(2, "process", rate=1030)]
    assert any("within 10%" in a for a in advise(measurements(same)))


def test_full_shuffle_cost():
    slow = [row(2, s="block", rate=1000), row(2, s="full", rate=500)]
    assert any("'full' is 50% slower" in a for a in advise(measurements(slow)))
    cheap = [row(2, s="block", rate=1000), row(2, s="full", rate=980)]
    assert any("costs 2% against 'block'" in a for a in advise(measurements(cheap)))


def test_cold_disk_slower_than_loader():
    text = " ".join(advise(measurements([row(2, rate=50_000)], warm=1000.0, cold=20.0)))
    assert "cold cache the disk reads 20 MB/s" in text


def test_workers_still_scaling_and_oversubscribed():
    scaling = [row(0, rate=1000), row(2, rate=1900)]
    assert any("still grows with workers" in a for a in advise(measurements(scaling, cores=8)))
    worse = [row(0, rate=1000), row(4, rate=500)]
    assert any("More workers are slower" in a for a in advise(measurements(worse, cores=2)))


def test_no_rows_still_gives_advice():
    assert advise({"loader": []})


def test_image_rows_that_decode_are_the_ones_judged():
    rows = [row(2, rate=40_000), {**row(2, "process", rate=1_300), "decoded": True},
            {**row(2, "thread", rate=900), "decoded": True}]
    text = advise(measurements(rows, warm=10_000.0))
    assert text[0].startswith("Decoding images in the loader, use num_workers=2, worker_type='process'")
    assert "1,300 samples/s" in text[0]
