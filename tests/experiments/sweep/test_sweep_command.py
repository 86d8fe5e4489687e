"""Sweeps: every trial a normal run, the study resumable after SIGKILL, pruning, failures, parallel workers,
and one-line errors before any trial. On sin(1/x), small and fast.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import EXPERIMENTS, callback_arg, cli_env, run_cli

SIN = ["-c", str(EXPERIMENTS / "sin_mlp.yaml"), "--data.init_args.train_size", "128", "--data.init_args.val_size",
       "64", "--trainer.max_epochs", "3", "--trainer.check_val_every_n_epoch", "1"]
LR = "model.init_args.lr_scheduler.init_args.max_lr"


def sweep_file(folder: Path, n_trials: int = 3, **extra) -> Path:
    spec = {"n_trials": n_trials, "sampler": {"name": "tpe", "seed": 1},
            "parameters": {LR: {"type": "float", "low": 1e-3, "high": 3e-2, "log": True},
                           "data.init_args.batch_size": {"type": "categorical", "choices": [32, 64]}}, **extra}
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def trial_states(db: Path) -> list[str]:
    with sqlite3.connect(db) as connection:
        return [row[0] for row in connection.execute("SELECT state FROM trials ORDER BY number")]


def runs_of(root: Path) -> list[Path]:
    return sorted((root / "lightning_logs/sin_mlp").glob("version_*"))


@pytest.mark.slow
def test_three_trials_make_three_runs_a_study_and_a_best_config_that_fits(tmp_path):
    result = run_cli("sweep", *SIN, "--sweep", str(sweep_file(tmp_path)), cwd=tmp_path)
    lines = [line for line in result.stdout.splitlines() if re.match(r"trial \d+:", line)]
    assert [line.split(":")[0] for line in lines] == ["trial 0", "trial 1", "trial 2"], result.stdout
    assert "%|" not in result.stdout + result.stderr  # no progress bars
    db = tmp_path / "lightning_logs/sin_mlp/sweeps/sweep.db"
    assert trial_states(db) == ["COMPLETE"] * 3 and len(runs_of(tmp_path)) == 3
    summaries = [yaml.safe_load((run / "summary.json").read_text()) for run in runs_of(tmp_path)]
    assert [(s["study"], s["trial"], s["state"]) for s in summaries] == [("sweep", i, "finished") for i in range(3)]
    best = tmp_path / "lightning_logs/sin_mlp/sweeps/sweep-best.yaml"
    config = yaml.safe_load(best.read_text())
    values = [s["best"]["value"] for s in summaries]
    chosen = values.index(min(values))  # val/mse: lower is better
    assert f"trial {chosen}" in best.read_text().splitlines()[0]
    lr = yaml.safe_load((runs_of(tmp_path)[chosen] / "config.yaml").read_text())["model"]["init_args"][
        "lr_scheduler"]["init_args"]["max_lr"]
    assert config["model"]["init_args"]["lr_scheduler"]["init_args"]["max_lr"] == lr
    run_cli("fit", "-c", str(best), "--trainer.max_epochs", "1", cwd=tmp_path)  # runs as it is
    assert len(runs_of(tmp_path)) == 4
    listed = run_cli("runs", "sin_mlp", "--csv", cwd=tmp_path).stdout
    assert listed.count("\n") == 5  # header + 4 runs


@pytest.mark.process
def test_sigkill_in_the_second_trial_resumes_the_study(tmp_path):
    marker = tmp_path / "killed"
    args = ["sweep", *SIN, "--sweep", str(sweep_file(tmp_path)),
            "--trainer.callbacks+=" + callback_arg("KillOnceInRun", version=1, marker=str(marker))]
    first = run_cli(*args, cwd=tmp_path, check=False)
    assert first.returncode == -9 and marker.exists()
    db = tmp_path / "lightning_logs/sin_mlp/sweeps/sweep.db"
    assert trial_states(db) == ["COMPLETE", "RUNNING"]
    finished_before = (runs_of(tmp_path)[0] / "summary.json").read_text()
    second = run_cli(*args, cwd=tmp_path)  # the same command
    assert "trial 1: interrupted" in second.stdout
    states = trial_states(db)
    assert states.count("COMPLETE") == 3 and states.count("FAIL") == 1 and states[1] == "FAIL"
    # four runs: trial 0's (not run again), the killed one, its retry and one more
    assert len(runs_of(tmp_path)) == 4
    assert (runs_of(tmp_path)[0] / "summary.json").read_text() == finished_before
    with sqlite3.connect(db) as connection:
        params = {}
        for number, name, value in connection.execute(
                "SELECT t.number, p.param_name, p.param_value FROM trial_params p JOIN trials t USING (trial_id)"):
            params.setdefault(number, {})[name] = value
    assert params[2] == params[1]  # the retry runs the interrupted trial's parameters
    listed = run_cli("runs", "sin_mlp", "--csv", cwd=tmp_path).stdout
    assert ",killed," in listed


@pytest.mark.slow
def test_a_pruner_prunes_and_a_failing_trial_does_not_stop_the_sweep(tmp_path):
    decay = "model.init_args.optimizer.init_args.weight_decay"
    # trial k draws with seed + k (experiments/sweep/trial_seeds.py): with seed 5, trials 1 and 2 draw 1e-5
    spec = sweep_file(tmp_path, n_trials=2, pruner={"name": "threshold", "upper": 0.0}, enqueue=[{decay: -1.0}],
                      sampler={"name": "tpe", "seed": 5})
    spec_data = yaml.safe_load(spec.read_text())
    spec_data["parameters"][decay] = {"type": "categorical", "choices": [-1.0, 1.0e-5]}  # torch refuses -1
    spec.write_text(yaml.safe_dump(spec_data))
    result = run_cli("sweep", *SIN, "--sweep", str(spec), "--trainer.max_epochs", "5", cwd=tmp_path)
    states = trial_states(tmp_path / "lightning_logs/sin_mlp/sweeps/sweep.db")
    assert states[0] == "FAIL" and states.count("PRUNED") == 2 and set(states) == {"FAIL", "PRUNED"}, result.stdout
    failed = [line for line in result.stdout.splitlines() if re.match(r"trial \d+: fail", line)]
    assert len(failed) == states.count("FAIL") and all("weight_decay" in line for line in failed), result.stdout
    pruned_runs = [run for run in runs_of(tmp_path) if (run / "summary.json").exists()
                   and yaml.safe_load((run / "summary.json").read_text()).get("state") != "failed"]
    assert len(pruned_runs) == 2
    for run in pruned_runs:  # pruned at the first validation: one epoch of five
        summary = yaml.safe_load((run / "summary.json").read_text())
        assert summary["epochs"] == 1 and summary["state"] == "stopped early"


@pytest.mark.slow
def test_two_workers_share_one_study_without_running_a_trial_twice(tmp_path):
    args = [sys.executable, "-m", "experiments", "sweep", *SIN, "--sweep", str(sweep_file(tmp_path, n_trials=4))]
    workers = [subprocess.Popen(args, cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for _ in range(2)]
    outputs = [w.communicate(timeout=600) for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs
    states = trial_states(tmp_path / "lightning_logs/sin_mlp/sweeps/sweep.db")
    assert states.count("COMPLETE") == 4
    ran = [line for out, _ in outputs for line in out.splitlines() if re.match(r"trial \d+:", line)]
    assert len(ran) == 4 and len({line.split(":")[0] for line in ran}) == 4  # each trial once
    assert len(runs_of(tmp_path)) == 4


@pytest.mark.parametrize("change, expected", [
    ({"parameters": {"model.init_args.no_such_option": {"type": "float", "low": 0.1, "high": 1.0}}},
     "model.init_args.no_such_option"),
    ({"parameters": {LR: {"type": "float", "low": 0.1, "high": 0.1}}}, "empty or inverted range"),
    ({"parameters": {LR: {"type": "float", "low": 0.2, "high": 0.1}}}, "empty or inverted range"),
    ({"sampler": {"name": "annealing"}}, "unknown sampler 'annealing'"),
])
def test_bad_sweep_files_are_one_line_before_any_trial(tmp_path, change, expected):
    spec = yaml.safe_load(sweep_file(tmp_path).read_text())
    spec.update(change)
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(spec))
    result = run_cli("sweep", *SIN, "--sweep", str(tmp_path / "sweep.yaml"), cwd=tmp_path, check=False)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert result.returncode == 2 and len(errors) == 1 and expected in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr and not runs_of(tmp_path)
