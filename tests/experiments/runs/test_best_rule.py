"""``--ckpt_path best``: the best finished run by its recorded metric and direction, not the newest; sweep
trials only when their study is named; ``last`` stays the newest run's last.
"""

from __future__ import annotations

import json

import pytest

from experiments.runs import checkpoints
from experiments.runs.folder import ExperimentFolder


def _run(experiment: ExperimentFolder, version: int, value: float | None, state: str = "finished",
         mode: str = "min", metric: str = "val/mse", **extra) -> None:
    folder = experiment.path / f"version_{version}" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "best-epoch003.ckpt").write_bytes(b"")
    (folder / "last.ckpt").write_bytes(b"")  # unreadable as a checkpoint: the summary is what counts
    summary = {"state": state, "monitor": metric, "mode": mode, **extra}
    if value is not None:
        summary["best"] = {"metric": metric, "value": value, "epoch": 3}
    (folder.parent / "summary.json").write_text(json.dumps(summary))


@pytest.fixture
def experiment(tmp_path) -> ExperimentFolder:
    return ExperimentFolder.at(tmp_path, "sin_mlp")


def test_the_best_finished_run_wins_over_newer_shorter_and_trial_runs(experiment):
    _run(experiment, 0, 1.6e-4)  # the long finished run
    _run(experiment, 1, 0.41, study="lr", trial=0)  # a sweep's trials, newer
    _run(experiment, 2, 0.02, study="lr", trial=1)
    _run(experiment, 3, 0.30)  # a finished short try-out, newest
    _run(experiment, 4, 1e-6, state="running")  # still training: not finished, not taken
    run, path, line = checkpoints.resolve(experiment, "best")
    assert run.path.name == "version_0" and path.name == "best-epoch003.ckpt"
    assert line.startswith("--ckpt_path best: version_0, val/mse 0.00016, the best of 2 finished runs")
    assert "sweep trials left out" in line
    run, _, line = checkpoints.resolve(experiment, "best", study="lr")
    assert run.path.name == "version_2" and "of study 'lr'" in line
    assert checkpoints.resolve(experiment, "last")[0].path.name == "version_4"


def test_the_recorded_direction_decides(experiment):
    _run(experiment, 0, 0.91, mode="max", metric="val/acc")
    _run(experiment, 1, 0.88, mode="max", metric="val/acc")
    assert checkpoints.resolve(experiment, "best")[0].path.name == "version_0"
    _run(experiment, 2, 0.91, mode="max", metric="val/acc")  # a tie goes to the newer run
    assert checkpoints.resolve(experiment, "best")[0].path.name == "version_2"


def test_without_a_finished_run_every_run_counts_and_other_metrics_are_not_compared(experiment):
    _run(experiment, 0, 0.2, state="killed")
    _run(experiment, 1, 0.1, state="interrupted", metric="val/loss")  # another metric than the newest run's
    _run(experiment, 2, 0.5, state="failed")
    run, _, line = checkpoints.resolve(experiment, "best")
    assert run.path.name == "version_0" and "the best of 2 runs (none finished)" in line


def test_nothing_to_choose_is_one_line(experiment):
    _run(experiment, 0, 0.1, study="lr", trial=0)
    with pytest.raises(ValueError, match="no runs .sweep trials are left out. with a best checkpoint"):
        checkpoints.resolve(experiment, "best")
    with pytest.raises(ValueError, match="no trials of study 'other'"):
        checkpoints.resolve(experiment, "best", study="other")
