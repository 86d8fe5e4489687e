"""MLflow beside TensorBoard, against a real tracking server (tests/experiments/tracking/conftest.py): what a fit,
its resume, a test and an export of one run log, read back through the REST API and MLflow's client; sweep
trials as tagged runs.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from pathlib import Path

import pytest
import yaml

from datamodules.bundled.synthetic import write_mnist
from experiments.runs.flat_config import flatten, run_params
from tests.experiments.trained_runs import LENET
from tests.helpers import EXPERIMENTS, callback_arg, event_data, run_cli
from tests.servers import http_get

MLFLOW = ["-c", str(EXPERIMENTS / "presets/mlflow.yaml")]

pytestmark = pytest.mark.slow


def rest(uri: str, endpoint: str, **query: str) -> dict:
    status, body = http_get(f"{uri}/api/2.0/mlflow/{endpoint}?{urllib.parse.urlencode(query)}", timeout=10)
    assert status == 200, body[:500]
    return json.loads(body)


def artifact_paths(uri: str, run_id: str, path: str = "") -> set[str]:
    """Every file among a run's artifacts, through the REST API, folders walked."""
    query = {"run_id": run_id, **({"path": path} if path else {})}
    found: set[str] = set()
    for entry in rest(uri, "artifacts/list", **query).get("files", []):
        found |= artifact_paths(uri, run_id, entry["path"]) if entry["is_dir"] else {entry["path"]}
    return found


def test_a_run_its_resume_test_and_export_fill_one_mlflow_run(tmp_path, mlflow_server):
    write_mnist(tmp_path / "data", n_train=256, n_test=64)
    env = {"MLFLOW_TRACKING_URI": mlflow_server}
    fit = [*LENET, *MLFLOW, "--trainer.log_every_n_steps", "1", "--trainer.max_epochs", "2"]
    killed = run_cli("fit", *fit, "--trainer.callbacks+=" + callback_arg("KillAfterEpoch", epoch=0), cwd=tmp_path,
                     env=env, check=False)
    assert killed.returncode == -9  # SIGKILLed once epoch 0 was saved: its MLflow run is left running
    run = tmp_path / "lightning_logs/mnist_lenet/version_0"
    record = json.loads((run / "mlflow.json").read_text())
    assert record["tracking_uri"] == mlflow_server
    run_id = record["run_id"]
    assert rest(mlflow_server, "runs/get", run_id=run_id)["run"]["info"]["status"] == "RUNNING"

    resumed = run_cli("fit", *fit, "--ckpt_path", "last", "--trainer.enable_model_summary", "true", cwd=tmp_path,
                      env=env)
    assert "version_0" in resumed.stdout and not (run.parent / "version_1").exists()
    assert json.loads((run / "mlflow.json").read_text())["run_id"] == run_id  # the same MLflow run
    # test and export name no logger: the run's record takes them to its MLflow run
    run_cli("test", *LENET, "--ckpt_path", "best", cwd=tmp_path)
    exported = run_cli("export", *LENET, "--ckpt_path", "best", cwd=tmp_path)
    assert f"Logged to MLflow run {run_id}" in exported.stdout

    data = rest(mlflow_server, "runs/get", run_id=run_id)["run"]
    info, tags = data["info"], {t["key"]: t["value"] for t in data["data"]["tags"]}
    params = {p["key"]: p["value"] for p in data["data"]["params"]}
    assert info["status"] == "FINISHED" and info["run_name"] == "mnist_lenet/version_0"
    assert tags["litexp.experiment"] == "mnist_lenet" and tags["litexp.version"] == "0"
    assert tags["litexp.run_folder"] == str(run)
    # the params are the flattened config, as HPARAMS shows it; the resume's one new value is a tag
    expected = run_params("mnist_lenet", 0, "val/acc", flatten(yaml.safe_load((run / "config.yaml").read_text())))
    changed = "trainer.enable_model_summary"
    assert params.pop(changed) == "False" and tags[f"resumed_with.{changed}"] == str(expected.pop(changed)) == "True"
    assert params == {k: str(v) for k, v in expected.items()}
    assert params["model.net"] == "lit_models.nets.LeNet5"
    experiment = rest(mlflow_server, "experiments/get", experiment_id=info["experiment_id"])["experiment"]
    assert experiment["name"] == "mnist_lenet"

    # every scalar TensorBoard has, MLflow has at the same steps with the same values (both epochs: one run)
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server)
    scalars, _ = event_data(run)
    compared = [tag for tag in scalars if not tag.startswith("hp/")]
    assert {"train/loss", "val/acc", "test/acc", "lr-Adam"} <= set(compared) and len(scalars["train/loss"]) == 4
    for tag in compared:
        history = sorted((m.step, m.value) for m in client.get_metric_history(run_id, tag))
        assert [s for s, _ in history] == sorted(s for s, _ in scalars[tag]), tag
        assert [v for _, v in history] == pytest.approx([v for _, v in sorted(scalars[tag])], rel=1e-6), tag
    assert len(client.get_metric_history(run_id, "val/acc")) == 2

    files = artifact_paths(mlflow_server, run_id)
    assert {"config.yaml", "config_test.yaml", "summary.json", "export/model.json", "export/model.onnx",
            "export/model.pt2"} <= files
    figures = {f for f in files if f.startswith("figures/")}
    assert any(re.fullmatch(r"figures/val/confusion_matrix/step_\d{7}\.png", f) for f in figures), figures
    assert any(f.startswith("figures/test/misclassified/") for f in figures), figures
    downloaded = Path(client.download_artifacts(run_id, "summary.json", str(tmp_path / "back")))
    summary = json.loads(downloaded.read_text())
    assert summary == json.loads((run / "summary.json").read_text())
    test_acc = client.get_metric_history(run_id, "test/acc")[-1].value
    assert summary["test"]["metrics"]["test/acc"] == pytest.approx(test_acc)
    model = json.loads(Path(client.download_artifacts(run_id, "export/model.json", str(tmp_path / "m"))).read_text())
    assert model == json.loads((run / "export/model.json").read_text())


def test_sweep_trials_are_mlflow_runs_tagged_with_study_and_trial(tmp_path, mlflow_server):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({"n_trials": 2, "sampler": {"name": "random", "seed": 0}, "parameters": {
        "model.init_args.lr_scheduler.init_args.max_lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True}}}))
    run_cli("sweep", "-c", str(EXPERIMENTS / "sin_mlp.yaml"), *MLFLOW, "--experiment", "sin_tracked",
            "--data.init_args.train_size", "128", "--data.init_args.val_size", "64", "--trainer.max_epochs", "2",
            "--sweep", str(sweep), "--study", "lr", cwd=tmp_path, env={"MLFLOW_TRACKING_URI": mlflow_server})
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("sin_tracked")
    runs = client.search_runs([experiment.experiment_id], order_by=["tags.trial ASC"])
    assert [(r.data.tags["study"], r.data.tags["trial"], r.info.status) for r in runs] == [
        ("lr", "0", "FINISHED"), ("lr", "1", "FINISHED")]
    for trial, mlflow_run in enumerate(runs):
        folder = Path(mlflow_run.data.tags["litexp.run_folder"])
        assert json.loads((folder / "mlflow.json").read_text())["run_id"] == mlflow_run.info.run_id
        summary = json.loads((folder / "summary.json").read_text())
        assert (summary["study"], summary["trial"]) == ("lr", trial)
        assert mlflow_run.data.params["trial"] == str(trial)
        assert mlflow_run.data.metrics["val/mse"] == pytest.approx(summary["last_val"]["val/mse"])
