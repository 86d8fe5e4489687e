"""Loggers are added beside TensorBoard, not swapped for it: presets compose, CSV lands in the run folder, MLflow's
default store is local and not an experiment; a logger that cannot work is one line before any run folder.
"""

from __future__ import annotations

import csv
import json

from tests.experiments.trained_runs import SIN, one_error_line
from tests.helpers import EXPERIMENTS, event_data, run_cli
from tests.servers import free_port


def test_csv_and_mlflow_presets_add_to_tensorboard_in_the_run_folder(tmp_path):
    presets = ["-c", str(EXPERIMENTS / "presets/csv.yaml"), "-c", str(EXPERIMENTS / "presets/mlflow.yaml")]
    no_uri = {"MLFLOW_TRACKING_URI": ""}  # the default store is what this test is about
    result = run_cli("fit", *SIN, *presets, cwd=tmp_path, env=no_uri)
    assert "Logs: " in result.stdout
    run = tmp_path / "lightning_logs/sin_mlp/version_0"
    scalars, _ = event_data(run)  # TensorBoard as without the presets
    assert scalars["val/mse"] and (run / "config.yaml").is_file()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["state"] == "finished" and summary["hparams_logged"]
    with open(run / "csv/metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("val/mse")]
    assert [float(r["val/mse"]) for r in rows] == [v for _, v in sorted(scalars["val/mse"])]
    # MLflow's default store: SQLite under lightning_logs/mlruns, the run recorded, and no experiment of its own
    record = json.loads((run / "mlflow.json").read_text())
    assert record["tracking_uri"] == f"sqlite:///{tmp_path.resolve() / 'lightning_logs/mlruns/mlflow.db'}"
    from mlflow import MlflowClient

    mlflow_run = MlflowClient(record["tracking_uri"]).get_run(record["run_id"])
    assert mlflow_run.info.run_name == "sin_mlp/version_0" and mlflow_run.info.status == "FINISHED"
    assert mlflow_run.data.metrics["val/mse"] == summary["last_val"]["val/mse"]
    listed = run_cli("runs", "--csv", cwd=tmp_path, env=no_uri).stdout.splitlines()
    assert len(listed) == 2 and "sin_mlp" in listed[1] and "mlruns" not in "".join(listed)


def test_a_csv_logger_at_the_project_root_writes_into_the_run_not_beside_it(tmp_path):
    run_cli("fit", *SIN, "--trainer.logger+=CSVLogger", "--trainer.logger.save_dir=.", cwd=tmp_path)
    assert sorted(p.name for p in (tmp_path / "lightning_logs").iterdir()) == ["sin_mlp"]
    assert (tmp_path / "lightning_logs/sin_mlp/version_0/csv/metrics.csv").is_file()


def test_an_mlflow_server_that_does_not_answer_is_one_line_and_no_run(tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"
    for args, env in (([*SIN, "-c", str(EXPERIMENTS / "presets/mlflow.yaml")], {"MLFLOW_TRACKING_URI": uri}),
                      ([*SIN, "--trainer.logger+=MLFlowLogger", f"--trainer.logger.tracking_uri={uri}"], None)):
        line = one_error_line(run_cli("fit", *args, cwd=tmp_path, env=env, check=False))
        assert f"MLFlowLogger tracking_uri {uri}: no MLflow server answers" in line and "mlflow server" in line
        assert not (tmp_path / "lightning_logs").exists()


def test_an_unknown_logger_class_is_one_line_naming_it(tmp_path):
    line = one_error_line(run_cli("fit", *SIN, "--trainer.logger+=NoSuchLogger", cwd=tmp_path, check=False))
    assert "NoSuchLogger is not a logger class" in line and "--trainer.logger+=MLFlowLogger" in line
    assert not (tmp_path / "lightning_logs").exists()
