"""The loggers a config adds beside TensorBoard, prepared before they are built and placed once the run is known."""

from __future__ import annotations

import os
from typing import Any

from experiments.runs.folder import RunFolder
from experiments.tracking.mlflow_store import prepare_mlflow
from experiments.tracking.run_csv import RunCSVLogger, in_run_folder


def configured(config: Any) -> list[Any]:
    """The ``trainer.logger`` entries of a parsed config (a single one or a list; none for True/False/None)."""
    loggers = config.trainer.get("logger")
    if loggers in (None, True, False):
        return []
    return list(loggers) if isinstance(loggers, list) else [loggers]


def prepare_loggers(config: Any, root: str | os.PathLike, experiment: str, run: RunFolder | None) -> None:
    """Before the loggers are built: a CSVLogger at its defaults goes into the run folder, MLflow loggers get
    their store, experiment and (for a run that has one) MLflow run, and their server must answer.
    """
    entries = configured(config)
    for entry in entries:
        in_run_folder(entry, root)
    prepare_mlflow(entries, root, experiment, run)


def place_in_run(loggers: list[Any], run: RunFolder | None) -> None:
    """Once the run folder is claimed: the loggers that write into it learn where."""
    if run is None:
        return
    for logger in loggers:
        if isinstance(logger, RunCSVLogger):
            logger.place(run)
