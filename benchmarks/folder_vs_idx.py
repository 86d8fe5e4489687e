"""``python -m benchmarks folder_vs_idx [--epochs 5] [--seeds 137 138]``: the folder module against the MNIST
module on the same real images.

Writes real Fashion-MNIST (fetched from Debian's package, see RECIPES.md) as a tree of PNG files,
``<workdir>/fashion_png/{train,val,test}/<class>/<n>.png``, with the MNIST module's own split (same seed, 20%
validation), then trains ``experiments/mnist_mlp.yaml`` (the recipe's 784-256-128-10 net) on the same
images twice per seed: from the IDX files through ``MNISTDataModule``, and from the PNG tree through
``ImageFolderDataModule`` (grey, stored at 28 px, no crop or flip: the same pixels, the same normalisation).
Only the order of the samples differs (the folder sorts by class), so the accuracies must agree within the
noise between seeds. Each run ends with ``--test_after_fit true``; best validation and test accuracy per run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def write_png_tree(data_dir: Path, root: Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The MNIST module's train/val split and the test set as PNGs; returns its (mean, std)."""
    from datamodules import MNISTDataModule

    dm = MNISTDataModule("FashionMNIST", str(data_dir), download=False, val_size=0.2, seed=137)
    dm.prepare_data()
    dm.setup("fit")
    dm.setup("test")
    if not (root / "test").is_dir():
        for split in ("train", "val", "test"):
            images, labels = getattr(dm, split)[:2]
            for i, (image, label) in enumerate(zip(images, labels.tolist(), strict=True)):
                folder = root / split / dm.class_names[label].replace("/", "-")
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(image.reshape(28, 28).numpy()).save(folder / f"{i:05d}.png")
    return tuple(dm.mean), tuple(dm.std)


def fit(args: list[str], cwd: Path) -> dict:
    done = subprocess.run([sys.executable, "-m", "experiments", "fit", "-c", str(ROOT / "experiments/mnist_mlp.yaml"),
                           *args, "--test_after_fit", "true", "--trainer.enable_progress_bar", "false",
                           "--trainer.enable_model_summary", "false"], cwd=cwd, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise SystemExit(f"fit failed:\n{done.stderr[-3000:]}")
    logs = cwd / "lightning_logs"
    newest = max((p for p in logs.glob("*/version_*")), key=lambda p: p.stat().st_mtime)
    return json.loads((newest / "summary.json").read_text())


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks folder_vs_idx")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[137, 138])
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "litexp-folder-vs-idx")
    args = parser.parse_args(argv)
    from benchmarks.accuracy import fetch_fashion_mnist

    data_dir = args.workdir / "data"
    fetch_fashion_mnist(data_dir)
    mean, std = write_png_tree(data_dir, args.workdir / "fashion_png")
    common = ["--trainer.max_epochs", str(args.epochs)]
    idx = ["--data.init_args.dataset", "FashionMNIST", "--data.init_args.data_dir", str(data_dir),
           "--data.init_args.download", "false"]
    folder = ["--data", "datamodules.ImageFolderDataModule", "--data.root", str(args.workdir / "fashion_png"),
              "--data.channels", "1", "--data.image_size", "28", "--data.storage_size", "28",
              "--data.mean", json.dumps(list(mean)), "--data.std", json.dumps(list(std)),
              "--data.crop_scale", "[1.0, 1.0]", "--data.flip", "false", "--data.batch_size", "128",
              "--data.eval_batch_size", "1000"]
    print("| data module | seed | best val/acc | test/acc |")
    print("|---|---|---|---|")
    for seed in args.seeds:
        for name, data in (("MNISTDataModule (IDX files)", idx), ("ImageFolderDataModule (PNG tree)", folder)):
            summary = fit([*common, "--seed_everything", str(seed), *data, "--data.seed", str(seed)], args.workdir)
            print(f"| {name} | {seed} | {summary['best']['value']:.4f} | "
                  f"{summary['test']['metrics']['test/acc']:.4f} |", flush=True)
