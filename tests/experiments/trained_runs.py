"""Runs trained once per test session (a 2-epoch LeNet on synthetic MNIST, tested on its best checkpoint, and two
sin runs) and what the tests that use them share: the command lines, image and CSV files, the error line.
"""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import torch
from PIL import Image

from datamodules.bundled.synthetic import write_mnist
from tests.helpers import EXPERIMENTS, run_cli

LENET = ["-c", str(EXPERIMENTS / "mnist_lenet.yaml"), "--data.init_args.download", "false",
         "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
SIN = ["-c", str(EXPERIMENTS / "sin_mlp.yaml"), "--data.init_args.train_size", "128",
       "--data.init_args.val_size", "64", "--data.init_args.test_size", "50", "--trainer.max_epochs", "2",
       "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def write_png(image: torch.Tensor, path: str) -> None:
    """A (C, H, W) uint8 tensor as a PNG file."""
    array = image.permute(1, 2, 0).numpy()
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(path)


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert result.returncode == 2 and len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    return errors[0]


def train_runs(root: Path) -> Path:
    """A folder with synthetic MNIST files, a 2-epoch LeNet run tested on its best checkpoint, and two sin runs."""
    write_mnist(root / "data", n_train=300, n_test=100)
    run_cli("fit", *LENET, "--trainer.max_epochs", "2", cwd=root)
    run_cli("test", *LENET, "--ckpt_path", "best", cwd=root)
    run_cli("fit", *SIN, cwd=root)
    run_cli("fit", *SIN, "--model.init_args.lr_scheduler.init_args.max_lr", "0.02", cwd=root)
    return root
