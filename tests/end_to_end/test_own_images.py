"""A folder of photos through the CLI, as a user runs it: fit a torchvision backbone on it, test, predict a labelled
folder (its accuracy equals test's on the same files), export (parity) and serve a photo of another size (the answer
predict gives for that file).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import torchvision
from PIL import Image

from tests.experiments.trained_runs import read_csv
from tests.helpers import EXPERIMENTS, cli_env, run_cli
from tests.image_folders import write_awkward_files, write_image_folder
from tests.servers import free_port, http_post, multipart, stop, wait_healthy

pytestmark = pytest.mark.slow


def test_fit_test_predict_export_and_serve_a_folder_of_photos(tmp_path):
    photos = tmp_path / "photos"
    for split, counts, seed in (("train", (16, 12, 10), 0), ("val", (4, 4, 4), 1), ("test", (5, 4, 3), 2)):
        write_image_folder(photos / split, per_class=counts, size=(48, 36), seed=seed)
    write_awkward_files(photos / "train" / "ant" / "odd")  # decodable ones join ant, broken ones are skipped
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "resnet18.pth")
    args = ["-c", str(EXPERIMENTS / "folder_resnet18.yaml"), "--data.root", str(photos), "--data.image_size", "32",
            "--data.batch_size", "16", "--model.init_args.net.init_args.weights", str(tmp_path / "resnet18.pth"),
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    fit = run_cli("fit", *args, "--trainer.max_epochs", "8", cwd=tmp_path)
    assert "Data: " in fit.stderr + fit.stdout and "skipped 2 file(s)" in fit.stderr
    run = tmp_path / "lightning_logs/folder_resnet18/version_0"
    report = json.loads((run / "data_report.json").read_text())
    assert report["images"]["test"] == {"ant": 5, "bee": 4, "cat": 3} and len(report["skipped"]) == 2
    assert json.loads((run / "summary.json").read_text())["state"] == "finished"

    run_cli("test", *args, "--ckpt_path", "best", cwd=tmp_path)
    test_acc = json.loads((run / "summary.json").read_text())["test"]["metrics"]["test/acc"]
    assert test_acc > 0.9  # the classes differ by colour: learnt within eight epochs (backbone at the full rate)
    predicted = run_cli("predict", *args, "--ckpt_path", "best", "--data.predict_dir", str(photos / "test"),
                        cwd=tmp_path)
    header, rows = read_csv(run / "predictions/test.csv")
    assert len(rows) == 12 and {r["source"].split("/")[0] for r in rows} == {"ant", "bee", "cat"}
    accuracy = sum(r["target"] == r["prediction"] for r in rows) / len(rows)
    assert accuracy == pytest.approx(test_acc, abs=1e-6) and f"accuracy = {accuracy:.4g}" in predicted.stdout

    run_cli("export", *args, "--ckpt_path", "best", cwd=tmp_path)
    model = json.loads((run / "export/model.json").read_text())
    assert model["input"]["shape"] == ["N", 3, 37, 37]
    assert model["preprocessing"]["resize_rule"] == "crop" and model["preprocessing"]["center_crop"] == 32

    # a photo of another size and shape: serve prepares it as predict does
    big = tmp_path / "big"
    big.mkdir()
    Image.open(next((photos / "test" / "bee").rglob("*.png"))).resize((300, 170)).save(big / "bee.png")
    run_cli("predict", *args, "--ckpt_path", "best", "--data.predict_dir", str(big), cwd=tmp_path)
    _, (row,) = read_csv(run / "predictions/big.csv")
    port = free_port()
    log = open(tmp_path / "serve.log", "w")
    process = subprocess.Popen([sys.executable, "-m", "experiments", "serve", *args, "--ckpt_path", "best", "--port",
                                str(port)], cwd=tmp_path, env=cli_env(), stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        wait_healthy(f"http://127.0.0.1:{port}/health", process)
        body, content_type = multipart("image", "bee.png", (big / "bee.png").read_bytes())
        status, answer = http_post(f"http://127.0.0.1:{port}/predict", body, content_type)
        assert status == 200, answer
        assert answer["name"] == row["name"]
        for name, p in answer["probabilities"].items():
            assert p == pytest.approx(float(row[f"p_{name}"]), abs=2e-6)
    finally:
        stop(process)
        log.close()
