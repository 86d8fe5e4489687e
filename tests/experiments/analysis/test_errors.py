"""The error analysis on crafted answers: per-class numbers, confusions, mistakes and ECE against hand and
torchmetrics computations; the callback keeps the highest-loss images of a whole pass; a CLI test writes it all.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torchmetrics.classification import MulticlassCalibrationError

from experiments.analysis.errors import Answers, ece, reliability_bins, write_analysis
from experiments.callbacks.error_analysis import ErrorAnalysis
from experiments.runs.folder import RunFolder

NAMES = ["cat", "dog", "owl"]


def crafted() -> Answers:
    probs = torch.tensor([[0.90, 0.05, 0.05],   # cat, right
                          [0.60, 0.30, 0.10],   # cat, right
                          [0.20, 0.70, 0.10],   # cat -> dog
                          [0.10, 0.80, 0.10],   # dog, right
                          [0.55, 0.40, 0.05],   # dog -> cat
                          [0.05, 0.05, 0.90],   # owl, right
                          [0.15, 0.80, 0.05],   # owl -> dog
                          [1.00, 0.00, 0.00]])  # owl -> cat, confidence exactly 1
    targets = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
    return Answers(probs, targets, [f"img{i}.png" for i in range(8)], NAMES)


def read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_per_class_confusions_and_mistakes_equal_a_hand_count(tmp_path):
    answers = crafted()
    write_analysis(tmp_path, answers)
    per_class = {r["class"]: r for r in read(tmp_path / "per_class.csv")}
    # cat: 3 true, 2 right; predicted cat 4 times (2 right) -> precision 0.5, recall 2/3
    assert per_class["cat"]["support"] == "3"
    assert float(per_class["cat"]["precision"]) == pytest.approx(0.5)
    assert float(per_class["cat"]["recall"]) == pytest.approx(2 / 3)
    assert float(per_class["cat"]["accuracy"]) == pytest.approx(2 / 3)
    assert float(per_class["cat"]["f1"]) == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert float(per_class["dog"]["precision"]) == pytest.approx(1 / 3) and float(per_class["owl"]["recall"]) == \
        pytest.approx(1 / 3)
    confused = [(r["true"], r["predicted"], r["count"], round(float(r["share_of_true"]), 4))
                for r in read(tmp_path / "most_confused.csv")]
    assert sorted(confused) == sorted([("cat", "dog", "1", 0.3333), ("dog", "cat", "1", 0.5),
                                       ("owl", "dog", "1", 0.3333), ("owl", "cat", "1", 0.3333)])
    mistakes = read(tmp_path / "misclassified.csv")
    assert [m["source"] for m in mistakes] == ["img7.png", "img6.png", "img2.png", "img4.png"]  # most confident first
    assert float(mistakes[1]["loss"]) == pytest.approx(-math.log(0.05), abs=1e-5)
    assert (mistakes[1]["target"], mistakes[1]["prediction"]) == ("owl", "dog")
    for name in ("confusion", "confusion_normalized", "reliability"):
        assert (tmp_path / f"{name}.png").stat().st_size > 3000


def test_ece_is_torchmetrics_and_the_diagram_bins_add_up_to_it():
    answers = crafted()
    metric = MulticlassCalibrationError(3, n_bins=15, norm="l1")
    metric.update(answers.probabilities, answers.targets)
    assert ece(answers) == pytest.approx(float(metric.compute()))
    bins = reliability_bins(answers)
    weights = bins["count"] / bins["count"].sum()
    assert float((weights * (bins["accuracy"] - bins["confidence"]).abs()).sum()) == pytest.approx(ece(answers))
    # by hand: bins of width 1/15; confidence 0.9 twice (both right), 0.8 twice (one right), 0.7 (wrong),
    # 0.6 (right), 0.55 (wrong), 1.0 (wrong)
    hand = (2 * abs(1 - 0.9) + 2 * abs(0.5 - 0.8) + abs(0 - 0.7) + abs(1 - 0.6) + abs(0 - 0.55) + abs(0 - 1.0)) / 8
    assert ece(answers) == pytest.approx(hand)


def test_the_callback_keeps_the_highest_loss_images_of_the_whole_pass(tmp_path):
    torch.manual_seed(0)
    run = RunFolder(tmp_path / "version_0")
    callback = ErrorAnalysis(run, top_losses=5)
    trainer = SimpleNamespace(world_size=1, is_global_zero=True, strategy=None,
                              datamodule=SimpleNamespace(split_names=lambda split: None))
    module = SimpleNamespace(class_names=NAMES)
    callback.on_test_epoch_start(trainer, module)
    all_logits, all_targets, all_images = [], [], []
    for batch_idx in range(4):  # 4 batches of 7: the top 5 come from several batches
        logits = torch.randn(7, 3) * 3
        targets = torch.randint(0, 3, (7,))
        images = torch.rand(7, 1, 4, 4)
        callback.on_test_batch_end(trainer, module, {"logits": logits}, (images, targets), batch_idx)
        all_logits.append(logits)
        all_targets.append(targets)
        all_images.append(images)
    logits, targets, images = torch.cat(all_logits), torch.cat(all_targets), torch.cat(all_images)
    losses = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    expected = torch.argsort(losses, descending=True)[:5]
    _, positions, kept = callback._top
    assert positions.tolist() == expected.tolist()
    assert torch.equal(kept, images[expected])  # the very images of the highest losses, highest first
    callback.on_test_epoch_end(trainer, module)
    assert (run.analysis / "top_losses.png").stat().st_size > 3000
    assert len(read(run.analysis / "misclassified.csv")) == int((logits.argmax(1) != targets).sum())


def test_a_classification_test_writes_its_analysis_and_its_ece(tmp_path):
    from datamodules.bundled.synthetic import write_mnist
    from tests.helpers import EXPERIMENTS, run_cli

    write_mnist(tmp_path / "data", n_train=400, n_test=120)
    args = ["-c", str(EXPERIMENTS / "mnist_mlp.yaml"), "--data.init_args.data_dir", str(tmp_path / "data"),
            "--data.init_args.download", "false", "--trainer.max_epochs", "1"]
    run_cli("fit", *args, "--test_after_fit", "true", cwd=tmp_path)
    run = tmp_path / "lightning_logs/mnist_mlp/version_0"
    for name in ("per_class.csv", "most_confused.csv", "misclassified.csv", "confusion.png",
                 "confusion_normalized.png", "top_losses.png", "reliability.png"):
        assert (run / "analysis" / name).is_file(), name
    per_class = read(run / "analysis/per_class.csv")
    assert sum(int(r["support"]) for r in per_class) == 120 and len(per_class) == 10
    # test/ece equals torchmetrics' on the probabilities predict writes for the same checkpoint and split
    import json

    summary = json.loads((run / "summary.json").read_text())
    run_cli("predict", *args, "--ckpt_path", "best", cwd=tmp_path)
    rows = read(run / "predictions/test.csv")
    probs = torch.tensor([[float(r[f"p_{k}"]) for k in range(10)] for r in rows])
    targets = torch.tensor([int(r["target"]) for r in rows])
    metric = MulticlassCalibrationError(10, n_bins=15, norm="l1")
    metric.update(probs, targets)
    assert summary["test"]["metrics"]["test/ece"] == pytest.approx(float(metric.compute()), abs=1e-4)
    wrong = int((probs.argmax(1) != targets).sum())
    assert len(read(run / "analysis/misclassified.csv")) == wrong
    listed = run_cli("runs", "mnist_mlp", cwd=tmp_path).stdout
    assert f"ece={summary['test']['metrics']['test/ece']:.3g}" in listed
    assert not (run / "analysis/tta.csv").exists()
    # with the flip average: tta.csv and test/*_no_tta hold the image alone's scores, which are the plain test's
    run_cli("test", *args, "--ckpt_path", "best", "--model.init_args.tta_flip", "true", cwd=tmp_path)
    flipped = json.loads((run / "summary.json").read_text())["test"]["metrics"]
    tta = {r["variant"]: r for r in read(run / "analysis/tta.csv")}
    plain = summary["test"]["metrics"]
    assert float(tta["image alone"]["accuracy"]) == pytest.approx(plain["test/acc"], abs=1e-6)
    assert flipped["test/acc_no_tta"] == pytest.approx(plain["test/acc"], abs=1e-6)
    assert float(tta["image alone"]["ece"]) == pytest.approx(plain["test/ece"], abs=1e-4)
    assert flipped["test/ece_no_tta"] == pytest.approx(plain["test/ece"], abs=1e-4)
    assert float(tta["flip average"]["accuracy"]) == pytest.approx(flipped["test/acc"], abs=1e-6)
    assert float(tta["flip average"]["nll"]) == pytest.approx(flipped["test/loss"], abs=1e-4)
