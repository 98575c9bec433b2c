"""detect_world: torch.distributed first, then RANK/WORLD_SIZE, then a single process."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from fastload.plan import World, detect_world


@pytest.fixture
def no_env(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "NODE_RANK"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_default_is_one_process(no_env):
    assert World() == World(0, 1)
    if "torch" not in sys.modules:
        assert detect_world() == World(0, 1)
    else:  # an earlier test imported torch: it must not be initialized then
        import torch.distributed as dist
        assert dist.is_initialized() or detect_world() == World(0, 1)


def test_from_environment(no_env):
    no_env.setenv("RANK", "2")
    no_env.setenv("WORLD_SIZE", " 4")
    no_env.setenv("LOCAL_RANK", "0")  # the node-local number is not the rank
    assert detect_world() == World(rank=2, world_size=4)


def test_local_rank_alone_is_not_a_world(no_env):
    no_env.setenv("LOCAL_RANK", "3")
    assert detect_world() == World(0, 1)


def test_world_size_one_without_rank(no_env):
    no_env.setenv("WORLD_SIZE", "1")
    assert detect_world() == World(0, 1)


@pytest.mark.parametrize("env, message", [
    ({"RANK": "1"}, "RANK is set but WORLD_SIZE is not"),
    ({"WORLD_SIZE": "2"}, "WORLD_SIZE is set but RANK is not"),
    ({"RANK": "x", "WORLD_SIZE": "2"}, "RANK='x' is not an integer"),
    ({"RANK": "2", "WORLD_SIZE": "2"}, r"rank must be in \[0, world_size=2\)"),
])
def test_bad_environment(no_env, env, message):
    for name, value in env.items():
        no_env.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        detect_world()


def _fake_torch(monkeypatch, initialized: bool, rank: int = 1, size: int = 3):
    dist = types.ModuleType("torch.distributed")
    dist.is_available = lambda: True
    dist.is_initialized = lambda: initialized
    dist.get_rank = lambda: rank
    dist.get_world_size = lambda: size
    torch = types.ModuleType("torch")
    torch.distributed = dist
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch.distributed", dist)


def test_initialized_torch_distributed_wins_over_environment(no_env):
    no_env.setenv("RANK", "0")
    no_env.setenv("WORLD_SIZE", "8")
    _fake_torch(no_env, initialized=True)
    assert detect_world() == World(1, 3)


def test_uninitialized_torch_distributed_falls_back_to_environment(no_env):
    no_env.setenv("RANK", "5")
    no_env.setenv("WORLD_SIZE", "8")
    _fake_torch(no_env, initialized=False)
    assert detect_world() == World(5, 8)


def test_torch_is_not_imported_to_look(no_env):
    no_env.delitem(sys.modules, "torch", raising=False)
    no_env.delitem(sys.modules, "torch.distributed", raising=False)
    detect_world()
    assert "torch" not in sys.modules


def test_real_gloo_group(no_env, tmp_path):
    dist = pytest.importorskip("torch.distributed")
    if not dist.is_available() or dist.is_initialized():
        pytest.skip("torch.distributed unavailable or already initialized")
    no_env.setenv("RANK", "3")  # contradicts the group: the group must win
    no_env.setenv("WORLD_SIZE", "5")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}",
                            rank=0, world_size=1)
    try:
        assert detect_world() == World(0, 1)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("args, error", [
    ((1, 1), ValueError), ((-1, 2), ValueError), ((0, 0), ValueError),
    ((0.0, 1), TypeError), ((True, 2), TypeError),
])
def test_world_validation(args, error):
    with pytest.raises(error):
        World(*args)


def test_world_normalises_numpy_ints():
    world = World(np.int64(1), np.int32(2))
    assert type(world.rank) is int and world == World(1, 2) and hash(world) == hash(World(1, 2))
