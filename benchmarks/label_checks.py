"""Label checks on real Fashion-MNIST with planted flips: ``python -m benchmarks.label_checks --data_dir DATA
[--fetch] [--flip 0.05] [--folds 5]``.

A copy of the raw files whose training labels are changed, for ``--flip`` of a 10k pool (``--data.init_args.subset
10000``, the cv's own stratified draw), to another class at random (numpy seeded with 0), written in the idx format
torchvision reads. ``cv`` of ``fashion_mnist_lenet`` (5 folds, 1 seed, the config's epochs) on that copy and on the
clean files; its ``label_issues.csv`` (cleanlab). Reports the share of flipped images among the N lowest label
quality scores (N = the flips in the pool), the flagged set's precision and recall, and what the same check flags on
the clean data (the data set's own ambiguity, and its own label noise). Prints markdown for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import os
import shutil
import struct
import tempfile
import time
from pathlib import Path

import numpy as np

from datamodules import MNISTDataModule
from experiments.analysis.labels import pooled_probabilities, rank_label_issues
from experiments.cv import command as cv_command

ROOT = Path(__file__).resolve().parents[1]
POOL = 10000


def pool_of(data_dir: Path) -> tuple[list[int], np.ndarray]:
    """The cv pool's training-file indices and labels, as the data module draws them."""
    data = MNISTDataModule(dataset="FashionMNIST", data_dir=str(data_dir), download=False, subset=POOL)
    pool = data.fold_pool()
    return [int(s) for s in pool.sources], pool.labels.numpy()


def write_flipped(clean: Path, target: Path, share: float) -> set[int]:
    """A copy of the raw files with ``share`` of the pool's labels changed; returns the flipped indices."""
    shutil.copytree(clean / "FashionMNIST", target / "FashionMNIST")
    indices, labels = pool_of(clean)
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(indices), int(round(share * len(indices))), replace=False)
    path = target / "FashionMNIST/raw/train-labels-idx1-ubyte"
    raw = bytearray(path.read_bytes())
    magic, count = struct.unpack(">II", raw[:8])
    assert magic == 2049 and count == 60000, (magic, count)
    flipped = set()
    for position in chosen.tolist():
        index = indices[position]
        raw[8 + index] = (labels[position] + int(rng.integers(1, 10))) % 10
        flipped.add(index)
    path.write_bytes(bytes(raw))
    return flipped


def run_cv(data_dir: Path, name: str, folds: int) -> tuple[Path, float, str]:
    start = time.perf_counter()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        cv_command.main(["-c", str(ROOT / "experiments/fashion_mnist_lenet.yaml"), "--data.init_args.data_dir",
                         str(data_dir), "--data.init_args.download", "false", "--data.init_args.subset", str(POOL),
                         "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
                         "--folds", str(folds), "--seeds", "1", "--name", name])
    folder = Path("lightning_logs/fashion_mnist_lenet/cv") / name
    line = next((x for x in out.getvalue().splitlines() if x.startswith("Label checks")), "")
    return folder, time.perf_counter() - start, line


def measure(folder: Path, flipped: set[int]) -> dict[str, float]:
    sources, labels, probs, _ = pooled_probabilities(folder / "oof_predictions.csv")
    flagged, scores = rank_label_issues(labels, probs)
    is_flip = np.array([int(s) in flipped for s in sources])
    n = int(is_flip.sum())
    lowest = np.argsort(scores, kind="stable")[:n] if n else np.array([], dtype=np.int64)
    with (folder / "label_issues.csv").open(newline="") as f:
        listed = [r["source"] for r in csv.DictReader(f)]
    assert listed == [sources[i] for i in flagged.tolist()]  # the CSV is this ranking
    return {"pool": len(sources), "flips": n, "flagged": len(flagged),
            "top_n_precision": float(is_flip[lowest].mean()) if n else float("nan"),
            "flagged_precision": float(is_flip[flagged].mean()) if len(flagged) and n else float("nan"),
            "flagged_recall": float(is_flip[flagged].sum() / n) if n else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.label_checks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", type=Path, required=True)
    parser.add_argument("--fetch", action="store_true")
    parser.add_argument("--flip", type=float, default=0.05)
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    if args.fetch:
        from benchmarks.accuracy import fetch_fashion_mnist

        fetch_fashion_mnist(args.data_dir)
    clean = args.data_dir.resolve()
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        try:
            flipped = write_flipped(clean, Path(folder) / "flipped", args.flip)
            noisy_folder, noisy_s, noisy_line = run_cv(Path(folder) / "flipped", "flipped", args.folds)
            noisy = measure(noisy_folder, flipped)
            clean_folder, clean_s, clean_line = run_cv(clean, "clean", args.folds)
            plain = measure(clean_folder, set())
        finally:
            os.chdir(here)
    print(f"{noisy_line} [flipped]\n{clean_line} [clean]\n")
    print("| data | pool | labels flipped | flagged | flips among the N lowest scores (N = flips) | flagged: "
          "precision / recall | cv wall |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {args.flip:.0%} of the pool flipped | {noisy['pool']} | {noisy['flips']} | {noisy['flagged']} | "
          f"**{noisy['top_n_precision']:.3f}** | {noisy['flagged_precision']:.3f} / {noisy['flagged_recall']:.3f} | "
          f"{noisy_s:.0f} s |")
    print(f"| clean | {plain['pool']} | 0 | {plain['flagged']} ({plain['flagged'] / plain['pool']:.1%} of the pool: "
          f"the data set's own ambiguity and label noise) | | | {clean_s:.0f} s |")


if __name__ == "__main__":
    main()
