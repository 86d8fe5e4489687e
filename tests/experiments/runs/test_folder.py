"""The run folder: paths built and parsed in one place."""

from experiments.runs import ExperimentFolder, RunFolder
from experiments.runs.flat_config import flatten


def test_claim_next_and_paths(tmp_path):
    experiment = ExperimentFolder.at(tmp_path, "sin_mlp")
    first, second = experiment.claim_next(), experiment.claim_next()
    assert (first.version, second.version) == (0, 1) and experiment.versions() == [0, 1]
    assert first.path == tmp_path / "lightning_logs" / "sin_mlp" / "version_0"
    assert first.last_checkpoint == first.path / "checkpoints" / "last.ckpt"
    assert first.config("test").name == "config_test.yaml" and first.config().name == "config.yaml"
    assert first.summary.name == "summary.json" and first.experiment == "sin_mlp"
    ckpt = first.checkpoints / "best-epoch003.ckpt"
    assert experiment.holding(ckpt) == first and RunFolder.of_checkpoint(ckpt) == first
    assert RunFolder.of_checkpoint(tmp_path / "model.ckpt").path == tmp_path
    assert experiment.holding(tmp_path / "model.ckpt") is None


def test_flatten_reads_like_the_options():
    config = {"model": {"class_path": "lit_models.Regressor", "init_args": {
        "optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.01}}}},
        "trainer": {"max_epochs": 3, "logger": None, "devices": None}, "ckpt_path": "x"}
    assert flatten(config) == {"model": "lit_models.Regressor", "model.optimizer": "torch.optim.Adam",
                               "model.optimizer.lr": 0.01, "trainer.max_epochs": 3}
