"""Using the results: predict writes its table, export proves parity, serve answers over HTTP, runs lists,
and TensorBoard's HPARAMS dashboard compares runs. Each through the real CLI on synthetic files."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules import MNISTDataModule
from datamodules.synthetic import write_mnist
from tests.helpers import EXPERIMENTS, cli_env, run_cli

LENET = ["-c", str(EXPERIMENTS / "mnist_lenet.yaml"), "--data.init_args.download", "false",
         "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
SIN = ["-c", str(EXPERIMENTS / "sin_mlp.yaml"), "--data.init_args.train_size", "128",
       "--data.init_args.val_size", "64", "--data.init_args.test_size", "50", "--trainer.max_epochs", "2",
       "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def write_png(image: torch.Tensor, path: str) -> None:
    """A (C, H, W) uint8 tensor as a PNG file."""
    array = image.permute(1, 2, 0).numpy()
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert result.returncode == 2 and len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    return errors[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A folder with synthetic MNIST files, a 2-epoch LeNet run tested on its best checkpoint, and two sin runs."""
    root = tmp_path_factory.mktemp("results")
    write_mnist(root / "data", n_train=300, n_test=100)
    run_cli("fit", *LENET, "--trainer.max_epochs", "2", cwd=root)
    run_cli("test", *LENET, "--ckpt_path", "best", cwd=root)
    run_cli("fit", *SIN, cwd=root)
    run_cli("fit", *SIN, "--model.init_args.lr_scheduler.init_args.max_lr", "0.02", cwd=root)
    return root


# -- predict ------------------------------------------------------------------------------------------

def test_predict_writes_every_test_sample_with_test_s_accuracy(trained):
    result = run_cli("predict", *LENET, "--ckpt_path", "best", cwd=trained)
    run = trained / "lightning_logs/mnist_lenet/version_0"
    header, rows = read_csv(run / "predictions/test.csv")
    classes = [f"p_{i}" for i in range(10)]
    assert header == ["index", "source", "target", "prediction", "name", "probability", *classes]
    assert len(rows) == 100 and [int(r["index"]) for r in rows] == list(range(100))
    probs = np.array([[float(r[c]) for c in classes] for r in rows])
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)
    assert all(int(r["prediction"]) == int(np.argmax(p)) for r, p in zip(rows, probs, strict=True))
    assert all(r["name"] == r["prediction"] and float(r["probability"]) == float(r[f"p_{r['prediction']}"])
               for r in rows)
    targets = MNISTDataModule(data_dir=str(trained / "data"), download=False)
    targets.setup()
    assert [int(r["target"]) for r in rows] == targets.test[1].tolist()
    # the accuracy printed, computed from the rows, and test's own, on the same checkpoint and split
    accuracy = float(result.stdout.split("accuracy = ")[1].split(")")[0])
    from_rows = np.mean([int(r["prediction"]) == int(r["target"]) for r in rows])
    summary = json.loads((run / "summary.json").read_text())
    assert accuracy == pytest.approx(from_rows, abs=1e-6) == pytest.approx(summary["test"]["metrics"]["test/acc"])
    saved = torch.load(run / "predictions/test.pt", weights_only=True)
    assert saved["probabilities"].shape == (100, 10) and saved["class_names"] == [str(i) for i in range(10)]


def test_predict_on_a_split_and_on_a_folder_of_images(trained):
    run_cli("predict", *LENET, "--ckpt_path", "best", "--data.predict_split", "val", cwd=trained)
    predictions = trained / "lightning_logs/mnist_lenet/version_0/predictions"
    assert len(read_csv(predictions / "val.csv")[1]) == 60  # 20% of 300
    folder = trained / "my_images"
    folder.mkdir()
    write_png(torch.randint(0, 256, (3, 40, 30), dtype=torch.uint8), str(folder / "a.png"))  # RGB, other size
    write_png(torch.randint(0, 256, (1, 28, 28), dtype=torch.uint8), str(folder / "b.png"))
    (folder / "notes.txt").write_text("not an image")
    result = run_cli("predict", *LENET, "--ckpt_path", "best", "--data.predict_dir", str(folder), cwd=trained)
    _, rows = read_csv(predictions / "my_images.csv")
    assert [r["source"] for r in rows] == ["a.png", "b.png"] and all(r["target"] == "" for r in rows)
    skipped = [line for line in result.stderr.splitlines() if "notes.txt" in line]
    assert len(skipped) == 1 and "skipped 1 file" in skipped[0]
    assert "accuracy" not in result.stdout  # no labels, no score


def test_predict_bad_input_is_one_line(trained):
    empty = trained / "empty_folder"
    empty.mkdir(exist_ok=True)
    (empty / "readme.md").write_text("x")
    line = one_error_line(run_cli("predict", *LENET, "--ckpt_path", "best", "--data.predict_dir", str(empty),
                                  cwd=trained, check=False))
    assert "holds no PNG/JPEG images" in line and str(empty.name) in line
    line = one_error_line(run_cli("predict", *LENET, cwd=trained, check=False))
    assert "--ckpt_path" in line


def test_predict_sin_mse_equals_test(trained):
    predicted = run_cli("predict", *SIN, "--ckpt_path", "best", cwd=trained)
    tested = run_cli("test", *SIN, "--ckpt_path", "best", cwd=trained)
    run = trained / "lightning_logs/sin_mlp/version_1"
    header, rows = read_csv(run / "predictions/test.csv")
    assert header == ["index", "x", "target", "prediction"] and len(rows) == 50
    x = np.array([float(r["x"]) for r in rows])
    np.testing.assert_allclose([float(r["target"]) for r in rows], np.sin(1 / x), rtol=1e-5, atol=1e-6)
    mse = float(predicted.stdout.split("mse = ")[1].split(")")[0])
    test_mse = json.loads((run / "summary.json").read_text())["test"]["metrics"]["test/mse"]
    assert mse == pytest.approx(test_mse, rel=1e-5), tested.stdout[-500:]


@pytest.mark.slow
def test_predict_under_ddp_writes_each_sample_once_in_order(trained):
    ddp = ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
           "--data.init_args.eval_batch_size", "7"]
    single = trained / "lightning_logs/sin_mlp/version_1/predictions/test.csv"
    run_cli("predict", *SIN, "--ckpt_path", "best", cwd=trained)
    alone = read_csv(single)[1]
    run_cli("predict", *SIN, *ddp, "--ckpt_path", "best", cwd=trained, timeout=300)
    both = read_csv(single)[1]
    assert [int(r["index"]) for r in both] == list(range(50))
    assert [(r["x"], r["target"]) for r in both] == [(r["x"], r["target"]) for r in alone]
    # batches of 7 on each rank instead of one of 50: the same values up to float rounding
    np.testing.assert_allclose([float(r["prediction"]) for r in both], [float(r["prediction"]) for r in alone],
                               rtol=1e-5)


# -- export -------------------------------------------------------------------------------------------

def test_export_files_match_the_checkpoint_on_raw_uint8_images(trained):
    import onnxruntime

    result = run_cli("export", *LENET, "--ckpt_path", "best", cwd=trained)
    run = trained / "lightning_logs/mnist_lenet/version_0"
    export = run / "export"
    assert "parity model.onnx: largest absolute difference" in result.stdout
    info = json.loads((export / "model.json").read_text())
    assert info["input"] == {"name": "images", "kind": "image", "dtype": "uint8", "shape": ["N", 1, 28, 28],
                             "layout": "NCHW"}
    assert info["class_names"] == [str(i) for i in range(10)] and info["preprocessing"]["pad"] == 2
    checkpoint = Path(info["checkpoint"]["path"])
    assert checkpoint.parent == (run / "checkpoints").resolve() and checkpoint.name.startswith("best-")
    import hashlib
    assert info["checkpoint"]["sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    # independently of export's own check: the files against what `predict` wrote through the Trainer
    run_cli("predict", *LENET, "--ckpt_path", "best", cwd=trained)
    expected = torch.load(run / "predictions/test.pt", weights_only=True)["probabilities"]
    dm = MNISTDataModule(data_dir=str(trained / "data"), download=False)
    dm.setup()
    images = dm.test[0][:37].unsqueeze(1)  # uint8, a batch size the export never saw
    session = onnxruntime.InferenceSession(str(export / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": images.numpy()})[0]
    np.testing.assert_allclose(got, expected[:37].numpy(), atol=1e-5)
    program = torch.export.load(str(export / "model.pt2")).module()
    torch.testing.assert_close(program(images[:3]), expected[:3], atol=1e-5, rtol=0)


def test_export_sin_and_bad_checkpoint(trained):
    import onnxruntime

    run_cli("export", *SIN, "--ckpt_path", "best", cwd=trained)
    export = trained / "lightning_logs/sin_mlp/version_1/export"
    session = onnxruntime.InferenceSession(str(export / "model.onnx"), providers=["CPUExecutionProvider"])
    x = np.array([[0.06], [0.5], [1.0]], dtype=np.float32)
    program = torch.export.load(str(export / "model.pt2")).module()
    np.testing.assert_allclose(session.run(None, {"x": x})[0], program(torch.from_numpy(x)).detach().numpy(), atol=1e-6)
    other = trained / "lightning_logs/mnist_lenet/version_0/checkpoints/last.ckpt"
    line = one_error_line(run_cli("export", *SIN, "--ckpt_path", str(other), cwd=trained, check=False))
    assert "belongs to experiment 'mnist_lenet'" in line


# -- serve --------------------------------------------------------------------------------------------

def _get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def _post(url: str, body: bytes, content_type: str, timeout: float = 10.0) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def _multipart(name: str, filename: str, data: bytes) -> tuple[bytes, str]:
    boundary = "litexpboundary7f3a"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def stop(process: subprocess.Popen) -> None:
    """Stop a server started in its own session, with its workers: SIGTERM, then SIGKILL after 20 s."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    except ProcessLookupError:  # it had already exited
        process.wait(timeout=10)


def _wait_healthy(url: str, process: subprocess.Popen, limit: float = 90.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the server exited with {process.returncode}"
        try:
            if _get(url, timeout=1.0)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"no answer from {url} within {limit} s")


def test_serve_answers_an_uploaded_image_like_predict(trained):
    folder = trained / "serve_images"
    folder.mkdir()
    image = torch.randint(0, 256, (1, 28, 28), dtype=torch.uint8)
    write_png(image, str(folder / "digit.png"))
    run_cli("predict", *LENET, "--ckpt_path", "best", "--data.predict_dir", str(folder), cwd=trained)
    _, rows = read_csv(trained / "lightning_logs/mnist_lenet/version_0/predictions/serve_images.csv")
    port = free_port()
    log = open(trained / "serve.log", "w")  # a file, not a pipe nobody reads (a full pipe would block it)
    process = subprocess.Popen([sys.executable, "-m", "experiments", "serve", *LENET, "--ckpt_path", "best",
                                "--port", str(port)], cwd=trained, env=cli_env(), stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}/health", process)
        body, content_type = _multipart("image", "digit.png", (folder / "digit.png").read_bytes())
        status, answer = _post(f"http://127.0.0.1:{port}/predict", body, content_type)
        assert status == 200, answer
        assert answer["class"] == int(rows[0]["prediction"]) and answer["name"] == rows[0]["name"]
        for name, p in answer["probabilities"].items():
            assert p == pytest.approx(float(rows[0][f"p_{name}"]), abs=2e-6)
        body, content_type = _multipart("image", "notes.txt", b"not an image")
        status, answer = _post(f"http://127.0.0.1:{port}/predict", body, content_type)
        assert status == 400 and "not an image" in answer["detail"]
    finally:
        stop(process)
        log.close()


def test_serve_on_a_port_in_use_is_one_line(trained):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_error_line(run_cli("serve", *LENET, "--ckpt_path", "best", "--port", str(port), cwd=trained,
                                      check=False, timeout=120))
    assert f"--port {port}" in line and "in use" in line


# -- runs ---------------------------------------------------------------------------------------------

def test_runs_lists_what_each_run_reached_and_what_differed(trained):
    table = run_cli("runs", "sin_mlp", cwd=trained).stdout.splitlines()
    header = table[0].split()
    assert header[:4] == ["experiment", "version", "started", "state"] and header[-1] == "max_lr"
    rows = [line.split() for line in table[1:]]
    assert [r[1] for r in rows] == ["0", "1"] and all("finished" in line for line in table[1:])
    assert [r[-1] for r in rows] == ["0.005", "0.02"]
    listed = list(csv.DictReader(run_cli("runs", "sin_mlp", "--csv", "--sort", "best", cwd=trained).stdout
                                 .splitlines()))
    best = [float(r["best_value"]) for r in listed]
    assert best == sorted(best) and all(r["best_metric"] == "val/mse" for r in listed)  # mse: lowest first
    summaries = [json.loads((trained / f"lightning_logs/sin_mlp/version_{r['version']}/summary.json").read_text())
                 for r in listed]
    assert [s["best"]["value"] for s in summaries] == best and all(s["epochs"] == 2 for s in summaries)


def test_runs_lists_killed_runs_and_runs_without_a_summary(trained, tmp_path):
    exp = tmp_path / "lightning_logs/sin_mlp"
    source = trained / "lightning_logs/sin_mlp/version_0"
    for version in (0, 1):
        (exp / f"version_{version}").mkdir(parents=True)
        (exp / f"version_{version}/config.yaml").write_text((source / "config.yaml").read_text())
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=30)
    summary = json.loads((source / "summary.json").read_text())
    summary.update(state="running", pid=dead.pid, host=socket.gethostname())
    (exp / "version_0/summary.json").write_text(json.dumps(summary))
    listed = list(csv.DictReader(run_cli("runs", "--csv", "--root", str(tmp_path), cwd=trained).stdout.splitlines()))
    assert [(r["version"], r["state"]) for r in listed] == [("0", "killed"), ("1", "failed")]
    line = one_error_line(run_cli("runs", "nothing_here", cwd=trained, check=False))
    assert "no runs under" in line and "nothing_here" in line


# -- TensorBoard --------------------------------------------------------------------------------------

def _json(url: str, payload: dict | None = None) -> dict:
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_tensorboard_serves_scalars_figures_and_hparams_with_metrics(trained):
    port = free_port()
    tensorboard = Path(sys.executable).with_name("tensorboard")
    process = subprocess.Popen([str(tensorboard), "--logdir", str(trained / "lightning_logs"), "--host", "127.0.0.1",
                                "--port", str(port), "--reload_interval", "0"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}/data"
    try:
        _wait_healthy(f"{base}/plugins_listing", process, limit=60)
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
