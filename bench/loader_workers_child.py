"""One measured run of ``bench/loader_workers.py``, in its own process: prints one JSON line.

``python -m bench.loader_workers_child SPEC``. With ``spec["src"]`` the fastload package is
imported from that directory (another commit's checkout) instead of this one.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

SEED = 1234


def _children_cpu_s() -> float:
    """CPU seconds of this process's child processes so far (the worker processes), from schedstat."""
    total = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                pids = f.read().split()
        except OSError:
            continue
        for pid in pids:
            try:
                with open(f"/proc/{pid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except OSError:
                pass
    return total / 1e9


def _epochs(run_epoch, epochs: int, batches: int, workers_are_threads: bool, helped=lambda: 0.0,
            stalled=lambda: 0.0, stepped=lambda: (0.0, 0.0)) -> dict:
    """Run one untimed epoch, then ``epochs`` timed ones; medians of per-epoch figures.

    ``helped()``: seconds so far that the consumer's thread spent gathering for the worker threads
    while it waited (the loader's ``consumer_gather_s``): counted as workers' CPU, not the consumer's.
    ``stalled()``: seconds so far that the consumer waited for batches (the loader's ``stall_s``);
    ``stepped()``: wall and CPU seconds so far of the simulated training step, which are not the
    consumer's cost."""
    run_epoch()
    walls, consumer, workers, stalls, steps = [], [], [], [], []
    for _ in range(epochs):
        h0, s0, (sw0, sc0) = helped(), stalled(), stepped()
        p0, c0, w0, t0 = time.process_time(), time.thread_time(), _children_cpu_s(), time.perf_counter()
        run_epoch()
        wall, c, h = time.perf_counter() - t0, time.thread_time() - c0, helped() - h0
        sw, sc = stepped()
        w = (time.process_time() - p0 - c) if workers_are_threads else (_children_cpu_s() - w0)
        c, w = c - h - (sc - sc0), w + h
        walls.append(wall)
        consumer.append(c)
        workers.append(w)
        stalls.append(stalled() - s0)
        steps.append(sw - sw0)
    k = sorted(range(epochs), key=walls.__getitem__)[epochs // 2]  # the median epoch
    return {"wall_s": walls[k], "consumer_us": consumer[k] / batches * 1e6, "worker_us": workers[k] / batches * 1e6,
            "stall_s": stalls[k], "step_us": steps[k] / batches * 1e6, "walls": walls}


def training_step(kind: str | None, us: float):
    """A simulated training step after each batch, and a function returning its wall and CPU
    seconds so far: ``cpu`` spins in Python holding the GIL for ``us`` microseconds; ``sleep``
    waits about as long without CPU and without the GIL (``time.sleep``, with this thread's timer
    slack cut from Linux's default 50 us to 1 ns, asking for ``us`` less a sleep's own cost
    measured first; the step's measured time is reported)."""
    spent = [0.0, 0.0]
    if not kind:
        return None, lambda: (0.0, 0.0)
    seconds = us * 1e-6
    if kind == "sleep":
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(29, 1, 0, 0, 0)  # PR_SET_TIMERSLACK: 1 ns
        t0 = time.perf_counter()
        for _ in range(200):
            time.sleep(1e-6)
        # a sleep's own cost (~15-25 us on this VM) taken off the time asked for
        seconds = max(0.0, seconds - ((time.perf_counter() - t0) / 200 - 1e-6))
    elif kind != "cpu":
        raise ValueError(f"step kind must be cpu or sleep, not {kind!r}")

    def step():
        t0, c0 = time.perf_counter(), time.thread_time()
        if kind == "cpu":
            end = t0 + seconds
            while time.perf_counter() < end:
                pass
        else:
            time.sleep(seconds)
        spent[0] += time.perf_counter() - t0
        spent[1] += time.thread_time() - c0

    return step, lambda: (spent[0], spent[1])


def tokens_numpy(spec: dict) -> dict:
    import numpy as np

    import fastload

    mm = np.load(spec["path"], mmap_mode="r")
    n, workers = len(mm), spec["workers"]
    # the batches of the loader's first epoch, in its order
    order = fastload.DataLoader(spec["order_path"], batch_size=spec["batch"], shuffle=True, seed=SEED).batch_sampler
    batches = [np.asarray(b, dtype=np.int64) for b in order]

    def run_epoch():
        def part(i):
            for b in batches[i::workers]:
                len(mm[b])
        threads = [threading.Thread(target=part, args=(i,)) for i in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    out = _epochs(run_epoch, spec["epochs"], len(batches), True)
    out["worker_us"] += out.pop("consumer_us")  # the main thread only waits
    out["consumer_us"] = 0.0
    out["rate"] = n / out["wall_s"]
    return out


def batch_bytes(batch: dict) -> int:
    """What a batch delivers: its tensors' bytes, a list of str's UTF-8 bytes."""
    total = 0
    for value in batch.values():
        if isinstance(value, list):
            total += sum(len(v.encode()) if isinstance(v, str) else len(v) for v in value if v is not None)
        else:
            total += value.nbytes
    return total


def fastload_loader(spec: dict) -> dict:
    import fastload

    ds = fastload.open(spec["path"])
    extra = {"strings": spec["strings"]} if spec.get("strings") else {}  # not in other commits' code
    loader = fastload.DataLoader(ds, batch_size=spec["batch"], shuffle=True, num_workers=spec["workers"],
                                 worker_type=spec.get("worker_type", "thread"), persistent_workers=spec["workers"] > 0,
                                 seed=SEED, **extra)
    main = "tokens" if spec["dataset"] == "tokens" else "text"
    counted = []  # bytes of the untimed epoch's batches
    step, stepped = training_step(spec.get("step"), spec.get("step_us", 0.0))

    def run_epoch():
        if not counted:
            counted.append(sum(batch_bytes(batch) for batch in loader))
            return
        for batch in loader:
            len(batch[main])
            if step is not None:
                step()

    out = _epochs(run_epoch, spec["epochs"], len(loader), spec.get("worker_type") == "thread" or not spec["workers"],
                  lambda: getattr(loader._stats, "helped_s", 0.0),  # stats()["consumer_gather_s"]; not in other commits' code
                  lambda: loader._stats.stall_s, stepped)
    loader.close()
    out["rate"] = len(ds) / out["wall_s"]
    out["byte_rate"] = counted[0] / out["wall_s"]
    return out


def records_arrow(spec: dict) -> dict:
    import numpy as np
    import pyarrow.parquet as pq

    table = pq.read_table(spec["path"]).combine_chunks()  # one chunk: take() on many runs at ~12k rows/s
    n, bs = table.num_rows, spec["batch"]
    batches = np.array_split(np.random.default_rng(SEED).permutation(n), range(bs, n, bs))

    def run_epoch():
        for b in batches:
            t = table.take(b)
            batch = {"id": t.column("id").to_numpy(), "text": t.column("text").to_pylist(),
                     "label": t.column("label").to_numpy()}
            len(batch["text"])

    out = _epochs(run_epoch, spec["epochs"], len(batches), True)
    out["rate"] = n / out["wall_s"]
    import pyarrow.compute as pc

    text_bytes = pc.sum(pc.binary_length(table.column("text"))).as_py()
    out["byte_rate"] = (16 * n + text_bytes) / out["wall_s"]  # id, label, the UTF-8 bytes
    return out


def main() -> None:
    spec = json.loads(sys.argv[1])
    if spec.get("src"):
        sys.path.insert(0, spec["src"])
    from .common import warm

    import torch  # noqa: F401  (imported before timing, by every run alike)

    warm([spec["path"]])
    if spec["system"] == "numpy":
        out = tokens_numpy(spec)
    elif spec["system"] == "arrow":
        out = records_arrow(spec)
    else:
        out = fastload_loader(spec)
    out["spec"] = spec
    out["fastload"] = os.path.dirname(sys.modules["fastload"].__file__) if "fastload" in sys.modules else None
    print(json.dumps(out))


if __name__ == "__main__":
    main()
