"""fastload.DataLoader inside the training stacks people use: Lightning, Accelerate, the HF Trainer.

Real frameworks, tiny models, a few steps: each test records the record ids every step trained
on and compares an interrupted-and-resumed run with an uninterrupted one.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

import fastload
from fastload.loader import DataLoader

N = 100
BATCH = 10


@pytest.fixture(scope="module")
def ds_path(tmp_path_factory):
    root = tmp_path_factory.mktemp("frameworks") / "ds"
    rng = np.random.default_rng(0)
    with fastload.Writer(root, schema="id:int64,tokens:uint16[-1],x:float32[4]", shard_size="16KB",
                         block_size="4KB") as w:
        w.write_batch({"id": np.arange(N, dtype=np.int64),
                       "tokens": [rng.integers(0, 999, size=int(rng.integers(1, 20)), dtype=np.uint16)
                                  for _ in range(N)],
                       "x": rng.random((N, 4), dtype=np.float32)})
    return root


def pad_collate(rows):
    longest = max(len(r["tokens"]) for r in rows)
    out = torch.zeros(len(rows), longest, dtype=torch.int64)
    for i, r in enumerate(rows):
        out[i, : len(r["tokens"])] = torch.from_numpy(r["tokens"].astype(np.int64))
    return {"id": torch.tensor([int(r["id"]) for r in rows]), "tokens": out}


# -- Lightning -----------------------------------------------------------------------------------
@pytest.mark.timeout(120)
def test_lightning_resumes_exactly_from_mid_and_end_of_epoch_checkpoints(ds_path, tmp_path):
    L = pytest.importorskip("lightning")
    from lightning.pytorch.callbacks import ModelCheckpoint

    class Model(L.LightningModule):
        def __init__(self, seen):
            super().__init__()
            self.lin = torch.nn.Linear(1, 1)
            self.seen = seen

        def training_step(self, batch, _):
            self.seen.append(batch["id"].tolist())
            return self.lin(batch["tokens"].float().mean(1, keepdim=True)).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    def trainer(*callbacks):
        return L.Trainer(max_epochs=3, callbacks=list(callbacks), logger=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0,
                         enable_checkpointing=bool(callbacks))

    def loader():
        return DataLoader(ds_path, batch_size=BATCH, shuffle=True, num_workers=2, collate_fn=pad_collate)

    full: list = []
    mid = ModelCheckpoint(dirpath=tmp_path / "mid", every_n_train_steps=13, save_top_k=-1, filename="{step}")
    end = ModelCheckpoint(dirpath=tmp_path / "end", save_top_k=-1, filename="{step}")
    trainer(mid, end).fit(Model(full), loader())
    assert len(full) == 30 and full[:10] != full[10:20]  # every epoch reshuffles
    for ckpt, step in ((tmp_path / "mid" / "step=13.ckpt", 13), (tmp_path / "end" / "step=10.ckpt", 10)):
        resumed: list = []
        trainer().fit(Model(resumed), loader(), ckpt_path=ckpt)
        assert resumed == full[step:], ckpt.name


# -- Accelerate ----------------------------------------------------------------------------------
@pytest.mark.parametrize("workers", [0, 2])
def test_accelerate_prepare_shuffles_per_epoch_keeps_fields_and_resumes(ds_path, tmp_path, workers, caplog):
    pytest.importorskip("accelerate")
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration

    def prepared():
        acc = Accelerator(dataloader_config=DataLoaderConfiguration(use_stateful_dataloader=True), cpu=True)
        loader = DataLoader(ds_path, batch_size=BATCH, shuffle=True, num_workers=workers, fields=["id", "tokens"])
        return acc, acc.prepare(loader)

    def ids(loader):
        return [int(i) for b in loader for i in b["id"]]

    with caplog.at_level(logging.WARNING, logger="fastload.loader"):
        acc, loader = prepared()
        e0, e1 = ids(loader), ids(loader)
    assert sorted(e0) == sorted(e1) == list(range(N)) and e0 != e1
    assert sum("get_train_dataloader" in r.getMessage() for r in caplog.records) == 1  # how to keep the fast path
    batch = next(iter(loader))
    assert set(batch) == {"id", "tokens"} and isinstance(batch["tokens"], list)  # variable rows, no torch.stack
    own = DataLoader(ds_path, batch_size=BATCH, shuffle=True)
    assert e0 == [int(i) for b in own for i in b["id"]]  # the same order as fastload's own loader

    it = iter(loader)  # epoch 2 (Accelerate counts finished iterations)
    seen = [int(i) for _ in range(4) for i in next(it)["id"]]
    acc.save_state(tmp_path / "state")
    acc2, loader2 = prepared()
    acc2.load_state(tmp_path / "state")
    reference = DataLoader(ds_path, batch_size=BATCH, shuffle=True)
    reference.set_epoch(2)
    assert seen + ids(loader2) == [int(i) for b in reference for i in b["id"]]


# -- the HF Trainer ------------------------------------------------------------------------------
@pytest.mark.timeout(120)
def test_hf_trainer_with_default_arguments_trains_on_a_fastload_dataset(tmp_path):
    transformers = pytest.importorskip("transformers")
    root = tmp_path / "lm"
    ids = np.random.default_rng(0).integers(0, 100, size=(64, 16)).astype(np.int64)
    with fastload.Writer(root, schema="input_ids:int64[16],labels:int64[16],source:str") as w:
        w.write_batch({"input_ids": ids, "labels": ids, "source": ["web"] * 64})  # a column the model ignores
    config = transformers.GPT2Config(vocab_size=100, n_positions=16, n_embd=16, n_layer=1, n_head=2,
                                     bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(config)
    before = [p.detach().clone() for p in model.parameters()]
    args = transformers.TrainingArguments(output_dir=str(tmp_path / "out"), per_device_train_batch_size=8,
                                          max_steps=4, report_to=[], use_cpu=True, save_strategy="no",
                                          disable_tqdm=True)
    assert args.remove_unused_columns  # the default
    result = transformers.Trainer(model=model, args=args, train_dataset=fastload.open(root)).train()
    assert result.global_step == 4 and np.isfinite(result.training_loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
