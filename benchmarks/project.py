"""The project's side: the experiment's YAML through the same CLI class, run by the Lightning Trainer."""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L

from benchmarks.timing import StepClock, sync
from experiments.cli import ExperimentCLI

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def build(experiment: str, overrides: list[str], root: Path) -> ExperimentCLI:
    """Instantiate model, data and Trainer exactly as ``fit -c experiments/<experiment>.yaml`` would.

    The progress bar is off (it writes to the terminal; refreshed every 20 steps it costs ~1%),
    everything else is the experiment's default: TensorBoard logging, checkpoints every epoch.
    """
    args = ["-c", str(EXPERIMENTS / f"{experiment}.yaml"), "--trainer.default_root_dir", str(root),
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false", *overrides]
    return ExperimentCLI(args=args, run=False)


def fit(experiment: str, overrides: list[str], root: Path, extra_callbacks: list[L.Callback] = ()) -> StepClock:
    cli = build(experiment, overrides, root)
    clock = StepClock()
    cli.trainer.callbacks.extend([clock, *extra_callbacks])
    cli.trainer.fit(cli.model, cli.datamodule)
    sync()
    return clock


class StopAtMetric(L.Callback):
    """Stops the run when ``metric`` reaches ``bound`` and records when (from the start of fit)."""

    def __init__(self, metric: str, bound: float, mode: str = "min") -> None:
        self.metric, self.bound, self.mode = metric, bound, mode
        self.t0 = time.perf_counter()
        self.reached_at: float | None = None
        self.epoch: int | None = None

    def on_validation_end(self, trainer, pl_module) -> None:
        value = trainer.callback_metrics.get(self.metric)
        if value is None or trainer.sanity_checking:
            return
        hit = value.item() <= self.bound if self.mode == "min" else value.item() >= self.bound
        if hit and self.reached_at is None:
            self.reached_at = time.perf_counter() - self.t0
            self.epoch = trainer.current_epoch
            trainer.should_stop = True
