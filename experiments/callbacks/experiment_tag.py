"""The experiment's name written into every checkpoint it saves."""

from __future__ import annotations

from typing import Any

import lightning as L
from typing_extensions import override

from experiments.runs.checkpoints import EXPERIMENT_KEY


class ExperimentTag(L.Callback):
    """Tags checkpoints with the experiment, so that a checkpoint of another experiment passed to
    ``--ckpt_path`` is refused by name instead of silently changing the model.

    A top-level key (not callback state) so that it is read without knowing this callback's key.
    """

    def __init__(self, experiment: str) -> None:
        self.experiment = experiment

    @override
    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint[EXPERIMENT_KEY] = self.experiment
