"""The experiment tag at the top of every checkpoint."""

from __future__ import annotations

from experiments.callbacks import ExperimentTag
from experiments.runs.checkpoints import EXPERIMENT_KEY


def test_experiment_tag_is_written_at_the_top_of_the_checkpoint():
    checkpoint: dict = {}
    ExperimentTag("mnist_lenet").on_save_checkpoint(None, None, checkpoint)
    assert checkpoint[EXPERIMENT_KEY] == "mnist_lenet"
