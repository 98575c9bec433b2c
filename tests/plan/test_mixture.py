"""Mixtures: exact proportions in every window, the three policies, resume and reweighting."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fastload.plan import EpochPlan, LoaderState, World
from fastload.plan.mixture import MixtureOrder, MixtureSchedule, apportion, interleave

from .helpers import delivered, rank_plans, sequence

WEIGHTS = [[0.7, 0.2, 0.1], [1, 1, 1], [0.5, 0.3, 0.15, 0.05], [np.pi, np.e, 1.0], [0.98, 0.01, 0.01]]


def window_counts(src: np.ndarray, n_sources: int, m: int) -> np.ndarray:
    """(windows, sources): how often each source occurs in every window of m consecutive positions."""
    onehot = np.zeros((len(src) + 1, n_sources), dtype=np.int64)
    onehot[np.arange(1, len(src) + 1), src] = 1
    cum = np.cumsum(onehot, axis=0)
    return cum[m:] - cum[:-m]


def test_apportion_is_exact_when_a_small_period_allows():
    assert apportion([0.7, 0.2, 0.1]).tolist() == [7, 2, 1]
    assert apportion([3, 3, 6]).tolist() == [1, 1, 2]
    assert apportion([1, 0, 1]).tolist() == [1, 0, 1]
    counts = apportion([np.pi, np.e, 1.0])
    assert counts.sum() == 1 << 16
    assert np.abs(counts / counts.sum() - np.array([np.pi, np.e, 1]) / (np.pi + np.e + 1)).max() < 1 / (1 << 16)


@pytest.mark.parametrize("bad", [[], [0, 0], [-1, 2], [np.nan, 1], [1e-9, 1]])
def test_apportion_rejects_bad_weights(bad):
    with pytest.raises(ValueError):
        apportion(bad)


def test_interleave_spreads_each_source_evenly():
    src, rank = interleave(np.array([7, 2, 1]))
    assert src.tolist() == [0, 0, 1, 0, 0, 2, 0, 1, 0, 0]
    for s in range(3):
        assert rank[src == s].tolist() == list(range([7, 2, 1][s]))


@pytest.mark.parametrize("weights", WEIGHTS, ids=lambda w: "-".join(f"{x:.2f}" for x in w))
def test_every_window_holds_each_source_within_two_samples(weights):
    n = 200_000
    schedule = MixtureSchedule([n] * len(weights), weights, policy="cycle", epoch_samples=n)
    src, _ = schedule.draws(np.arange(n))
    w = np.asarray(weights, float) / np.sum(weights)
    for m in (32, 100, 1000, 4096):
        dev = np.abs(window_counts(src, len(w), m) - w * m).max()
        assert dev <= 2.0, (m, dev)


@pytest.mark.parametrize("weights", WEIGHTS[:3], ids=["70-20-10", "thirds", "four"])
def test_windows_at_least_as_exact_as_megatrons_blending_index(weights):
    """Megatron's own helper (a greedy, stored index) is the reference for per-window exactness."""
    helpers = pytest.importorskip("megatron.core.datasets.helpers_cpp")
    n = 50_000
    w = np.asarray(weights, float) / np.sum(weights)
    ref_src = np.zeros(n, dtype=np.int16)
    helpers.build_blending_indices(ref_src, np.zeros(n, np.int64), w, len(w), n, False)
    ours, _ = MixtureSchedule([n] * len(w), w, policy="cycle", epoch_samples=n).draws(np.arange(n))
    for m in (32, 1000):
        ref_dev = np.abs(window_counts(ref_src.astype(np.int64), len(w), m) - w * m).max()
        our_dev = np.abs(window_counts(ours, len(w), m) - w * m).max()
        assert our_dev <= ref_dev + 1e-9, (m, our_dev, ref_dev)


def test_each_period_holds_the_exact_counts():
    schedule = MixtureSchedule([10**6] * 3, [0.7, 0.2, 0.1], policy="cycle", epoch_samples=10**6)
    src, _ = schedule.draws(np.arange(10**6))
    assert np.bincount(src).tolist() == [700_000, 200_000, 100_000]
    per_period = np.stack([np.bincount(row, minlength=3) for row in src[:1000].reshape(-1, 10)])
    assert (per_period == [7, 2, 1]).all()


def records_by_source(order: MixtureOrder, positions: np.ndarray) -> dict[int, np.ndarray]:
    rec = order.indices(positions)
    src = order.sources(positions)
    return {s: rec[src == s] - order.offsets[s] for s in range(len(order.offsets) - 1)}


def test_cycle_rereads_a_source_in_a_fresh_order_each_pass():
    sizes = [50, 400, 1000]
    schedule = MixtureSchedule(sizes, [0.5, 0.3, 0.2], policy="cycle", epoch_samples=3000)
    order = MixtureOrder(schedule, seed=5, epoch=0)
    got = records_by_source(order, np.arange(3000))
    small = got[0]
    assert len(small) == 1500  # 30 passes of 50
    passes = small.reshape(30, 50)
    assert all(sorted(p.tolist()) == list(range(50)) for p in passes)
    assert len({tuple(p.tolist()) for p in passes}) == 30  # a new order every pass
    assert len(got[2]) == 600 and len(set(got[2].tolist())) == 600  # 600 of 1000 drawn, none twice


def test_epoch_source_ends_the_epoch_with_its_last_sample():
    sizes = [1000, 300, 40]
    schedule = MixtureSchedule(sizes, [0.7, 0.2, 0.1], policy="cycle", epoch_source=0)
    order = MixtureOrder(schedule, seed=1, epoch=3)
    got = records_by_source(order, np.arange(schedule.length))
    assert sorted(got[0].tolist()) == list(range(1000))
    assert order.sources(np.array([schedule.length - 1]))[0] == 0
    assert schedule.drawn(schedule.length).tolist()[0] == 1000


def test_stop_ends_at_the_first_source_to_run_out():
    schedule = MixtureSchedule([1000, 300, 40], [0.7, 0.2, 0.1], policy="stop")
    order = MixtureOrder(schedule, seed=1, epoch=0)
    got = records_by_source(order, np.arange(schedule.length))
    assert sorted(got[2].tolist()) == list(range(40))
    assert all(len(set(v.tolist())) == len(v) for v in got.values())
    assert order.sources(np.array([schedule.length - 1]))[0] == 2
    assert schedule.length == 396  # the 40th draw of source 2 is at position 10 * 39 + 5


def test_rescale_reads_every_sample_of_every_source_once():
    sizes = [1000, 300, 40]
    schedule = MixtureSchedule(sizes, [0.7, 0.2, 0.1], policy="rescale")
    assert schedule.length == sum(sizes)
    order = MixtureOrder(schedule, seed=9, epoch=0, mode="block")
    rec = order.indices(np.arange(schedule.length))
    assert sorted(rec.tolist()) == list(range(sum(sizes)))
    # after source 2 runs out, the others keep their 7:2 ratio
    src = order.sources(np.arange(schedule.length))
    after = src[schedule.phases[1].start:schedule.phases[1].start + 900]
    assert np.bincount(after, minlength=3).tolist() == [700, 200, 0]


def test_drawn_counts_what_draws_gave():
    schedule = MixtureSchedule([1000, 300, 40], [0.7, 0.2, 0.1], policy="rescale", epoch_samples=1200)
    src, k = schedule.draws(np.arange(schedule.length))
    for p in (0, 1, 7, 395, 396, 397, 800, schedule.length):
        counts = np.bincount(src[:p], minlength=3)
        assert schedule.drawn(p).tolist() == counts.tolist()
    # draw numbers count up from 0 per source, with no gap
    for s in range(3):
        assert k[src == s].tolist() == list(range(int((src == s).sum())))


def test_orders_are_deterministic_and_differ_by_epoch_and_seed():
    schedule = MixtureSchedule([500, 500], [0.5, 0.5], policy="rescale")
    pos = np.arange(schedule.length)
    a = MixtureOrder(schedule, seed=1, epoch=0).indices(pos)
    assert np.array_equal(a, MixtureOrder(schedule, seed=1, epoch=0).indices(pos))
    assert not np.array_equal(a, MixtureOrder(schedule, seed=1, epoch=1).indices(pos))
    assert not np.array_equal(a, MixtureOrder(schedule, seed=2, epoch=0).indices(pos))
    assert np.array_equal(MixtureOrder(schedule, seed=1, epoch=0, mode="none").indices(pos[:4]), [0, 500, 1, 501])


@pytest.mark.parametrize("old_world, new_world", [(1, 3), (2, 4), (4, 1), (3, 2)])
def test_resume_under_another_world_size_continues_the_mixture(old_world, new_world):
    schedule = MixtureSchedule([700, 200, 90], [0.6, 0.3, 0.1], policy="cycle", epoch_samples=901)
    order = MixtureOrder(schedule, seed=4, epoch=2)
    common = dict(n=order.n, batch_size=8, order=order)
    old = rank_plans(old_world, **common)
    for stop in (0, 3, len(old[0]) // 2, len(old[0])):
        before = delivered(old, stop)
        state = LoaderState(seed=4, epoch=2, samples_done=old[0].samples_after(stop), batch_size=8,
                            world_size=old_world, shuffle="full", n=order.n)
        state = LoaderState.from_dict(json.loads(json.dumps(state.to_dict())))
        after = delivered(rank_plans(new_world, **common, start_sample=state.samples_done))
        got = np.concatenate([before, after])
        assert np.array_equal(got, sequence(order, order.n, len(got)))


def test_rank_batches_keep_the_proportions():
    schedule = MixtureSchedule([10**5] * 3, [0.7, 0.2, 0.1], policy="cycle", epoch_samples=10**5)
    order = MixtureOrder(schedule, seed=0, epoch=0)
    offsets = order.offsets
    for rank in range(4):
        plan = EpochPlan(n=order.n, batch_size=100, world=World(rank, 4), order=order)
        for batch in plan.batches():
            counts = np.bincount(np.searchsorted(offsets, batch, side="right") - 1, minlength=3)
            assert np.abs(counts - [70, 20, 10]).max() <= 2
            break


@pytest.mark.parametrize("policy", ["cycle", "rescale"])
def test_new_weights_continue_each_source_where_it_was(policy):
    sizes = [600, 300, 100]
    kw = dict(policy=policy, epoch_samples=1000)
    old = MixtureSchedule(sizes, [0.5, 0.3, 0.2], **kw)
    p0 = 417
    drawn = old.drawn(p0)
    new = MixtureSchedule(sizes, [0.2, 0.2, 0.6], rebase=(p0, drawn), **kw)
    old_order, new_order = MixtureOrder(old, seed=3, epoch=1), MixtureOrder(new, seed=3, epoch=1)
    before = old_order.indices(np.arange(p0))
    after = new_order.indices(np.arange(p0, new.length))
    src = np.concatenate([old_order.sources(np.arange(p0)), new_order.sources(np.arange(p0, new.length))])
    rec = np.concatenate([before, after])
    # each source's samples continue its own sequence: as if drawn 0, 1, 2, ... with no repeat or skip
    full = MixtureSchedule(sizes, [1, 1, 1], policy="cycle", epoch_samples=3000)
    ref = MixtureOrder(full, seed=3, epoch=1)
    for s in range(3):
        mine = rec[src == s] - old_order.offsets[s]
        k = np.arange(len(mine))
        passes, j = np.divmod(k, sizes[s])
        expect = np.concatenate([ref.source_order(s, int(p)).indices(j[passes == p]) for p in np.unique(passes)])
        assert np.array_equal(mine, expect)
    # the new proportions hold from the rebase point on
    tail = np.bincount(src[p0:p0 + 500], minlength=3)
    if policy == "cycle":
        assert np.abs(tail - [100, 100, 300]).max() <= 2


def test_bad_arguments_are_refused_with_the_valid_choices():
    with pytest.raises(ValueError, match="policy must be one of"):
        MixtureSchedule([1, 2], [1, 1], policy="loop")
    with pytest.raises(ValueError, match="epoch_samples"):
        MixtureSchedule([1, 2], [1, 1], policy="cycle")
    with pytest.raises(ValueError, match="empty"):
        MixtureSchedule([0, 2], [1, 1], policy="cycle", epoch_samples=5)
    with pytest.raises(ValueError, match="2 sources but 3 weights"):
        MixtureSchedule([1, 2], [1, 1, 1], policy="stop")
    with pytest.raises(IndexError):
        MixtureSchedule([4, 4], [1, 1], policy="rescale").draws(np.array([8]))
