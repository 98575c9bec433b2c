"""A loader's resume point: a few integers and the seed, never a list of indices.

``samples_done`` is a position in the epoch's global sample sequence, which does not depend on
the world size, so a state saved by one world size restores under another
(``EpochPlan(start_sample=state.samples_done, ...)``).
"""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass, fields
from typing import Any

from .orders import SHUFFLE_MODES

STATE_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class LoaderState:
    """Where a loader stands: epoch and global samples delivered, with what decides the order.

    ``n`` (records in the dataset) is optional; when given, a restore can refuse a state taken
    on another dataset instead of silently resuming a different sequence. ``partitions`` (the
    canonical partitions of the epoch, see walk.py) and ``window`` (shards per window of the
    "shards" order) are part of what decides the sequence: a restore adopts them.
    """

    seed: int
    epoch: int
    samples_done: int
    batch_size: int
    world_size: int
    shuffle: str
    n: int | None = None
    partitions: int = 1
    window: int | None = None

    def __post_init__(self) -> None:
        lows = {"seed": None, "epoch": 0, "samples_done": 0, "batch_size": 1, "world_size": 1,
                "n": 0, "partitions": 1, "window": 1}
        for name, low in lows.items():
            value = getattr(self, name)
            if name in _OPTIONAL and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"LoaderState.{name} must be an int, got {value!r}")
            if low is not None and value < low:
                raise ValueError(f"LoaderState.{name} must be >= {low}, got {value}")
            object.__setattr__(self, name, int(value))
        if self.shuffle not in SHUFFLE_MODES:
            raise ValueError(f"LoaderState.shuffle must be one of {', '.join(SHUFFLE_MODES)}; "
                             f"got {self.shuffle!r}")

    def to_dict(self) -> dict:
        """Plain ints and strings with a version key: safe for JSON and torch.save. The keys that
        hold their default (one partition, no shard window) are left out, so such a state reads
        the same as before they existed."""
        d = asdict(self)
        for name, default in _DEFAULTS.items():
            if d[name] == default:
                del d[name]
        return {"version": STATE_VERSION, **d}

    @classmethod
    def from_dict(cls, d: dict) -> LoaderState:
        """The state saved by to_dict, validated: a wrong version or wrong keys raise ValueError."""
        if not isinstance(d, dict):
            raise TypeError(f"a loader state is a dict, got {type(d).__name__}")
        if "version" not in d:
            raise ValueError("not a fastload loader state: no 'version' key")
        if d["version"] != STATE_VERSION:
            raise ValueError(f"loader state version {d['version']!r} is not supported "
                             f"(this fastload reads version {STATE_VERSION})")
        names = {f.name for f in fields(cls)}
        required = {f.name for f in fields(cls) if f.name != "n" and f.name not in _DEFAULTS}
        keys = set(d) - {"version"}
        if missing := sorted(required - keys):
            raise ValueError(f"loader state lacks {', '.join(missing)}")
        if unknown := sorted(keys - names):
            raise ValueError(f"loader state has unknown keys {', '.join(unknown)}")
        return cls(**{k: d[k] for k in keys})

    def check_resumable(self, *, n: int, shuffle: str) -> None:
        # partitions and window are not checked: they are the state's to decide (the loader adopts them)
        """Raise ValueError if this state cannot continue a loader over n records in this mode."""
        wrong = [f"{name}: state {mine!r}, loader {theirs!r}"
                 for name, mine, theirs in (("n", self.n, n), ("shuffle", self.shuffle, shuffle))
                 if mine != theirs and not (name == "n" and mine is None)]
        if wrong:
            raise ValueError("the loader state was taken with another setup (" +
                             "; ".join(wrong) + "): resuming would not continue its sequence")


_DEFAULTS = {"partitions": 1, "window": None}
_OPTIONAL = ("n", "window")


@dataclass(frozen=True, kw_only=True)
class SamplerState:
    """Where a loader stands in an order it does not own (a user's or a framework's sampler, or
    an iterable dataset): batches delivered in the epoch, and what restores the rest.

    ``order_state`` is the sampler's own ``state_dict`` after the last delivered batch (None when
    it has none: the loader then replays ``batches_done`` index batches); ``rng`` the torch
    generator state (``rng_kind`` ``"generator"``) or torch's global RNG state (``"global"``) when
    the epoch began, so a sampler drawing from either draws the same order again. For an iterable
    dataset, ``workers`` holds per worker ``[batches delivered, state after them, state one batch
    earlier]`` and ``next_worker`` whose batch comes next.
    """

    kind: str  # "sampler" or "iterable"
    epoch: int
    batches_done: int
    order_state: Any = None
    rng: Any = None
    rng_kind: str | None = None
    workers: list | None = None
    next_worker: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("sampler", "iterable"):
            raise ValueError(f"SamplerState.kind must be 'sampler' or 'iterable', not {self.kind!r}")
        for name in ("epoch", "batches_done", "next_worker"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise ValueError(f"SamplerState.{name} must be an int >= 0, got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.rng_kind not in (None, "generator", "global"):
            raise ValueError(f"SamplerState.rng_kind must be None, 'generator' or 'global', not {self.rng_kind!r}")

    def to_dict(self) -> dict:
        """Plain values, the sampler's own state and tensors: safe for torch.save(weights_only)."""
        return {"version": STATE_VERSION, **{f.name: getattr(self, f.name) for f in fields(self)}}

    @classmethod
    def from_dict(cls, d: dict) -> "SamplerState":
        if d.get("version") != STATE_VERSION:
            raise ValueError(f"loader state version {d.get('version')!r} is not supported "
                             f"(this fastload reads version {STATE_VERSION})")
        names = {f.name for f in fields(cls)}
        if unknown := sorted(set(d) - names - {"version"}):
            raise ValueError(f"loader state has unknown keys {', '.join(unknown)}")
        return cls(**{k: v for k, v in d.items() if k != "version"})


def state_from_dict(d: dict) -> LoaderState | SamplerState:
    """The state a loader saved: its own order's (no ``kind``) or another order's."""
    if not isinstance(d, dict):
        raise TypeError(f"a loader state is a dict, got {type(d).__name__}")
    if "kind" in d:
        return SamplerState.from_dict(d)
    return LoaderState.from_dict(d)
