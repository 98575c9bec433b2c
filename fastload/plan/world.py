"""Who this process is in a data-parallel job: its rank, the world size, and its node."""

from __future__ import annotations

import importlib
import numbers
import os
import sys
from dataclasses import dataclass
from typing import Mapping

# torchrun's and the usual launchers' names for the number of this node among the job's nodes
NODE_RANK_VARIABLES = ("GROUP_RANK", "NODE_RANK")


@dataclass(frozen=True)
class World:
    """This process's ``rank`` among ``world_size`` data-parallel processes, ``local_world_size``
    of them per node (ranks numbered node by node, as torchrun numbers them).

    ``local_world_size`` None (the default) means one node holding every rank. Nodes matter to the
    plan only through :attr:`nodes`: each global batch's positions go to nodes by residue (position
    modulo ``nodes``), so that with partitioned orders a node's ranks read only its partitions.
    """

    rank: int = 0
    world_size: int = 1
    local_world_size: int | None = None

    def __post_init__(self) -> None:
        if self.local_world_size is None:
            object.__setattr__(self, "local_world_size", self.world_size)
        for name in ("rank", "world_size", "local_world_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"World.{name} must be an int, got {value!r}")
            # numpy integers from a launcher are stored as int, so World compares and hashes cleanly
            object.__setattr__(self, name, int(value))
        if self.world_size < 1:
            raise ValueError(f"World.world_size must be >= 1, got {self.world_size}")
        if not 0 <= self.rank < self.world_size:
            raise ValueError(
                f"World.rank must be in [0, world_size={self.world_size}), got {self.rank}")
        if self.local_world_size < 1 or self.world_size % self.local_world_size:
            raise ValueError(f"World.local_world_size must divide world_size={self.world_size} "
                             f"(the same number of ranks on every node), got {self.local_world_size}")

    @property
    def nodes(self) -> int:
        """Number of nodes: world_size / local_world_size."""
        return self.world_size // self.local_world_size

    @property
    def node(self) -> int:
        """This rank's node, ranks being numbered node by node."""
        return self.rank // self.local_world_size

    @property
    def local_rank(self) -> int:
        return self.rank % self.local_world_size


def detect_world() -> World:
    """This process's world: torch.distributed if initialized, else RANK/WORLD_SIZE, else 0 of 1.

    Ranks per node come from LOCAL_WORLD_SIZE (torchrun and most launchers set it); without it
    every rank counts as one node (correct data, but every node then reads every shard).
    LOCAL_RANK alone is deliberately ignored: it numbers the processes of one node, not of the job.
    """
    world = _torch_world()
    if world is None:
        world = _env_world(os.environ)
    local = _env_local_world_size(os.environ, world.world_size)
    return world if local is None else World(world.rank, world.world_size, local)


def _torch_world() -> World | None:
    # Only look when the user already imported torch: importing it here would cost about a
    # second and make the planning layer depend on torch.
    if "torch" not in sys.modules:
        return None
    dist = importlib.import_module("torch.distributed")
    if not dist.is_available() or not dist.is_initialized():
        return None
    return World(dist.get_rank(), dist.get_world_size())


def _env_world(environ: Mapping[str, str]) -> World:
    rank, size = environ.get("RANK"), environ.get("WORLD_SIZE")
    if rank is None and size is None:
        return World()
    if rank is None and size is not None and _env_int("WORLD_SIZE", size) == 1:
        return World()
    if rank is None or size is None:
        # Guessing the missing one would silently give two ranks the same samples.
        missing = "RANK" if rank is None else "WORLD_SIZE"
        present = "WORLD_SIZE" if rank is None else "RANK"
        raise ValueError(
            f"{present} is set but {missing} is not: set both (torchrun does) or neither")
    return World(_env_int("RANK", rank), _env_int("WORLD_SIZE", size))


def _env_local_world_size(environ: Mapping[str, str], world_size: int) -> int | None:
    text = environ.get("LOCAL_WORLD_SIZE")
    if text is None:
        return None
    local = _env_int("LOCAL_WORLD_SIZE", text)
    if local < 1 or world_size % local:
        # every rank must agree on the node count, or two ranks would read the same positions
        raise ValueError(f"LOCAL_WORLD_SIZE={local} does not divide the world size {world_size}: "
                         "fastload needs the same number of ranks on every node")
    return local


def node_rank_note(world: World, environ: Mapping[str, str] | None = None) -> str | None:
    """What to warn about when the launcher's node number disagrees with rank // local_world_size:
    the data stays right (positions follow the rank), but a node then reads other nodes' shards."""
    environ = os.environ if environ is None else environ
    for name in NODE_RANK_VARIABLES:
        text = environ.get(name)
        if text is not None and text.strip().lstrip("-").isdigit() and int(text) != world.node:
            return (f"{name}={text.strip()} but rank {world.rank} // LOCAL_WORLD_SIZE={world.local_world_size} is "
                    f"node {world.node}: ranks are not numbered node by node, so nodes read shards planned for "
                    "other nodes (the samples are still right, the downloads are not shared out)")
    return None


def _env_int(name: str, text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"environment variable {name}={text!r} is not an integer") from None
