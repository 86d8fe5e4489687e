"""Tell a stateful training loader how far its epoch has been trained, for an exact mid-epoch resume."""

from __future__ import annotations

from typing import Any

import lightning as L
from typing_extensions import override


class LoaderPosition(L.Callback):
    """Calls the training loader's ``count_trained()`` after every training step (loaders without one are
    left alone).

    Lightning saves and restores the ``state_dict()`` of a training loader that has one, but it fetches
    each batch one step ahead, so a loader cannot tell from its own iteration which batches were
    trained when a checkpoint is taken. This hook runs after the step and before any checkpoint
    callback saves in the same hook (Lightning orders checkpoint callbacks last), so the count in a
    checkpoint is the one Lightning itself resumes from: the steps it has finished.
    """

    @override
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        count = getattr(trainer.train_dataloader, "count_trained", None)
        if count is not None:
            count()
