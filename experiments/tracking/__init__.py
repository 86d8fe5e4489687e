"""Trackers beside TensorBoard: MLflow as a team's tracker, CSV files, any Lightning logger a config adds.

TensorBoard always stays (the run folder, ``summary.json``, ``runs`` and HPARAMS are built on it);
loggers a config adds go next to it. For MLflow this package decides where a run is tracked (the
usual ``MLFLOW_TRACKING_URI``, else a local store in ``lightning_logs/mlruns``), checks the server
answers before any run folder is made, and keeps the MLflow run id in the run folder so a resumed
fit, a test, a prediction or an export of that run adds to the same MLflow run.
"""

from experiments.tracking.loggers import place_in_run, prepare_loggers
from experiments.tracking.mlflow_store import (
    MlflowRecord,
    is_mlflow_logger,
    log_to_recorded_run,
    pending_run_name,
    recorded_logger,
)
from experiments.tracking.run_csv import RunCSVLogger

__all__ = ["MlflowRecord", "RunCSVLogger", "is_mlflow_logger", "log_to_recorded_run", "pending_run_name",
           "place_in_run", "prepare_loggers", "recorded_logger"]
