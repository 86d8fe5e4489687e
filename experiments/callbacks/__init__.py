"""Run concerns as Lightning callbacks, each with its own state; the CLI adds them to every run."""

from experiments.callbacks.error_analysis import ErrorAnalysis
from experiments.callbacks.experiment_tag import ExperimentTag
from experiments.callbacks.loader_position import LoaderPosition
from experiments.callbacks.mlflow_run import MLflowRun
from experiments.callbacks.non_finite_loss import NonFiniteLossError, NonFiniteLossStop
from experiments.callbacks.preemption import Preemption
from experiments.callbacks.random_states import RandomStates
from experiments.callbacks.run_summary import RunSummary

__all__ = ["ErrorAnalysis", "ExperimentTag", "LoaderPosition", "MLflowRun", "NonFiniteLossError", "NonFiniteLossStop",
           "Preemption", "RandomStates", "RunSummary"]
