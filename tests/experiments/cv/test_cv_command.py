"""``cv``: every (seed, fold) a normal run, the report and its interval, out-of-fold predictions, ``--compare``,
``--refit``, ``runs``, a resumed cv after SIGKILL, two workers on one study, and one-line errors. On sin(1/x) and
synthetic MNIST, small and fast.
"""

from __future__ import annotations

import csv
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from scipy import stats

from datamodules import SinDataModule
from datamodules.bundled.synthetic import write_mnist
from experiments.cv.statistics import corrected_interval
from tests.helpers import EXPERIMENTS, callback_arg, cli_env, run_cli

SIN = ["-c", str(EXPERIMENTS / "sin_mlp.yaml"), "--data.init_args.train_size", "96", "--data.init_args.val_size",
       "48", "--trainer.max_epochs", "2"]
POOL = 96 + 48


def cv_folder(root: Path, name: str = "sin_mlp", experiment: str = "sin_mlp") -> Path:
    return root / "lightning_logs" / experiment / "cv" / name


def versions(root: Path, experiment: str = "sin_mlp") -> list[Path]:
    return sorted((root / "lightning_logs" / experiment).glob("version_*"), key=lambda p: int(p.name[8:]))


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_a_cv_is_runs_a_report_with_its_interval_and_out_of_fold_predictions(tmp_path):
    result = run_cli("cv", *SIN, "--folds", "3", "--seeds", "2", cwd=tmp_path)
    folder = cv_folder(tmp_path)
    summary = json.loads((folder / "summary.json").read_text())
    runs = versions(tmp_path)
    assert len(runs) == 6 and [(r["seed"], r["fold"]) for r in summary["runs"]] == [(s, f) for s in (0, 1)
                                                                                   for f in range(3)]
    values = []
    for record, run in zip(summary["runs"], runs, strict=True):  # each run a normal run, tagged
        own = json.loads((run / "summary.json").read_text())
        assert (own["cv"], own["seed"], own["fold"], own["state"]) == ("sin_mlp", record["seed"], record["fold"],
                                                                      "finished")
        assert Path(record["run"]) == run
        assert record["metrics"]["val/mse"] == pytest.approx(own["best"]["value"])
        saved = yaml.safe_load((run / "config.yaml").read_text())
        assert saved["cv_fold"] == {"folds": 3, "fold": record["fold"], "seed": record["seed"], "group_by": None}
        assert saved["seed_everything"] == record["seed"]
        values.append(own["best"]["value"])
    metric = summary["metrics"]["val/mse"]
    expected = corrected_interval(values, 3)
    assert metric["values"] == pytest.approx(values) and metric["mean"] == pytest.approx(expected.mean)
    assert metric["ci95"] == pytest.approx(list(expected.ci95)) and metric["std"] == pytest.approx(expected.std)
    assert f"val/mse: {expected.mean:.4g} +- {expected.half_width:.2g}" in result.stdout
    assert (folder / "scores.png").stat().st_size > 5000 and list((folder / "tensorboard").glob("events.*"))

    # out of fold: every pool sample once per seed, by the run that held it out, with its own target
    data = SinDataModule(train_size=96, val_size=48)
    data.setup()
    targets = torch.cat([data.train[1], data.val[1]]).flatten().tolist()
    folds = {(row["seed"], row["source"]): row["fold"] for row in read_csv(folder / "folds.csv")}
    rows = read_csv(folder / "oof_predictions.csv")
    assert list(rows[0])[:5] == ["source", "seed", "fold", "target", "prediction"]
    for seed in ("0", "1"):
        mine = [r for r in rows if r["seed"] == seed]
        assert sorted(int(r["source"]) for r in mine) == list(range(POOL))
        for r in mine:
            assert float(r["target"]) == pytest.approx(targets[int(r["source"])], abs=1e-6)
            assert folds[(seed, r["source"])] == r["fold"]
    assert summary["oof_complete"] is True
    seed0 = [int(r["fold"]) for r in sorted((r for r in rows if r["seed"] == "0"), key=lambda r: int(r["source"]))]
    seed1 = [int(r["fold"]) for r in sorted((r for r in rows if r["seed"] == "1"), key=lambda r: int(r["source"]))]
    assert seed0 != seed1  # another seed, another assignment

    # runs: the cv is one row; the same command again trains nothing
    listed = run_cli("runs", "sin_mlp", cwd=tmp_path).stdout
    assert "cv sin_mlp" in listed and f"val/mse={expected.mean:.4g}+-" in listed and "version_" not in listed
    assert len(listed.strip().splitlines()) == 2
    again = run_cli("cv", *SIN, "--folds", "3", "--seeds", "2", cwd=tmp_path)
    assert "6 of 6 runs done" in again.stdout and len(versions(tmp_path)) == 6


@pytest.mark.slow
def test_compare_pairs_two_cvs_run_for_run_and_refuses_unpaired_ones(tmp_path):
    lr = "--model.init_args.lr_scheduler.init_args.max_lr"
    run_cli("cv", *SIN, "--folds", "3", "--seeds", "2", "--name", "a", cwd=tmp_path)
    run_cli("cv", *SIN, "--folds", "3", "--seeds", "2", "--name", "b", lr, "0.002", cwd=tmp_path)
    a, b = cv_folder(tmp_path, "a"), cv_folder(tmp_path, "b")
    sa, sb = (json.loads((f / "summary.json").read_text()) for f in (a, b))
    assert sa["assignments"] == sb["assignments"]  # the folds do not depend on the model's options
    result = run_cli("cv", "--compare", str(a), str(b), cwd=tmp_path)
    written = json.loads((a / "compare.json").read_text())
    d = np.array(sa["metrics"]["val/mse"]["values"]) - np.array(sb["metrics"]["val/mse"]["values"])
    se = np.sqrt((1 / 6 + 1 / 2) * d.var(ddof=1))
    assert written["n"] == 6 and written["mean_difference"] == pytest.approx(d.mean())
    assert written["p_value"] == pytest.approx(2 * stats.t.sf(abs(d.mean() / se), 5))
    half = stats.t.ppf(0.975, 5) * se
    assert written["ci95"] == pytest.approx([d.mean() - half, d.mean() + half])
    assert f"p = {written['p_value']:.4g}" in result.stdout
    run_cli("cv", *SIN, "--folds", "2", "--seeds", "2", "--name", "k2", cwd=tmp_path)
    bad = run_cli("cv", "--compare", str(a), str(cv_folder(tmp_path, "k2")), cwd=tmp_path, check=False)
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode == 2 and len(lines) == 1 and "not paired: folds 3 and 2" in lines[0], bad.stderr


@pytest.mark.slow
def test_refit_trains_the_whole_pool_for_the_median_best_epoch_count(tmp_path):
    run_cli("cv", *SIN, "--folds", "2", "--seeds", "1", "--trainer.max_epochs", "3", "--refit", "true", cwd=tmp_path)
    summary = json.loads((cv_folder(tmp_path) / "summary.json").read_text())
    epochs = sorted(r["best_epoch"] + 1 for r in summary["runs"])
    refit = Path(summary["refit_run"])
    own = json.loads((refit / "summary.json").read_text())
    assert summary["refit_epochs"] == round(sum(epochs) / 2) and own["epochs"] == summary["refit_epochs"]
    assert (refit / "checkpoints/last.ckpt").is_file() and own["state"] == "finished"
    config = yaml.safe_load((refit / "config.yaml").read_text())
    assert config["cv_fold"]["fold"] is None and config["trainer"]["limit_val_batches"] == 0
    predicted = run_cli("predict", *SIN, "--ckpt_path", str(refit / "checkpoints/last.ckpt"), cwd=tmp_path)
    assert "Predictions:" in predicted.stdout


def trial_states(db: Path) -> list[tuple[str, int | None]]:
    with sqlite3.connect(db) as connection:
        return list(connection.execute("SELECT state, number FROM trials ORDER BY number"))


@pytest.mark.process
def test_a_cv_killed_by_sigkill_continues_and_redoes_only_the_unfinished_run(tmp_path):
    marker = tmp_path / "killed"
    args = ["cv", *SIN, "--folds", "2", "--seeds", "2",
            "--trainer.callbacks+=" + callback_arg("KillOnceInRun", version=1, marker=str(marker))]
    first = run_cli(*args, cwd=tmp_path, check=False)
    assert first.returncode == -9 and marker.exists()
    finished = (versions(tmp_path)[0] / "summary.json").read_text()
    second = run_cli(*args, cwd=tmp_path)
    assert "interrupted" in second.stdout and "1 of 4 runs done" in second.stdout, second.stdout
    assert (versions(tmp_path)[0] / "summary.json").read_text() == finished  # not trained again
    assert len(versions(tmp_path)) == 5  # the finished one, the killed one, and three more
    summary = json.loads((cv_folder(tmp_path) / "summary.json").read_text())
    assert Path(summary["runs"][0]["run"]) == versions(tmp_path)[0]
    assert str(versions(tmp_path)[1]) not in {r["run"] for r in summary["runs"]}
    assert [s for s, _ in trial_states(cv_folder(tmp_path) / "cv.db")].count("COMPLETE") == 4


@pytest.mark.slow
def test_two_workers_on_one_sqlite_study_share_the_grid_without_running_a_run_twice(tmp_path):
    db = tmp_path / "shared.db"
    args = [sys.executable, "-m", "experiments", "cv", *SIN, "--folds", "3", "--seeds", "2", "--storage",
            f"sqlite:///{db}", "--study", "shared"]
    workers = [subprocess.Popen(args, cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for _ in range(2)]
    outputs = [w.communicate(timeout=600) for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs
    trained = [line.split(":")[0] for out, _ in outputs for line in out.splitlines() if line.endswith(": training")]
    assert sorted(trained) == sorted(f"seed {s} fold {f}" for s in (0, 1) for f in range(3))  # each point once
    assert all(any("training" in line for line in out.splitlines()) for out, _ in outputs)  # both worked
    assert len(versions(tmp_path)) == 6
    with sqlite3.connect(db) as connection:
        done = list(connection.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'"))[0][0]
    assert done == 6


@pytest.fixture(scope="module")
def mnist(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mnist")
    write_mnist(root / "data", n_train=300, n_test=50)
    return root


def mnist_args(root: Path) -> list[str]:
    return ["-c", str(EXPERIMENTS / "mnist_mlp.yaml"), "--data.init_args.data_dir", str(root / "data"),
            "--data.init_args.download", "false", "--trainer.max_epochs", "1"]


@pytest.mark.slow
def test_a_bundled_classification_set_is_cross_validated_stratified(mnist, tmp_path):
    run_cli("cv", *mnist_args(mnist), "--data.init_args.subset", "120", "--folds", "3", cwd=tmp_path)
    folder = cv_folder(tmp_path, "mnist_mlp", "mnist_mlp")
    rows = read_csv(folder / "oof_predictions.csv")
    folds = read_csv(folder / "folds.csv")
    assert len(rows) == 120 and sorted(r["source"] for r in rows) == sorted(r["source"] for r in folds)
    labels = {r["source"]: r["target"] for r in folds}
    assert all(labels[r["source"]] == r["target"] for r in rows)
    for fold in "012":  # every class in every fold, in proportion
        counts = np.bincount([int(r["target"]) for r in folds if r["fold"] == fold], minlength=10)
        assert counts.min() >= 3 and counts.max() - counts.min() <= 2, counts
    assert {"p_0", "p_9", "probability"} <= set(rows[0])
    # label checks from those predictions: flagged pool samples, their given label the pool's
    issues = read_csv(folder / "label_issues.csv")
    assert issues and set(issues[0]) == {"source", "label", "suggested", "score", "p_suggested"}
    assert all(labels[r["source"]] == r["label"] for r in issues)
    assert (folder / "label_issues.png").stat().st_size > 1000


@pytest.mark.parametrize("extra, expected", [
    (["--folds", "1"], "--folds 1: cross-validation needs at least 2 folds"),
    (["--data.init_args.subset", "20", "--folds", "3"], "--folds 3: class 0 has 2 samples"),
    (["--group_by", "^x"], "--group_by '^x': MNISTDataModule's samples have no groups"),
    (["--seed_everything", "3"], "--seed_everything: cv sets it for every run"),
])
def test_impossible_cvs_are_one_line_before_any_run(mnist, tmp_path, extra, expected):
    result = run_cli("cv", *mnist_args(mnist), *extra, cwd=tmp_path, check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and expected in lines[0], result.stderr
    assert not versions(tmp_path, "mnist_mlp")
