"""The loader: ``fastload.DataLoader`` and the machinery that feeds it."""

from .collate import Pad
from .dataloader import DataLoader, copy_batch

__all__ = ["DataLoader", "Pad", "copy_batch"]
