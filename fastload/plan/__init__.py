"""Planning: ranks, epoch orders, shuffles and resume state. Pure NumPy arithmetic, no I/O."""

from .epoch import EpochPlan
from .orders import BlockShuffle, FullShuffle, Order, SequentialOrder, make_order
from .quality import ShuffleQuality, shuffle_quality
from .state import LoaderState
from .world import World, detect_world

__all__ = [
    "BlockShuffle", "EpochPlan", "FullShuffle", "LoaderState", "Order", "SequentialOrder",
    "ShuffleQuality", "World", "detect_world", "make_order", "shuffle_quality",
]
