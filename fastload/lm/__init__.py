"""Language-model data: sequence packing of tokenized documents and weighted mixtures of datasets."""

from .mixed import MixedDataset, mix
from .packed import PackedDataset, pack_sequences

__all__ = ["MixedDataset", "PackedDataset", "mix", "pack_sequences"]
