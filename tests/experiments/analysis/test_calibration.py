"""Temperature scaling: fitted on the validation split, stored in the checkpoint, applied by test, predict, export
and serve; every arg-max unchanged.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import multiclass_calibration_error

from datamodules import MNISTDataModule
from experiments.analysis.calibration import fit_temperature, scores
from tests.experiments.deploy.test_serve import _start as start_serving
from tests.experiments.trained_runs import LENET, SIN, one_error_line, write_png
from tests.helpers import run_cli
from tests.servers import free_port, http_post, multipart, stop


def over_confident(n: int = 4000, k: int = 5, sharpen: float = 4.0, seed: int = 0):
    """Labels drawn from softmax(z): the calibrated logits are z, and the model's are ``sharpen`` * z."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, k, generator=g) * 1.5
    targets = torch.multinomial(z.softmax(1), 1, generator=g).flatten()
    return z * sharpen, targets


def test_the_temperature_undoes_over_confidence_and_keeps_every_arg_max():
    logits, targets = over_confident()
    temperature = fit_temperature(logits, targets)
    assert temperature == pytest.approx(4.0, rel=0.1)  # the sharpening it must find
    before, after = scores(logits, targets, 1.0), scores(logits, targets, temperature)
    assert after["nll"] < before["nll"] - 0.3 and after["ece"] < before["ece"] / 3
    assert after["acc"] == before["acc"]
    assert torch.equal((logits / temperature).argmax(1), logits.argmax(1))
    # the NLL is the minimum: a little either side is worse
    for other in (temperature * 0.9, temperature * 1.1):
        assert F.cross_entropy(logits.double() / other, targets) > after["nll"]
    probs = (logits.double() / temperature).softmax(1).float()
    assert after["ece"] == pytest.approx(float(multiclass_calibration_error(probs, targets, 5, n_bins=15)), abs=1e-6)


def calibrated_copy(trained, tmp_path):
    """The session's runs copied (calibrating rewrites a checkpoint), then its LeNet run calibrated."""
    root = tmp_path / "runs"
    shutil.copytree(trained, root, ignore=shutil.ignore_patterns("serve*", "*.log"))
    return root, root / "lightning_logs/mnist_lenet/version_0"


@pytest.mark.slow
def test_calibrate_stores_the_temperature_that_test_predict_and_export_apply(trained, tmp_path):
    import onnxruntime

    root, run = calibrated_copy(trained, tmp_path)
    tested = json.loads((run / "summary.json").read_text())["test"]["metrics"]
    run_cli("predict", *LENET, "--ckpt_path", "best", cwd=root)
    plain = torch.load(run / "predictions/test.pt", weights_only=True)["probabilities"]
    result = run_cli("calibrate", *LENET, "--ckpt_path", "best", cwd=root)
    assert "temperature" in result.stdout and "validation ECE" in result.stdout
    (name, record), = json.loads((run / "calibration.json").read_text()).items()
    best = run / "checkpoints" / name
    temperature = record["temperature"]
    assert abs(temperature - 1) > 1e-3 and record["samples"] > 0
    before, after = record["validation"]["before"], record["validation"]["after"]
    assert after["nll"] <= before["nll"] and after["acc"] == before["acc"]
    saved = torch.load(best, weights_only=True)
    assert float(saved["state_dict"]["temperature"]) == pytest.approx(temperature)
    assert saved["calibration"]["temperature"] == temperature
    # test: the same accuracy to the last digit, the loss that of the scaled probabilities
    run_cli("test", *LENET, "--ckpt_path", "best", cwd=root)
    calibrated = json.loads((run / "summary.json").read_text())["test"]["metrics"]
    assert calibrated["test/acc"] == tested["test/acc"] and calibrated["test/loss"] != tested["test/loss"]
    # predict: probabilities of logits / T, the same classes
    run_cli("predict", *LENET, "--ckpt_path", "best", cwd=root)
    scaled = torch.load(run / "predictions/test.pt", weights_only=True)["probabilities"]
    assert torch.equal(scaled.argmax(1), plain.argmax(1))
    expected = (plain.double().clamp(min=1e-30).log() / temperature).softmax(1).float()
    torch.testing.assert_close(scaled, expected, atol=2e-5, rtol=0)
    # export: the graph divides by T; its answers are predict's
    run_cli("export", *LENET, "--ckpt_path", "best", cwd=root)
    info = json.loads((run / "export/model.json").read_text())
    assert info["output"]["temperature"] == pytest.approx(temperature)
    dm = MNISTDataModule(data_dir=str(root / "data"), download=False)
    dm.setup()
    images = dm.test[0][:16].unsqueeze(1)
    session = onnxruntime.InferenceSession(str(run / "export/model.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"images": images.numpy()})[0], scaled[:16].numpy(), atol=1e-5)


def test_calibrate_refuses_a_regressor_and_fit_options_elsewhere(trained):
    line = one_error_line(run_cli("calibrate", *SIN, "--ckpt_path", "best", cwd=trained, check=False))
    assert "has no temperature" in line
    line = one_error_line(run_cli("test", *SIN, "--ckpt_path", "best", "--calibrate", "true", cwd=trained,
                                  check=False))
    assert "--calibrate is an option of fit" in line


@pytest.mark.slow
def test_fit_with_calibrate_tests_the_calibrated_checkpoint(tmp_path, trained):
    shutil.copytree(trained / "data", tmp_path / "data")
    result = run_cli("fit", *LENET, "--trainer.max_epochs", "1", "--calibrate", "true", "--test_after_fit", "true",
                     cwd=tmp_path)
    assert "temperature" in result.stdout
    run = tmp_path / "lightning_logs/mnist_lenet/version_0"
    (name, record), = json.loads((run / "calibration.json").read_text()).items()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test"]["checkpoint"].endswith(name)
    saved = torch.load(run / "checkpoints" / name, weights_only=True)
    assert float(saved["state_dict"]["temperature"]) == pytest.approx(record["temperature"])


@pytest.mark.server
def test_serve_answers_with_the_calibrated_probabilities(trained, tmp_path):
    root, run = calibrated_copy(trained, tmp_path)
    run_cli("calibrate", *LENET, "--ckpt_path", "best", cwd=root)
    folder = root / "images"
    folder.mkdir()
    write_png(torch.randint(0, 256, (1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(3)),
              str(folder / "digit.png"))
    run_cli("predict", *LENET, "--ckpt_path", "best", "--data.predict_dir", str(folder), cwd=root)
    predicted = torch.load(run / "predictions/images.pt", weights_only=True)["probabilities"][0]
    port = free_port()
    process, log = start_serving(root, LENET, port, "serve.log")  # bounded wait for /health
    try:
        body, content_type = multipart("image", "digit.png", (folder / "digit.png").read_bytes())
        status, answer = http_post(f"http://127.0.0.1:{port}/predict", body, content_type)
        assert status == 200, answer
        served = torch.tensor([answer["probabilities"][str(i)] for i in range(10)])
        torch.testing.assert_close(served, predicted, atol=2e-6, rtol=0)
    finally:
        stop(process)
        log.close()
