"""The LightningCLI subclass and its Trainer: experiments as runs, commands on trained models."""

from experiments.cli.experiment_cli import ExperimentCLI, name_experiment
from experiments.cli.trainer import ExperimentTrainer

__all__ = ["ExperimentCLI", "ExperimentTrainer", "name_experiment"]
