"""One run of a cross-validation: a normal ``fit`` on K-1 folds, in this process, then its out-of-fold predictions.

The run gets ``--cv_fold`` (the data module trains without the fold and validates on it), ``--seed_everything`` (the
cv seed seeds the weights too) and the tags ``cv``, ``seed``, ``fold`` in its ``summary.json``. What the report
needs is returned and stored with the study, so a report can be written on any machine sharing it: every validation
metric at the best epoch (the epoch whose checkpoint is ``best``), that epoch, and the run folder, where the best
checkpoint's predictions of the held-out fold are written (``predictions/val.csv``, by the prediction writer).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
from typing_extensions import override

from experiments.cli import ExperimentCLI
from experiments.deploy.prediction_writer import PredictionWriter
from experiments.sweep.in_process import quiet_args, quiet_lightning

#: where a run's out-of-fold predictions are written, in its folder
OOF_FILE = Path("predictions") / "val.csv"


class ValidationHistory(L.Callback):
    """Every validation metric after each validation of the fit (the sanity check left out)."""

    def __init__(self) -> None:
        self.epochs: list[tuple[int, dict[str, float]]] = []

    @override
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/") and v.numel() == 1}
        self.epochs.append((trainer.current_epoch, metrics))

    def at_best(self, monitor: str, mode: str) -> tuple[int, dict[str, float]] | None:
        """``(epoch, metrics)`` of the first validation with the best ``monitor`` (what ``ModelCheckpoint`` keeps)."""
        scored = [(e, m) for e, m in self.epochs if math.isfinite(m.get(monitor, math.nan))]
        if not scored:
            return None
        pick = max if mode == "max" else min
        best = pick(m[monitor] for _, m in scored)
        return next((e, m) for e, m in scored if m[monitor] == best)


@dataclass
class RunResult:
    """What one cross-validation run reports back.

    Attributes:
        run: the run folder.
        value: the monitored metric at the best epoch.
        best_epoch: that epoch (0-based).
        metrics: every validation metric at that epoch.
        oof: the out-of-fold predictions' file (None: not written).
    """

    run: str
    value: float
    best_epoch: int
    metrics: dict[str, float] = field(default_factory=dict)
    oof: str | None = None


def fold_option(folds: int, fold: int | None, seed: int, group_by: str | None) -> list[str]:
    """The ``--cv_fold`` option of one run (``fold`` None: the refit on the whole pool)."""
    return ["--cv_fold", json.dumps({"folds": folds, "fold": fold, "seed": seed, "group_by": group_by})]


def run_fold(fit_args: list[str], name: str, folds: int, seed: int, fold: int, group_by: str | None,
             monitor: str, mode: str) -> RunResult:
    """Train fold ``fold`` of seed ``seed`` and predict its held-out samples with the best checkpoint.

    Raises:
        ValueError: the run recorded no finite value of ``monitor``.
    """
    history = ValidationHistory()
    args = quiet_args(["fit", *fit_args, "--seed_everything", str(seed), *fold_option(folds, fold, seed, group_by)])
    with quiet_lightning():
        cli = ExperimentCLI(args=args, extra_callbacks=[history], report=False,
                            run_tags={"cv": name, "seed": seed, "fold": fold})
        best = history.at_best(monitor, mode)
        if best is None:
            raise ValueError(f"the run recorded no finite {monitor}; is validation running?")
        epoch, metrics = best
        run = cli.run_folder
        oof = None
        if run is not None:
            oof = str(predict_held_out(cli, run.path / "predictions"))
        result = RunResult(str(run.path) if run else "", metrics[monitor], epoch, metrics, oof)
        del cli
    return result


def predict_held_out(cli: ExperimentCLI, out_dir: Path) -> Path:
    """The best checkpoint's predictions of the validation split (the held-out fold), by the prediction writer."""
    trainer = cli.trainer
    checkpoint = trainer.checkpoint_callback
    path = checkpoint.best_model_path if checkpoint is not None and checkpoint.best_model_path else None
    cli.datamodule.predict_split = "val"
    writer = PredictionWriter(output_dir=str(out_dir), verbose=False)
    trainer.callbacks.append(writer)
    try:
        trainer.predict(cli.model, datamodule=cli.datamodule, ckpt_path=path, return_predictions=False)
    finally:
        trainer.callbacks.remove(writer)
    return writer.written["csv"]


def refit(fit_args: list[str], name: str, folds: int, seed: int, epochs: int, group_by: str | None) -> str:
    """Train on the whole pool for ``epochs`` epochs, no validation (no held-out data is left to choose a
    checkpoint by); its ``last.ckpt`` is the model to predict, export and serve.

    Returns:
        The run folder.
    """
    args = quiet_args(["fit", *fit_args, "--seed_everything", str(seed), *fold_option(folds, None, seed, group_by),
                       "--trainer.max_epochs", str(epochs), "--trainer.limit_val_batches", "0",
                       "--trainer.num_sanity_val_steps", "0"])
    with quiet_lightning():
        cli = ExperimentCLI(args=args, report=False, run_tags={"cv": name, "seed": seed, "refit": True})
        run = str(cli.run_folder.path) if cli.run_folder is not None else ""
        del cli
    return run
