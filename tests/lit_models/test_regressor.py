from functools import partial

import lightning as L
import pytest
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
    task = Regressor(net=Feedforward(1, 1, [32, 32]), optimizer=partial(torch.optim.Adam, lr=1e-2),
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
    task = Regressor(net=Feedforward(1, 1, [8]), figure_every_n_epochs=0)
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
    task = Regressor(net=Feedforward(1, 1, [4]), lr_scheduler=scheduler, scheduler_interval="step",
                     figure_every_n_epochs=0)
    trainer = quiet_trainer(tmp_path, max_epochs=3, enable_checkpointing=False)
    data = SinDataModule(train_size=100, val_size=10, test_size=10, batch_size=10)
    trainer.fit(task, data)
    assert trainer.lr_scheduler_configs[0].scheduler.total_steps == 30


class _StepLosses(L.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(outputs["loss"].item())


class _Metrics(L.pytorch.loggers.logger.Logger):
    """Keeps what the Trainer logs: {name: [(step, value)]}."""

    def __init__(self) -> None:
        super().__init__()
        self.metrics: dict[str, list[tuple[int, float]]] = {}

    name, version = "memory", 0

    def log_metrics(self, metrics, step=None) -> None:
        for key, value in metrics.items():
            self.metrics.setdefault(key, []).append((step, float(value)))

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass


def test_logged_train_loss_is_the_mean_of_the_step_losses(tmp_path):
    # 8 steps per epoch, logged every 3 steps: windows cross epoch boundaries and the epoch's last
    # step is not a logged one, so the fold of the kept losses is exercised at both places.
    L.seed_everything(0)
    task = Regressor(net=Feedforward(1, 1, [8]), figure_every_n_epochs=0)
    steps, logger = _StepLosses(), _Metrics()
    trainer = quiet_trainer(tmp_path, max_epochs=2, enable_checkpointing=False, logger=logger,
                            log_every_n_steps=3, callbacks=[steps])
    trainer.fit(task, SinDataModule(train_size=512, val_size=64, test_size=64, batch_size=64))
    losses = steps.losses
    assert len(losses) == 16
    # train/loss at global step s (0-based, logged when (s + 1) % 3 == 0) is the mean since the last
    # logged step, restarted at each epoch
    expected, window = [], []
    for s, loss in enumerate(losses):
        if s % 8 == 0:
            window = []
        window.append(loss)
        if (s + 1) % 3 == 0:
            expected.append(sum(window) / len(window))
            window = []
    logged = [v for _, v in logger.metrics["train/loss"]]
    assert logged == [pytest.approx(e, rel=1e-5) for e in expected]
    epoch_means = [v for _, v in logger.metrics["train/loss_epoch"]]
    assert epoch_means == [pytest.approx(sum(losses[:8]) / 8, rel=1e-5), pytest.approx(sum(losses[8:]) / 8, rel=1e-5)]
