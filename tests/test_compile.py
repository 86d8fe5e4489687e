from functools import partial

import lightning as L
import pytest
import torch

from datamodules import SinDataModule
from lit_models import Regressor
from lit_models.nets import Feedforward


@pytest.mark.slow
def test_compiled_run_keeps_plain_checkpoint_keys(tmp_path):
    task = Regressor(Feedforward(1, 1, [8]), optimizer=partial(torch.optim.Adam, lr=1e-2), compile=True,
                     figure_every_n_epochs=0)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(task, SinDataModule(train_size=64, val_size=32, test_size=32, batch_size=32))
    assert task.__dict__.get("_compiled_net") is not None  # the compiled path was used
    keys = set(task.state_dict())
    assert keys == {f"net.{k}" for k in Feedforward(1, 1, [8]).state_dict()}
