"""Stop a run whose training loss became NaN or infinite, on every rank at once."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from typing_extensions import override


class NonFiniteLossError(ValueError):
    """The training loss became NaN or infinite (on at least one rank; every rank raises it)."""


class NonFiniteLossStop(L.Callback):
    """Raises :class:`NonFiniteLossError` when the training loss stops being finite.

    Each step only keeps its detached loss (no host-device sync); the kept losses are checked every
    ``check_every_n_steps`` steps (default: the Trainer's ``log_every_n_steps``) and at the last
    batch of every epoch, which comes before validation and before the epoch's checkpoints, so the
    last checkpoint on disk holds the last good weights.

    Under DDP the decision is collective, as in Lightning's ``EarlyStopping``: the ranks gather
    their losses at the same step, so a NaN on any one rank stops them all at that step, instead of
    leaving the others waiting in the next collective until the timeout.
    """

    def __init__(self, check_every_n_steps: int | None = None) -> None:
        if check_every_n_steps is not None and check_every_n_steps < 1:
            raise ValueError(f"check_every_n_steps must be >= 1, got {check_every_n_steps}")
        self.check_every_n_steps = check_every_n_steps
        self._pending: list[torch.Tensor] = []

    @override
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pending.clear()

    @override
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            self._pending.append(loss.detach())
        every = self.check_every_n_steps or max(1, trainer.log_every_n_steps)
        if trainer.global_step % every == 0 or batch_idx + 1 >= trainer.num_training_batches:
            self._check(trainer, pl_module)

    def _check(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        total = torch.stack(self._pending).float().sum() if self._pending else torch.zeros((), device=pl_module.device)
        self._pending.clear()
        # one collective for every rank at the same step, also on ranks whose losses are fine (the
        # strategy's own all_gather, as EarlyStopping decides through the strategy)
        totals = trainer.strategy.all_gather(total.detach()).reshape(-1).tolist()  # the one sync
        bad = [rank for rank, value in enumerate(totals) if not math.isfinite(value)]
        if not bad:
            return
        where = f" on rank {', '.join(map(str, bad))}" if trainer.world_size > 1 else ""
        raise NonFiniteLossError(
            f"train/loss became {totals[bad[0]]}{where} by step {trainer.global_step} "
            f"(epoch {trainer.current_epoch}); every rank stopped and the last checkpoint holds the last good "
            "weights: lower the learning rate or add gradient clipping (--trainer.gradient_clip_val 1.0)"
        )
