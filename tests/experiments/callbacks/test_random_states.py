"""Random states per rank: saved in every checkpoint, restored on resume, fresh streams for new ranks."""

from __future__ import annotations

import random
from types import SimpleNamespace

import numpy as np
import torch
from lightning.pytorch.strategies import SingleDeviceStrategy

from experiments.callbacks import RandomStates


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
