"""The callbacks every run gets: random states per rank, the experiment tag, the non-finite stop."""

from __future__ import annotations

import random
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.strategies import SingleDeviceStrategy

from experiments.callbacks import ExperimentTag, NonFiniteLossError, NonFiniteLossStop, RandomStates
from experiments.runs.checkpoints import EXPERIMENT_KEY


def test_random_streams_resume_from_a_weights_only_checkpoint(tmp_path, monkeypatch):
    callback = RandomStates()
    trainer = SimpleNamespace(world_size=1, global_rank=0, strategy=SingleDeviceStrategy("cpu"))
    callback.setup(trainer, None, "fit")
    torch.save({"callbacks": {callback.state_key: callback.state_dict()}}, tmp_path / "states.ckpt")
    expected = (random.random(), float(np.random.rand()), torch.rand(3))
    random.random(), np.random.rand(), torch.rand(3)  # move every stream on

    loaded = torch.load(tmp_path / "states.ckpt", weights_only=True)  # plain tensors and numbers only
    resumed = RandomStates()
    resumed.load_state_dict(loaded["callbacks"][callback.state_key])
    resumed.on_train_start(trainer, None)
    again = (random.random(), float(np.random.rand()), torch.rand(3))
    assert again[:2] == expected[:2] and torch.equal(again[2], expected[2])


def test_each_rank_restores_its_own_streams_and_new_ranks_start_fresh(monkeypatch):
    monkeypatch.setenv("PL_GLOBAL_SEED", "7")
    states = []
    for seed in (1, 2):  # what ranks 0 and 1 had when the checkpoint was written
        torch.manual_seed(seed)
        states.append(torch.get_rng_state())
    draws = []
    for rank in (0, 1):
        torch.set_rng_state(states[rank])
        draws.append(torch.rand(4))

    for rank in (0, 1, 2):
        callback = RandomStates()
        callback.load_state_dict({"ranks": [
            {"torch": s, "cuda": [], "numpy": _numpy(), "python": _python()} for s in states]})
        torch.manual_seed(99)
        callback.on_train_start(SimpleNamespace(world_size=3, global_rank=rank), None)
        if rank < 2:
            assert torch.equal(torch.rand(4), draws[rank])
        else:  # not in the checkpoint: its own stream, from the seed and the rank
            fresh = torch.rand(4)
            assert not any(torch.equal(fresh, d) for d in draws)


def test_ranks_above_zero_get_their_own_streams_on_a_fresh_start(monkeypatch):
    monkeypatch.setenv("PL_GLOBAL_SEED", "7")
    draws = []
    for rank in (0, 1, 2):
        torch.manual_seed(7)  # what seed_everything gives every rank
        RandomStates().on_train_start(SimpleNamespace(world_size=3, global_rank=rank), None)
        draws.append(torch.rand(4))
    torch.manual_seed(7)
    assert torch.equal(draws[0], torch.rand(4))  # rank zero keeps the single-device stream
    assert not torch.equal(draws[0], draws[1]) and not torch.equal(draws[1], draws[2])


def _numpy():
    from experiments.callbacks.random_states import current_states

    return current_states()["numpy"]


def _python():
    from experiments.callbacks.random_states import current_states

    return current_states()["python"]


def test_experiment_tag_is_written_at_the_top_of_the_checkpoint():
    checkpoint: dict = {}
    ExperimentTag("mnist_lenet").on_save_checkpoint(None, None, checkpoint)
    assert checkpoint[EXPERIMENT_KEY] == "mnist_lenet"


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
