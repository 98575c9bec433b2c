"""Planning: ranks, epoch orders, shuffles and resume state. Pure NumPy arithmetic, no I/O."""

from .epoch import EpochPlan
from .orders import BlockShuffle, FullShuffle, Order, PartitionedShuffle, SequentialOrder, ShardWindows, make_order
from .quality import ShuffleQuality, sampled_quality, shuffle_quality
from .state import LoaderState
from .world import World, detect_world

__all__ = [
    "BlockShuffle", "EpochPlan", "FullShuffle", "LoaderState", "Order", "PartitionedShuffle", "SequentialOrder",
    "ShardWindows", "ShuffleQuality", "World", "detect_world", "make_order", "sampled_quality", "shuffle_quality",
]
