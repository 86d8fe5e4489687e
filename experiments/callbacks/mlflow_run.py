"""The MLflow runs of a trainer's MLFlowLoggers, filled with what the run folder and TensorBoard show.

Lightning's MLFlowLogger sends the metrics Lightning logs; a run also needs the rest to be read in
MLflow alone: its name (``<experiment>/version_N``, as in TensorBoard), tags that point back to the
run folder (and a sweep's study and trial), its params (the flattened config, as HPARAMS shows it),
and, as artifacts, the config file of each command and ``summary.json`` after it, and a prediction's
CSV files. Figures go to MLflow where they are drawn (:meth:`lit_models.task.Task.figure_writer`).
The first MLflow run's id is kept in ``<run>/mlflow.json`` so later commands on the run add to it.
"""

from __future__ import annotations

import re
from typing import Any

import lightning as L
from typing_extensions import override

from experiments.runs.flat_config import run_params
from experiments.runs.folder import RunFolder
from experiments.tracking.mlflow_store import MlflowRecord, is_mlflow_logger, pending_run_name

#: MLflow's limits on a param's value and on a key (mlflow.utils.validation)
MAX_VALUE = 6000
_NOT_IN_KEY = re.compile(r"[^\w\-./ ]")


class MLflowRun(L.Callback):
    """Names, tags, params and artifacts of the trainer's MLflow runs (rank zero; nothing without MLFlowLogger)."""

    def __init__(self, experiment: str, run: RunFolder | None, config: dict[str, Any] | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        self.experiment = experiment
        self.run = run
        self.config = dict(config or {})
        self.extra = dict(extra or {})

    def _loggers(self, trainer: L.Trainer) -> list[Any]:
        if self.run is None or not trainer.is_global_zero:
            return []
        return [lg for lg in trainer.loggers if is_mlflow_logger(lg)]

    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for index, logger in enumerate(self._loggers(trainer)):
            client, run_id = logger.experiment, logger.run_id
            if index == 0:
                MlflowRecord(client.tracking_uri, str(logger.experiment_id), run_id).write(self.run)
            current = client.get_run(run_id).data
            tags = {"litexp.experiment": self.experiment, "litexp.version": str(self.run.version),
                    "litexp.run_folder": str(self.run.path), **{k: str(v) for k, v in self.extra.items()}}
            if current.tags.get("mlflow.runName") == pending_run_name(self.experiment):
                tags["mlflow.runName"] = f"{self.experiment}/version_{self.run.version}"
            params: dict[str, str] = {}
            if stage == "fit":
                wanted = run_params(self.experiment, self.run.version, pl_module.monitor, self.config, self.extra)
                for key, value in wanted.items():
                    key, value = _NOT_IN_KEY.sub("_", key)[:250], str(value)[:MAX_VALUE]
                    if key not in current.params:
                        params[key] = value
                    elif current.params[key] != value:  # MLflow params never change: a resume's new value is a tag
                        tags[f"resumed_with.{key}"[:250]] = value
            _log_batch(client, run_id, params, tags)

    @override
    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._log_files(trainer, stage)

    @override
    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._log_files(trainer, trainer.state.fn or "fit")  # the summary says why it ended

    def _log_files(self, trainer: L.Trainer, stage: Any) -> None:
        stage = str(getattr(stage, "value", stage))  # Lightning passes its TrainerFn enum
        for logger in self._loggers(trainer):
            client, run_id = logger.experiment, logger.run_id
            for path in (self.run.config(stage), self.run.summary):
                if path.is_file():
                    client.log_artifact(run_id, str(path))
            if stage == "predict" and self.run.predictions.is_dir():
                client.log_artifacts(run_id, str(self.run.predictions), "predictions")


def _log_batch(client: Any, run_id: str, params: dict[str, str], tags: dict[str, str]) -> None:
    from mlflow.entities import Param, RunTag

    client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()],
                     tags=[RunTag(k, v) for k, v in tags.items()])  # MLflow sends them in chunks of its limit
