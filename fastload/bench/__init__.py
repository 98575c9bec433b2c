"""``fastload bench``: where the time goes on a user's own data (storage, decode, loader, stall).

Modules, one responsibility each: ``config`` (what to measure), ``synthetic`` (datasets for a first
run), ``storage`` (read and memory-copy bandwidth), ``decode`` (per-core decode cost), ``grid``
(the loader over a grid of settings), ``stall`` (waiting under a simulated step), ``advice`` (a
pure function from measurements to plain words), ``torch_compare`` (the user's torch Dataset),
``report`` (table, JSON, plot), ``runner`` (the order of it all), ``cli`` (the subcommand).

The package imports nothing on its own: ``fastload``'s CLI registers ``bench`` through ``cli`` on
every command, and ``runner`` (torch, tqdm, the loader) loads only when a name below is used.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["BenchConfig", "advise", "run"]
_HOMES = {"BenchConfig": ".config", "advise": ".advice", "run": ".runner"}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name], __name__), name)

