"""Who this process is in a data-parallel job: its rank and the world size."""

from __future__ import annotations

import importlib
import numbers
import os
import sys
from dataclasses import dataclass
from typing import Mapping


@dataclass(frozen=True)
class World:
    """This process's ``rank`` among ``world_size`` data-parallel processes."""

    rank: int = 0
    world_size: int = 1

    def __post_init__(self) -> None:
        for name in ("rank", "world_size"):
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


def detect_world() -> World:
    """This process's world: torch.distributed if initialized, else RANK/WORLD_SIZE, else 0 of 1.

    LOCAL_RANK is deliberately ignored: it numbers the processes of one node, not of the job.
    """
    world = _torch_world()
    if world is not None:
        return world
    return _env_world(os.environ)


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


def _env_int(name: str, text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"environment variable {name}={text!r} is not an integer") from None
