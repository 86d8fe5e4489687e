"""Run concerns as Lightning callbacks, each with its own state; the CLI adds them to every run."""

from experiments.callbacks.experiment_tag import EXPERIMENT_KEY, ExperimentTag
from experiments.callbacks.non_finite_loss import NonFiniteLossError, NonFiniteLossStop
from experiments.callbacks.prediction_writer import PredictionWriter
from experiments.callbacks.random_states import RandomStates
from experiments.callbacks.run_summary import RunSummary

__all__ = ["EXPERIMENT_KEY", "ExperimentTag", "NonFiniteLossError", "NonFiniteLossStop", "PredictionWriter",
           "RandomStates", "RunSummary"]
