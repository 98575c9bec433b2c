"""LoaderState: a few integers, round-tripped through a versioned dict, validated on the way in."""

from __future__ import annotations

import json

import pytest

from fastload.plan import LoaderState

STATE = dict(seed=2**63 + 5, epoch=3, samples_done=1234, batch_size=64, world_size=4,
             shuffle="block")


def test_round_trip_through_json():
    state = LoaderState(**STATE, n=10_000)
    d = state.to_dict()
    assert d == {"version": 1, **STATE, "n": 10_000}
    assert LoaderState.from_dict(json.loads(json.dumps(d))) == state
    assert LoaderState.from_dict({"version": 1, **STATE}) == LoaderState(**STATE)


def test_state_is_small():
    d = LoaderState(**STATE).to_dict()
    assert all(isinstance(v, (int, str, type(None))) for v in d.values()) and len(d) <= 8


@pytest.mark.parametrize("d, error, message", [
    ({**STATE}, ValueError, "no 'version'"),
    ({"version": 2, **STATE}, ValueError, "version 2 is not supported"),
    ({"version": 1, **{k: v for k, v in STATE.items() if k != "epoch"}}, ValueError,
     "lacks epoch"),
    ({"version": 1, **STATE, "indices": [1, 2]}, ValueError, "unknown keys indices"),
    ({"version": 1, **STATE, "shuffle": "random"}, ValueError, "full, block, shards, none"),
    ({"version": 1, **STATE, "samples_done": -1}, ValueError, "samples_done must be >= 0"),
    ({"version": 1, **STATE, "batch_size": 0}, ValueError, "batch_size must be >= 1"),
    ({"version": 1, **STATE, "world_size": "4"}, TypeError, "world_size must be an int"),
    ({"version": 1, **STATE, "epoch": True}, TypeError, "epoch must be an int"),
    ({"version": 1, **STATE, "n": -5}, ValueError, "n must be >= 0"),
    ([("version", 1)], TypeError, "a loader state is a dict"),
])
def test_from_dict_validates(d, error, message):
    with pytest.raises(error, match=message):
        LoaderState.from_dict(d)


def test_negative_seed_is_a_seed():
    assert LoaderState(**{**STATE, "seed": -1}).seed == -1


def test_check_resumable():
    state = LoaderState(**STATE, n=100)
    state.check_resumable(n=100, shuffle="block")
    with pytest.raises(ValueError, match="n: state 100, loader 101"):
        state.check_resumable(n=101, shuffle="block")
    with pytest.raises(ValueError, match="shuffle: state 'block', loader 'full'"):
        state.check_resumable(n=100, shuffle="full")
    LoaderState(**STATE).check_resumable(n=7, shuffle="block")  # n unknown: not checked


def test_keyword_only():
    with pytest.raises(TypeError):
        LoaderState(1, 0, 0, 64, 1, "full")  # type: ignore[misc]
