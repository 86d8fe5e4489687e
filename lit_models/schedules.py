"""Learning-rate schedules whose length the Trainer fills in, so a config need not repeat max_epochs."""

from __future__ import annotations

import torch
from torch.optim import Optimizer


class CosineAnnealingLR(torch.optim.lr_scheduler.CosineAnnealingLR):
    """torch's cosine annealing with ``T_max`` optional: the task sets it to the run's length
    (epochs, or steps with ``scheduler_interval: step``) when the config leaves it out."""

    def __init__(self, optimizer: Optimizer, T_max: int | None = None, eta_min: float = 0.0,  # noqa: N803
                 last_epoch: int = -1) -> None:
        if T_max is None:
            raise ValueError("CosineAnnealingLR needs T_max; inside a task it is filled in from the Trainer")
        super().__init__(optimizer, T_max=T_max, eta_min=eta_min, last_epoch=last_epoch)
