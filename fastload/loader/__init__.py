"""The loader: ``fastload.DataLoader`` and the machinery that feeds it."""

from .dataloader import DataLoader, copy_batch

__all__ = ["DataLoader", "copy_batch"]
