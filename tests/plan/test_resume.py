"""Exact, elastic resume: stop after any global batch, restore in any world size, lose nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastload.plan import LoaderState, make_order

from .helpers import delivered, rank_plans, sequence


def _resume(n, batch_size, old_world, new_world, stop, mode, drop_last, even, seed=11):
    """(before, after, order, new plans): a run stopped after `stop` global batches, resumed."""
    order = make_order(mode, n, seed=seed, epoch=2, block_starts=np.arange(0, n, 8), window=2)
    common = dict(n=n, batch_size=batch_size, order=order, drop_last=drop_last, even=even)
    old = rank_plans(old_world, **common)
    before = delivered(old, stop)
    # the state travels as JSON, as it would in a checkpoint
    state = LoaderState(seed=seed, epoch=2, samples_done=old[0].samples_after(stop),
                        batch_size=batch_size, world_size=old_world, shuffle=mode, n=n)
    state = LoaderState.from_dict(json.loads(json.dumps(state.to_dict())))
    state.check_resumable(n=n, shuffle=mode)
    new = rank_plans(new_world, **common, start_sample=state.samples_done)
    return before, delivered(new), order, new, old


def _check(n, batch_size, old_world, new_world, stop, mode, drop_last, even):
    before, after, order, new, old = _resume(n, batch_size, old_world, new_world, stop, mode,
                                             drop_last, even)
    got = np.concatenate([before, after])
    # no repeat, no skip: together they are a prefix of the epoch's global sequence ...
    assert np.array_equal(got, sequence(order, n, len(got)))
    # ... as long as the new world makes it
    plan = new[0]
    rest = plan.end - plan.start_sample
    assert len(after) == (rest // plan.global_batch * plan.global_batch if drop_last else rest)
    if even == "pad" and not drop_last:
        # every record delivered; padding only evens out a last global batch (the old world's
        # when the state was taken at the end of the epoch)
        assert np.array_equal(np.sort(got[:n]), np.arange(n))
        assert len(got) - n < max(old_world, new_world)
    if old_world == new_world:
        assert np.array_equal(got, delivered(old))  # the uninterrupted run, padding included


@pytest.mark.parametrize("old_world, new_world", [(1, 2), (2, 3), (4, 1), (3, 3), (2, 4), (1, 1)])
@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("even", ["pad", "drop"])
@pytest.mark.parametrize("mode", ["full", "block"])
def test_resume_at_every_batch(old_world, new_world, drop_last, even, mode):
    n, batch_size = 103, 4
    probe = rank_plans(old_world, n=n, batch_size=batch_size, order=make_order("none", n, 0, 0),
                       drop_last=drop_last, even=even)[0]
    for stop in range(len(probe) + 1):
        _check(n, batch_size, old_world, new_world, stop, mode, drop_last, even)


@given(n=st.integers(0, 200), batch_size=st.integers(1, 9), old_world=st.integers(1, 4),
       new_world=st.integers(1, 4), data=st.data(), mode=st.sampled_from(["full", "block", "none"]),
       drop_last=st.booleans(), even=st.sampled_from(["pad", "drop"]))
@settings(max_examples=100, deadline=None)
def test_resume_property(n, batch_size, old_world, new_world, data, mode, drop_last, even):
    probe = rank_plans(old_world, n=n, batch_size=batch_size, order=make_order("none", n, 0, 0),
                       drop_last=drop_last, even=even)[0]
    stop = data.draw(st.integers(0, len(probe)))
    _check(n, batch_size, old_world, new_world, stop, mode, drop_last, even)


def test_resume_twice_across_three_world_sizes():
    n, batch_size = 257, 5
    order = make_order("full", n, seed=3, epoch=0)
    common = dict(n=n, batch_size=batch_size, order=order)
    first = rank_plans(2, **common)
    got = [delivered(first, 7)]
    second = rank_plans(3, **common, start_sample=first[0].samples_after(7))
    got.append(delivered(second, 4))
    third = rank_plans(1, **common, start_sample=second[0].samples_after(4))
    got.append(delivered(third))
    got = np.concatenate(got)
    assert np.array_equal(got, sequence(order, n, n))  # 257 records: nothing to pad for 1 rank


def test_resume_at_epoch_end_gives_nothing():
    n = 50
    order = make_order("block", n, seed=0, epoch=0)
    for drop_last in (False, True):
        old = rank_plans(3, n=n, batch_size=4, order=order, drop_last=drop_last)
        done = old[0].samples_after(len(old[0]))
        for world_size in (1, 2, 3, 4):
            new = rank_plans(world_size, n=n, batch_size=4, order=order, drop_last=drop_last,
                             start_sample=done)
            assert [len(p) for p in new] == [0] * world_size


def test_resume_changes_batch_size_too():
    # the resume point is a sample position, so the batch size may change as well
    n = 100
    order = make_order("full", n, seed=9, epoch=1)
    old = rank_plans(2, n=n, batch_size=6, order=order)
    before = delivered(old, 3)
    after = delivered(rank_plans(3, n=n, batch_size=5, order=order,
                                 start_sample=old[0].samples_after(3)))
    assert np.array_equal(np.concatenate([before, after])[:n], sequence(order, n, n))


def test_resume_before_any_batch_of_a_world_with_none():
    # 11 records in global batches of 12 with drop_last: 4 ranks deliver nothing; a state taken
    # then must not claim the epoch was consumed, or 1 rank would resume past 8 unseen samples
    for mode in ("none", "full"):
        _check(11, 3, 4, 1, 0, mode, True, "drop")
