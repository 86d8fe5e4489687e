"""The random number generators of every rank, saved in checkpoints and restored on resume."""

from __future__ import annotations

import os
import random
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from typing_extensions import override

from datamodules.base.ranks import gather_from_ranks


def _numpy_state() -> tuple:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)


def _set_numpy_state(state: tuple) -> None:
    name, keys, pos, has_gauss, cached = state
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))


def _python_state() -> tuple:
    # the 625 words as one tensor: pickled one by one they cost ~1 ms per checkpoint
    version, words, gauss = random.getstate()
    return version, torch.tensor(words, dtype=torch.int64), gauss


def _set_python_state(state: tuple) -> None:
    version, words, gauss = state
    random.setstate((version, tuple(words.tolist()), gauss))


def current_states() -> dict[str, Any]:
    """This process's torch (CPU and CUDA), numpy and Python generator states, as tensors and plain
    numbers so that a checkpoint loads with ``torch.load(weights_only=True)``.
    """
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "numpy": _numpy_state(),
        "python": _python_state(),
    }


def restore_states(states: dict[str, Any]) -> None:
    """Put back the random states :func:`capture_states` took (CUDA's only on the same number of devices)."""
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])
    _set_numpy_state(states["numpy"])
    _set_python_state(states["python"])


class RandomStates(L.Callback):
    """Saves every rank's random streams and gives each rank its own back on resume.

    Lightning saves no random state, so without this a resumed run draws other dropout masks than an
    uninterrupted one. Checkpoints are written by rank zero alone, so the states are gathered from
    all ranks when the checkpoint is assembled (every rank takes part in that) and each rank restores
    its own entry; a resume on more ranks than were saved starts the new ranks' streams fresh.

    ``seed_everything`` gives every rank the same seed, which is what makes the initial weights
    equal; at the start of training each rank above zero then moves to its own streams, derived
    from the seed and the rank, so that ranks do not draw the same dropout masks.
    """

    def __init__(self) -> None:
        self._trainer: L.Trainer | None = None
        self._loaded: list[dict[str, Any]] | None = None

    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._trainer = trainer

    @override
    def state_dict(self) -> dict[str, Any]:
        trainer = self._trainer
        if trainer is None:
            return {}
        return {"ranks": gather_from_ranks(current_states(), trainer.strategy)}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._loaded = state_dict.get("ranks")

    @override
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # restored here, right before the first training batch: the sanity check draws nothing
        # from these streams in an uninterrupted run either
        loaded, self._loaded = self._loaded, None
        rank = trainer.global_rank
        if loaded is not None and rank < len(loaded):
            restore_states(loaded[rank])
            return
        if loaded is not None:
            rank_zero_warn(f"resuming on {trainer.world_size} ranks from a checkpoint of {len(loaded)}: ranks "
                           f"{len(loaded)} and up start fresh random streams")
        seed = os.environ.get("PL_GLOBAL_SEED")
        if rank > 0 and seed is not None:
            derived = (int(seed) * 1_000_003 + rank) % 2**32
            torch.manual_seed(derived)
            np.random.seed(derived)
            random.seed(derived)
