"""The non-finite loss stop: on its schedule, at the end of an epoch, on in every run."""

from __future__ import annotations

from types import SimpleNamespace

import lightning as L
import pytest
import torch
from lightning.pytorch.strategies import SingleDeviceStrategy

from experiments.callbacks import ExperimentTag, NonFiniteLossError, NonFiniteLossStop, RandomStates


def _batch_end(callback, trainer, loss, batch_idx):
    callback.on_train_batch_end(trainer, None, {"loss": torch.tensor(loss)}, None, batch_idx)


def test_non_finite_stop_checks_on_its_schedule_and_names_the_step():
    callback = NonFiniteLossStop(check_every_n_steps=4)
    trainer = SimpleNamespace(global_step=0, num_training_batches=100, world_size=1, current_epoch=3,
                              log_every_n_steps=50, strategy=SingleDeviceStrategy("cpu"))
    for step in range(1, 4):  # a NaN at step 2 is not looked at before step 4: no sync per step
        trainer.global_step = step
        _batch_end(callback, trainer, float("nan") if step == 2 else 1.0, step - 1)
    trainer.global_step = 4
    with pytest.raises(NonFiniteLossError, match=r"train/loss became nan by step 4 \(epoch 3\)"):
        _batch_end(callback, trainer, 1.0, 3)


def test_non_finite_stop_checks_the_last_batch_of_an_epoch():
    callback = NonFiniteLossStop()  # every log_every_n_steps (50) steps, and at the end of the epoch
    trainer = SimpleNamespace(global_step=7, num_training_batches=7, world_size=1, current_epoch=0,
                              log_every_n_steps=50, strategy=SingleDeviceStrategy("cpu"))
    _batch_end(callback, trainer, 1.0, 5)
    with pytest.raises(NonFiniteLossError, match="train/loss became inf"):
        _batch_end(callback, trainer, float("inf"), 6)


def test_non_finite_stop_is_on_by_default_in_every_run(tmp_path):
    from experiments.cli import ExperimentCLI
    from tests.helpers import EXPERIMENTS

    cli = ExperimentCLI(args=["-c", str(EXPERIMENTS / "sin_mlp.yaml"), "--trainer.default_root_dir", str(tmp_path)],
                        run=False)
    kinds = {type(c) for c in cli.trainer.callbacks}
    assert {RandomStates, ExperimentTag, NonFiniteLossStop} <= kinds
    assert isinstance(cli.trainer, L.Trainer)
