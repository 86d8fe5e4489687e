"""A kind of task the project does not ship (two independent tags per sample, sigmoid outputs) predicts,
exports and serves through the CLI with no edit to the writer, the exporter or the server: they read its
inference contract.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from torchmetrics import MeanMetric

from experiments.entry import main
from lit_models.inference import Inference, InferencePipeline
from lit_models.task import Task
from tests.helpers import cli_env
from tests.servers import free_port, http_post, stop, wait_healthy


class TwoTags(Task):
    """Tags each x of the sin(1/x) data: ``positive`` (sin(1/x) > 0) and ``near`` (x < 0.2)."""

    monitor = "val/loss"
    monitor_mode = "min"

    def build_metrics(self) -> None:
        self.val_loss = MeanMetric()

    @staticmethod
    def tags(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.cat([(y > 0).float(), (x < 0.2).float()], dim=1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.binary_cross_entropy_with_logits(self(x), self.tags(x, y))
        self.log_train_loss(loss, batch_idx)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        loss = F.binary_cross_entropy_with_logits(self(x), self.tags(x, y), reduction="none")
        self.val_loss.update(loss.mean(1))  # per sample: MeanMetric weighs each once

    def on_validation_epoch_end(self):
        self.log("val/loss", self.val_loss)

    def predict_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        x, *rest = batch
        out = {"x": x, "scores": torch.sigmoid(self(x).float())}
        if rest:
            out["target"] = self.tags(x, rest[0])
        if len(rest) > 1:
            out["index"] = rest[1]
        return out

    def inference(self, datamodule: Any) -> Inference:
        return Inference(InferencePipeline(self.net, head=nn.Sigmoid()), task="tagging", input_kind="tensor",
                         input_name="x", input_dtype=torch.float32, input_shape=(1,), output_kind="values",
                         output_name="scores", labels=["positive", "near"])


@pytest.fixture
def experiment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = {
        "model": {"class_path": f"{__name__}.TwoTags", "init_args": {
            "net": {"class_path": "lit_models.nets.Feedforward",
                    "init_args": {"in_features": 1, "out_features": 2, "hidden_sizes": [16]}},
            "figure_every_n_epochs": 0}},
        "data": {"class_path": "datamodules.SinDataModule",
                 "init_args": {"train_size": 128, "val_size": 64, "test_size": 40}},
        "trainer": {"max_epochs": 2, "enable_progress_bar": False, "enable_model_summary": False},
    }
    path = tmp_path / "two_tags.yaml"
    path.write_text(yaml.safe_dump(config))
    main(["fit", "-c", str(path)])
    return path


def test_a_new_kind_of_task_predicts_and_exports(experiment, tmp_path):
    run = tmp_path / "lightning_logs" / "two_tags" / "version_0"
    main(["predict", "-c", str(experiment), "--ckpt_path", "best"])
    with open(run / "predictions" / "test.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["index", "x", "target_positive", "target_near", "scores_positive", "scores_near"]
    assert len(rows) == 40 and all(0.0 <= float(r["scores_near"]) <= 1.0 for r in rows)

    main(["export", "-c", str(experiment), "--ckpt_path", "best", "--parity_batch", "8"])
    info = json.loads((run / "export" / "model.json").read_text())
    assert info["task"] == "tagging" and info["labels"] == ["positive", "near"]
    assert info["input"]["name"] == "x" and info["output"]["name"] == "scores"
    program = torch.export.load(str(run / "export" / "model.pt2")).module()
    x = torch.tensor([[0.1], [0.9]])
    expected = torch.tensor([[float(r["scores_positive"]), float(r["scores_near"])] for r in rows[:2]])
    inputs = torch.tensor([[float(r["x"])] for r in rows[:2]])
    torch.testing.assert_close(program(inputs), expected, atol=1e-5, rtol=0)
    assert program(x).shape == (2, 2)


@pytest.mark.server
def test_a_new_kind_of_task_serves_what_predict_wrote(experiment, tmp_path):
    run = tmp_path / "lightning_logs" / "two_tags" / "version_0"
    main(["predict", "-c", str(experiment), "--ckpt_path", "best"])
    with open(run / "predictions" / "test.csv", newline="") as f:
        rows = list(csv.DictReader(f))[:3]
    port = free_port()
    log = open(tmp_path / "serve.log", "w")  # a file, not a pipe nobody reads
    process = subprocess.Popen([sys.executable, "-m", "experiments", "serve", "-c", str(experiment), "--ckpt_path",
                                "best", "--port", str(port)], cwd=tmp_path, env=cli_env(), stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_healthy(f"http://127.0.0.1:{port}/health", process)
        body = json.dumps({"x": [float(r["x"]) for r in rows]}).encode()
        status, answer = http_post(f"http://127.0.0.1:{port}/predict", body, "application/json")
        assert status == 200, answer
        assert answer["labels"] == ["positive", "near"] and len(answer["scores"]) == 3
        expected = [[float(r["scores_positive"]), float(r["scores_near"])] for r in rows]
        torch.testing.assert_close(torch.tensor(answer["scores"]), torch.tensor(expected), atol=2e-6, rtol=0)
        status, answer = http_post(f"http://127.0.0.1:{port}/predict", b'{"y": [1]}', "application/json")
        assert status == 400 and '{"x":' in answer["detail"]
    finally:
        stop(process)
        log.close()
