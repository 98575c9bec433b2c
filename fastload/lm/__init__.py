"""Language-model data: sequence packing of tokenized documents and weighted mixtures of datasets."""

from .packed import PackedDataset, pack_sequences

__all__ = ["PackedDataset", "pack_sequences"]
