"""``cv`` on a folder of images: the pool leaves the test split out, groups stay in one fold, out-of-fold rows and
``predict`` on a split are named by path; a CSV's missing group column is one line.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.helpers import EXPERIMENTS, run_cli
from tests.image_folders import write_image_folder


def folder_args(photos: Path, *extra: str) -> list[str]:
    return ["-c", str(EXPERIMENTS / "folder_resnet18.yaml"), "--data.root", str(photos), "--data.image_size", "32",
            "--data.batch_size", "8", "--model.init_args.net.init_args.weights", "none", "--trainer.max_epochs", "1",
            "--data.test_size", "0.2", *extra]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_a_folder_cv_keeps_groups_together_and_names_samples_by_path(tmp_path):
    photos = write_image_folder(tmp_path / "photos", per_class=(12, 9, 9))
    run_cli("cv", *folder_args(photos), "--folds", "3", "--group_by", r"(\d\d)\.", cwd=tmp_path)
    folder = tmp_path / "lightning_logs/folder_resnet18/cv/folder_resnet18"
    folds = read_csv(folder / "folds.csv")
    report = json.loads((tmp_path / "lightning_logs/folder_resnet18/version_0/data_report.json").read_text())
    test_images = sum(report["images"]["test"].values())
    assert test_images > 0 and len(folds) == 30 - test_images  # the test split is not in the pool
    fold_of: dict[str, set[str]] = {}
    for row in folds:
        assert (photos / row["source"]).is_file()
        fold_of.setdefault(row["source"].rsplit("/", 1)[-1][1:3], set()).add(row["fold"])
    assert all(len(f) == 1 for f in fold_of.values())  # a group (the file number) in one fold
    rows = read_csv(folder / "oof_predictions.csv")
    assert sorted(r["source"] for r in rows) == sorted(r["source"] for r in folds)
    classes = ["ant", "bee", "cat"]
    assert all(classes[int(r["target"])] == r["source"].split("/")[0] for r in rows)
    # predict on a split (no cv) names its rows by path too
    run_cli("predict", *folder_args(photos), "--ckpt_path", "last", cwd=tmp_path)
    run = sorted((tmp_path / "lightning_logs/folder_resnet18").glob("version_*"))[-1]
    predicted = read_csv(run / "predictions/test.csv")
    assert len(predicted) == test_images and all((photos / r["source"]).is_file() for r in predicted)
    # predict on a labelled folder (class sub-folders) writes the error analysis a test writes
    run_cli("predict", *folder_args(photos), "--ckpt_path", "last", "--data.predict_dir", str(photos), cwd=tmp_path)
    mistakes = read_csv(run / "analysis/photos/misclassified.csv")
    rows = read_csv(run / "predictions/photos.csv")
    assert len(mistakes) == sum(r["prediction"] != r["target"] for r in rows)
    assert all((run / "analysis/photos" / f).is_file() for f in ("per_class.csv", "top_losses.png", "reliability.png"))


def test_a_group_column_the_csv_lacks_is_one_line(tmp_path):
    photos = write_image_folder(tmp_path / "photos", per_class=(6, 6))
    listing = tmp_path / "data.csv"
    files = sorted(p for p in photos.rglob("*") if p.is_file())
    listing.write_text("path,label\n" + "".join(f"{p.relative_to(tmp_path)},{p.relative_to(photos).parts[0]}\n"
                                                for p in files))
    result = run_cli("cv", *folder_args(photos, "--data.csv", str(listing)), "--folds", "2", "--group_by",
                     "subject", cwd=tmp_path, check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert f"--group_by subject: --data.csv {listing} has no such column (has path, label)" in lines[0]
