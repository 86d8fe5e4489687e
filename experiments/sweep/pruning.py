"""Report each epoch's validation metric to an Optuna trial and stop the run when the pruner says so.

optuna-integration's ``PyTorchLightningPruningCallback`` raises ``TrialPruned`` from inside the
Trainer, which Lightning treats as a crash (its ``on_exception`` hooks run; the run's summary would
say failed). This equivalent asks the Trainer to stop instead (``trainer.should_stop``), so a pruned
run ends like an early-stopped one, with its checkpoints and summary, within the epoch it was pruned
in; the sweep then records the trial as pruned.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from typing_extensions import override


class TrialPruning(L.Callback):
    """Report the monitored metric to Optuna after each validation and stop the trial when the pruner says so."""
    def __init__(self, trial: Any, monitor: str) -> None:
        self.trial = trial
        self.monitor = monitor
        self.pruned_at: int | None = None

    @override
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        epoch = trainer.current_epoch
        should_prune = False
        if trainer.is_global_zero:  # one process talks to the study; the decision goes to every rank
            self.trial.report(float(value), step=epoch)
            should_prune = self.trial.should_prune()
        should_prune = trainer.strategy.broadcast(should_prune, src=0)
        if should_prune:
            self.pruned_at = epoch
            trainer.should_stop = True
