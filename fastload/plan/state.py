"""A loader's resume point: a few integers and the seed, never a list of indices.

``samples_done`` is a position in the epoch's global sample sequence, which does not depend on
the world size, so a state saved by one world size restores under another
(``EpochPlan(start_sample=state.samples_done, ...)``).
"""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass, fields

from .orders import SHUFFLE_MODES

STATE_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class LoaderState:
    """Where a loader stands: epoch and global samples delivered, with what decides the order.

    ``n`` (records in the dataset) is optional; when given, a restore can refuse a state taken
    on another dataset instead of silently resuming a different sequence.
    """

    seed: int
    epoch: int
    samples_done: int
    batch_size: int
    world_size: int
    shuffle: str
    n: int | None = None

    def __post_init__(self) -> None:
        lows = {"seed": None, "epoch": 0, "samples_done": 0, "batch_size": 1, "world_size": 1,
                "n": 0}
        for name, low in lows.items():
            value = getattr(self, name)
            if name == "n" and value is None:
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
        """Plain ints and strings with a version key: safe for JSON and torch.save."""
        return {"version": STATE_VERSION, **asdict(self)}

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
        required = {f.name for f in fields(cls) if f.name != "n"}
        keys = set(d) - {"version"}
        if missing := sorted(required - keys):
            raise ValueError(f"loader state lacks {', '.join(missing)}")
        if unknown := sorted(keys - names):
            raise ValueError(f"loader state has unknown keys {', '.join(unknown)}")
        return cls(**{k: d[k] for k in keys})

    def check_resumable(self, *, n: int, shuffle: str) -> None:
        """Raise ValueError if this state cannot continue a loader over n records in this mode."""
        wrong = [f"{name}: state {mine!r}, loader {theirs!r}"
                 for name, mine, theirs in (("n", self.n, n), ("shuffle", self.shuffle, shuffle))
                 if mine != theirs and not (name == "n" and mine is None)]
        if wrong:
            raise ValueError("the loader state was taken with another setup (" +
                             "; ".join(wrong) + "): resuming would not continue its sequence")
