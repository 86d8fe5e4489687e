"""predict writes its table (every sample once, in order, under DDP too) and reads folders of images."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from datamodules import MNISTDataModule
from experiments.deploy.prediction_writer import claim_stem
from tests.experiments.trained_runs import LENET, SIN, one_error_line, read_csv, write_png
from tests.helpers import run_cli


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
    other = trained / "elsewhere" / "my_images"  # another folder of the same name: its own table
    other.mkdir(parents=True)
    write_png(torch.randint(0, 256, (1, 28, 28), dtype=torch.uint8), str(other / "c.png"))
    run_cli("predict", *LENET, "--ckpt_path", "best", "--data.predict_dir", str(other), cwd=trained)
    assert [r["source"] for r in read_csv(predictions / "my_images-2.csv")[1]] == ["c.png"]
    assert [r["source"] for r in read_csv(predictions / "my_images.csv")[1]] == ["a.png", "b.png"]


def test_each_folder_keeps_its_own_table_stem(tmp_path):
    a, b, c = "/data/a/test", "/data/b/test", "/data/c/test"
    assert claim_stem(tmp_path, "test", a) == "test"
    (tmp_path / "test.csv").write_text("x")
    assert claim_stem(tmp_path, "test", b) == "test-2"
    (tmp_path / "test-3.csv").write_text("a table nobody recorded")
    assert claim_stem(tmp_path, "test", c) == "test-4"
    assert [claim_stem(tmp_path, "test", f) for f in (a, b, c)] == ["test", "test-2", "test-4"]  # stable
    assert json.loads((tmp_path / "sources.json").read_text()) == {"test": a, "test-2": b, "test-4": c}


def test_predict_bad_input_is_one_line(trained):
    empty = trained / "empty_folder"
    empty.mkdir(exist_ok=True)
    (empty / "readme.md").write_text("x")
    line = one_error_line(run_cli("predict", *LENET, "--ckpt_path", "best", "--data.predict_dir", str(empty),
                                  cwd=trained, check=False))
    assert "holds no readable images" in line and str(empty.name) in line
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


