"""The private names of Lightning in use still take effect with the installed Lightning."""

from functools import partial

import lightning as L
import torch
from torch import nn

from datamodules import SinDataModule
from experiments.cli import ExperimentCLI
from experiments.cli.lightning_private import PARSE_CKPT_PATH
from lit_models import Regressor
from lit_models.nets import Feedforward


def test_parse_ckpt_path_is_replaced_by_the_cli():
    assert getattr(ExperimentCLI, PARSE_CKPT_PATH) is ExperimentCLI.apply_checkpoint_net


def test_current_fx_name_bypass_still_takes_effect(monkeypatch):
    """Lightning still sets ``_current_fx_name`` around hooks, and never through nn.Module.__setattr__."""
    seen: list[str] = []
    through_module: list[str] = []
    original = nn.Module.__setattr__

    def counting(self, name, value):
        if name == "_current_fx_name":
            through_module.append(value)
        original(self, name, value)

    monkeypatch.setattr(nn.Module, "__setattr__", counting)

    class Watching(Regressor):
        def training_step(self, batch, batch_idx):
            seen.append(self._current_fx_name)
            return super().training_step(batch, batch_idx)

    task = Watching(net=Feedforward(1, 1, [8]), optimizer=partial(torch.optim.Adam, lr=1e-2),
                    figure_every_n_epochs=0)
    trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0)
    trainer.fit(task, SinDataModule(train_size=64, val_size=8, test_size=8))
    assert seen == ["training_step", "training_step"] and through_module == []
