"""Cut windows against megatron-core's own GPTDataset: the same documents (written by its
IndexedDatasetBuilder, imported with fastload pack), laid out in Megatron's document order, give
exactly the samples Megatron gives."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import fastload
from fastload.plan.packing import cut_index

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # megatron-core warns that Transformer Engine and Apex are absent
    indexed = pytest.importorskip("megatron.core.datasets.indexed_dataset")
    gpt = pytest.importorskip("megatron.core.datasets.gpt_dataset")
    utils = pytest.importorskip("megatron.core.datasets.utils")
torch = pytest.importorskip("torch")


class _Tokenizer:
    """What GPTDatasetConfig needs of a tokenizer: the vocabulary size and the special ids."""

    vocab_size, eod, pad, bos = 50000, 0, 1, None
    unique_identifiers = {"class": "test"}


def test_cut_windows_are_megatrons_samples(tmp_path):
    rng = np.random.default_rng(0)
    docs = [rng.integers(2, 30000, int(k)).astype(np.uint16) for k in np.clip(rng.lognormal(3.5, 1, 300), 1, 400)]
    builder = indexed.IndexedDatasetBuilder(str(tmp_path / "c.bin"), dtype=np.uint16)
    for doc in docs:
        builder.add_item(torch.from_numpy(doc))
        builder.end_document()
    builder.finalize(str(tmp_path / "c.idx"))
    config = gpt.GPTDatasetConfig(random_seed=3, sequence_length=64, tokenizer=_Tokenizer(), split="1,0,0",
                                  path_to_cache=str(tmp_path / "mg"), reset_position_ids=False,
                                  reset_attention_mask=False, eod_mask_loss=False, create_attention_mask=False,
                                  add_extra_token_to_sequence=False)
    source = indexed.IndexedDataset(str(tmp_path / "c"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        megatron = gpt.GPTDataset(source, str(tmp_path / "c"), np.arange(len(docs)), None, utils.Split.train, config)

    fastload.pack(str(tmp_path / "c.idx"), tmp_path / "fl", progress=False)
    packed = fastload.pack_sequences(tmp_path / "fl", seq_len=64, seed=None, index_dir=tmp_path / "ix")
    # Megatron's own document shuffle as the layout: fastload's cut of the stream does the rest
    lengths = np.array([len(doc) for doc in docs])
    packed.index = cut_index(lengths, 64, order=megatron.document_index.astype(np.int64), separator=False)
    assert len(packed) == len(megatron)
    windows = packed.get_batch(np.arange(len(packed)))["input_ids"]
    for i in range(len(megatron)):  # Megatron shuffles its samples too: sample i is window shuffle_index[i]
        assert np.array_equal(megatron[i]["tokens"].numpy(), windows[megatron.shuffle_index[i]]), i
