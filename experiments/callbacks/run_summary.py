"""``<run>/summary.json`` kept current, and the run's hyperparameters on TensorBoard's HPARAMS dashboard.

The summary is what ``runs`` lists: state, epochs, the best monitored value and its epoch, the
latest test metrics, wall time, seed. It is written (through a temporary file and a rename, so it is
never half-written) when a fit starts, after every epoch, at the end, on an exception, and after a
test; a resumed fit and a later test update the same file. Ctrl-C (or SIGTERM) leaves ``interrupted``;
an exception, also one raised while the sanity check runs, ``failed`` with its reason. A run killed
outright keeps ``state: running`` with a process id that no longer exists, which ``runs`` shows as killed.

Lightning writes hyperparameters without metrics, which leaves TensorBoard's HPARAMS dashboard empty.
Here the flattened config goes out with the names of the run's key metrics, and the dashboard reads
their latest values from the run's scalars. The dashboard takes its list of metric names from one
run only, so every experiment uses the same names: ``hp/best`` (the best value of the monitored
metric so far: ``val/acc`` or ``val/mse``), ``hp/test`` (its test counterpart, ``test/acc`` or
``test/mse``), and ``val/loss``, ``test/loss``, ``test/ece`` (a classifier's calibration error; empty for a
regression); the ``monitor`` hyperparameter says which metric it is.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from typing_extensions import override

from experiments.runs.flat_config import run_params
from experiments.runs.folder import RunFolder
from experiments.runs.summary import now_iso, read_summary, test_metric, write_summary

#: the metric tags on the HPARAMS dashboard, the same for every experiment (see the module's docstring)
HPARAM_METRICS = ("hp/best", "hp/test", "val/loss", "test/loss", "test/ece")


def _tensorboard(trainer: L.Trainer) -> TensorBoardLogger | None:
    return next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)


class RunSummary(L.Callback):
    """Writes ``summary.json`` into the run folder (rank zero) and the hparams summary at fit start.

    ``run`` is the run's folder (None: no summary, as in a ``fast_dev_run``); ``config`` the run's
    flattened config (:mod:`experiments.runs.flat_config`); ``extra`` adds fields (a sweep's study and
    trial) to both the summary and the hyperparameters.
    """

    def __init__(self, experiment: str, run: RunFolder | None = None, config: dict[str, Any] | None = None,
                 extra: dict[str, Any] | None = None):
        self.experiment = experiment
        self.run = run
        self.config = dict(config or {})
        self.extra = dict(extra or {})
        self._started = time.monotonic()
        self._wall_before = 0.0
        #: this run's summary as last read or written (rank zero): read from the file once, then kept here
        self._summary: dict[str, Any] | None = None

    # -- where ---------------------------------------------------------------------------------

    def _run_dir(self, trainer: L.Trainer, in_sanity_check: bool = False) -> RunFolder | None:
        """The run folder, on rank zero (the only place the summary is written), outside the sanity check
        unless ``in_sanity_check`` (an exception raised there still ends the run).
        """
        if self.run is None or not trainer.is_global_zero or (trainer.sanity_checking and not in_sanity_check):
            return None
        return self.run

    def _current(self, run_dir: RunFolder) -> dict[str, Any]:
        if self._summary is None:
            self._summary = read_summary(run_dir)
        return self._summary

    def _update(self, trainer: L.Trainer, in_sanity_check: bool = False, **fields: Any) -> None:
        run_dir = self._run_dir(trainer, in_sanity_check)
        if run_dir is None:
            return
        summary = self._current(run_dir)
        summary.update(fields)
        write_summary(run_dir, summary)

    # -- fit -----------------------------------------------------------------------------------

    @override
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        run_dir = self._run_dir(trainer)
        if run_dir is None:
            return
        self._started = time.monotonic()
        self._summary = None  # another process (an earlier fit, a test) may have written it since
        summary = self._current(run_dir)
        self._wall_before = float(summary.get("wall_time_s") or 0.0)
        summary.update({
            "experiment": self.experiment,
            "version": run_dir.version,
            "started": summary.get("started") or now_iso(),
            "state": "running",
            "reason": None,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "monitor": pl_module.monitor,
            "mode": pl_module.monitor_mode,
            "max_epochs": trainer.max_epochs,
            "seed": self.config.get("seed_everything"),
            "resumed": summary.get("state") is not None,
            **self.extra,
        })
        summary.setdefault("epochs", 0)
        write_summary(run_dir, summary)
        self._log_hparams(trainer, pl_module)

    @override
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        run_dir = self._run_dir(trainer)
        if run_dir is None or trainer.state.fn != "fit":
            return
        value = trainer.callback_metrics.get(pl_module.monitor)
        if value is None:
            return
        summary = self._current(run_dir)  # written at the end of the training epoch, which follows
        best = summary.get("best") or {}
        value = float(value)
        better = best.get("value") is None or (
            value > best["value"] if pl_module.monitor_mode == "max" else value < best["value"]
        )
        if better:
            summary["best"] = {"metric": pl_module.monitor, "value": value, "epoch": trainer.current_epoch}
        summary["last_val"] = {pl_module.monitor: value}
        logger = _tensorboard(trainer)
        if logger is not None:
            logger.log_metrics({"hp/best": summary["best"]["value"]}, step=trainer.global_step)

    @override
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._update(trainer, epochs=trainer.current_epoch + 1, global_step=trainer.global_step,
                     wall_time_s=round(self._wall_before + time.monotonic() - self._started, 3), updated=now_iso())

    @override
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epochs = trainer.current_epoch
        planned = trainer.max_epochs if trainer.max_epochs is not None and trainer.max_epochs > 0 else None
        steps_left = trainer.max_steps == -1 or trainer.global_step < trainer.max_steps
        stopped_early = planned is not None and epochs < planned and steps_left and not trainer.fast_dev_run
        self._update(trainer, state="stopped early" if stopped_early else "finished", epochs=epochs,
                     global_step=trainer.global_step, finished=now_iso(),
                     wall_time_s=round(self._wall_before + time.monotonic() - self._started, 3))

    @override
    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if trainer.state.fn != "fit":
            return
        interrupted = isinstance(exception, (KeyboardInterrupt, SIGTERMException))
        reason = "interrupted" if interrupted else f"{type(exception).__name__}: {str(exception).splitlines()[0]}" \
            if str(exception) else type(exception).__name__
        self._update(trainer, in_sanity_check=True, state="interrupted" if interrupted else "failed",
                     reason=reason[:300], finished=now_iso(),
                     wall_time_s=round(self._wall_before + time.monotonic() - self._started, 3))

    # -- test ----------------------------------------------------------------------------------

    @override
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
        if not metrics:
            return
        run_dir = self._run_dir(trainer)
        if run_dir is None:
            return
        self._summary = None  # a test runs in its own process, after the fit that wrote the file
        summary = self._current(run_dir)
        summary.setdefault("experiment", self.experiment)
        summary.setdefault("version", run_dir.version)
        summary.setdefault("monitor", pl_module.monitor)
        summary.setdefault("mode", pl_module.monitor_mode)
        checkpoint = Path(trainer.ckpt_path).name if trainer.ckpt_path else None
        summary["test"] = {"metrics": metrics, "checkpoint": checkpoint, "at": now_iso()}
        write_summary(run_dir, summary)
        logger = _tensorboard(trainer)
        main = metrics.get(test_metric(pl_module.monitor))
        if logger is not None and main is not None:
            logger.log_metrics({"hp/test": main}, step=getattr(pl_module, "evaluated_step", None) or 0)
        if not summary.get("hparams_logged"):  # a run fitted before hparams were written: give it them now
            self._log_hparams(trainer, pl_module)

    # -- HPARAMS -------------------------------------------------------------------------------

    def _log_hparams(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """The flattened config with the key metrics' names (``torch.utils.tensorboard``'s ``hparams``).

        Written straight to the event file rather than through ``TensorBoardLogger.log_hyperparams``,
        which would also log each metric as a value at step 0: the dashboard reads the metrics'
        latest values from the scalars the run logs anyway.
        """
        from torch.utils.tensorboard.summary import hparams

        logger = _tensorboard(trainer)
        run_dir = self._run_dir(trainer)
        if logger is None or run_dir is None:
            return
        params = run_params(self.experiment, run_dir.version, pl_module.monitor, self.config, self.extra)
        exp, ssi, sei = hparams(params, {name: 0.0 for name in HPARAM_METRICS})
        writer = logger.experiment.file_writer  # SummaryWriter's public writer of this run's event file
        for summary in (exp, ssi, sei):
            writer.add_summary(summary)
        writer.flush()
        self._update(trainer, hparams_logged=True)

