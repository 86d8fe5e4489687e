"""TensorBoard, started as a user would, serves the runs' scalars, figures and HPARAMS with their metrics."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.servers import free_port, stop, wait_healthy


def _json(url: str, payload: dict | None = None) -> dict:
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.server
def test_tensorboard_serves_scalars_figures_and_hparams_with_metrics(trained):
    port = free_port()
    tensorboard = Path(sys.executable).with_name("tensorboard")
    process = subprocess.Popen([str(tensorboard), "--logdir", str(trained / "lightning_logs"), "--host", "127.0.0.1",
                                "--port", str(port), "--reload_interval", "0"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}/data"
    try:
        wait_healthy(f"{base}/plugins_listing", process, limit=60)
        statuses = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]
        query = {"experimentName": "", "allowedStatuses": statuses, "colParams": [], "startIndex": 0, "sliceSize": 50}
        runs = {"mnist_lenet/version_0", "sin_mlp/version_0", "sin_mlp/version_1"}
        deadline = time.monotonic() + 60
        while True:  # TensorBoard reads the event files in the background after it starts answering
            scalars = _json(f"{base}/plugin/scalars/tags")
            images = _json(f"{base}/plugin/images/tags")
            hparams_on = _json(f"{base}/plugins_listing")["hparams"]["enabled"]
            groups = _json(f"{base}/plugin/hparams/session_groups", query)["sessionGroups"] if hparams_on else []
            by_run = {g["name"]: g for g in groups}
            shown = {m["name"]["tag"] for m in by_run.get("mnist_lenet/version_0", {}).get("metricValues", [])}
            if runs <= set(by_run) and {"hp/best", "hp/test"} <= shown and "test/acc" in scalars.get(
                    "mnist_lenet/version_0", {}):
                break
            assert time.monotonic() < deadline, f"TensorBoard never showed the runs: {sorted(scalars)} {sorted(by_run)}"
            time.sleep(0.5)
        assert {"val/acc", "val/acc_best", "train/loss_epoch", "test/acc"} <= set(scalars["mnist_lenet/version_0"])
        assert {"val/confusion_matrix", "test/confusion_matrix"} <= set(images["mnist_lenet/version_0"])
        lenet = by_run["mnist_lenet/version_0"]
        metrics = {m["name"]["tag"]: m["value"] for m in lenet["metricValues"]}
        summary = json.loads((trained / "lightning_logs/mnist_lenet/version_0/summary.json").read_text())
        assert metrics["hp/best"] == pytest.approx(summary["best"]["value"])
        assert metrics["hp/test"] == pytest.approx(summary["test"]["metrics"]["test/acc"])
        assert lenet["hparams"]["monitor"] == "val/acc"
        assert by_run["sin_mlp/version_0"]["hparams"]["monitor"] == "val/mse"
        assert lenet["hparams"]["model.optimizer"] == "torch.optim.Adam"
        assert {by_run[f"sin_mlp/version_{v}"]["hparams"]["model.lr_scheduler.max_lr"] for v in (0, 1)} == {0.005, 0.02}
    finally:
        stop(process)
