"""``fastload bench``: where the time goes on a user's own data (storage, decode, loader, stall).

Modules, one responsibility each: ``config`` (what to measure), ``synthetic`` (datasets for a first
run), ``storage`` (read and memory-copy bandwidth), ``decode`` (per-core decode cost), ``grid``
(the loader over a grid of settings), ``stall`` (waiting under a simulated step), ``advice`` (a
pure function from measurements to plain words), ``torch_compare`` (the user's torch Dataset),
``report`` (table, JSON, plot), ``runner`` (the order of it all), ``cli`` (the subcommand).
"""

from .advice import advise
from .config import BenchConfig
from .runner import run

__all__ = ["BenchConfig", "advise", "run"]
