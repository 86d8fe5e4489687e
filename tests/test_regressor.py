from functools import partial

import lightning as L
import torch

from datamodules import SinDataModule
from lit_models import Regressor
from lit_models.nets import Feedforward


def quiet_trainer(tmp_path, **kwargs) -> L.Trainer:
    defaults = dict(logger=False, enable_progress_bar=False, enable_model_summary=False,
                    default_root_dir=tmp_path, accelerator="cpu")
    return L.Trainer(**{**defaults, **kwargs})


def test_loss_goes_down_on_a_fixed_problem(tmp_path):
    L.seed_everything(0)
    task = Regressor(Feedforward(1, 1, [32, 32]), optimizer=partial(torch.optim.Adam, lr=1e-2),
                     figure_every_n_epochs=0)
    data = SinDataModule(train_size=512, val_size=256, test_size=256, batch_size=64)
    data.setup()
    with torch.no_grad():
        before = torch.nn.functional.mse_loss(task(data.val[0]), data.val[1]).item()
    trainer = quiet_trainer(tmp_path, max_epochs=30, enable_checkpointing=False)
    trainer.fit(task, data)
    after = trainer.validate(task, data, verbose=False)[0]["val/mse"]
    assert after < 0.5 * before, (before, after)
    assert after < 0.3  # the target's variance is ~0.5: the net fits something


def test_checkpoint_round_trips_weights_exactly(tmp_path):
    task = Regressor(Feedforward(1, 1, [8]), figure_every_n_epochs=0)
    trainer = quiet_trainer(tmp_path, max_epochs=2, enable_checkpointing=False)
    trainer.fit(task, SinDataModule(train_size=128, val_size=64, test_size=64))
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    restored = Regressor.load_from_checkpoint(path, net=Feedforward(1, 1, [8]))
    original = task.state_dict()
    for key, value in restored.state_dict().items():
        assert torch.equal(value, original[key]), key
    x = torch.rand(10, 1)
    assert torch.equal(restored(x), task(x))


def test_schedule_length_filled_in_from_trainer(tmp_path):
    scheduler = partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.01)
    task = Regressor(Feedforward(1, 1, [4]), lr_scheduler=scheduler, scheduler_interval="step",
                     figure_every_n_epochs=0)
    trainer = quiet_trainer(tmp_path, max_epochs=3, enable_checkpointing=False)
    data = SinDataModule(train_size=100, val_size=10, test_size=10, batch_size=10)
    trainer.fit(task, data)
    assert trainer.lr_scheduler_configs[0].scheduler.total_steps == 30
