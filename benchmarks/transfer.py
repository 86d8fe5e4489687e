"""Transfer learning measured on real images: ``python -m benchmarks.transfer --data_dir DATA [--fetch]
[--workdir DIR] [--sizes 10 50 200] [--seeds 3] [--pretrain_epochs 4] [--steps 300]``.

A stand-in for ImageNet weights that anyone can reproduce offline: ResNet-18 (torchvision's, from scratch) is
pre-trained through the CLI (``fit -c experiments/folder_resnet18.yaml``) on real Fashion-MNIST classes 0-4 (the
30k training images, written as a class-folder tree of PNGs), then fine-tuned on classes 5-9 with 10, 50 and 200
images per class (a seeded draw per seed; a fifth of them held out for validation, which picks the checkpoint)
and tested on those classes' 5k test images. Fine-tune modes, each from the pre-trained run's ``best.ckpt``
(``--model.init_args.net.init_args.weights``): full at the backbone's 1x and 0.1x rate, frozen backbone, gradual
unfreeze (``experiments/presets/unfreeze.yaml``), and from scratch (``weights none``). Every run of a size and
seed sees the same images and the same number of steps (``--steps``, rounded up to whole epochs).

Then the learning-rate finder (``tune``) on the 50-per-class set of the first seed, and the YAML default mode at
its suggestion on every seed, against the YAML default.

Reports test accuracy mean +- std over seeds per (mode, size), and each mode's paired difference to the YAML
default (full at 1x, as ``folder_resnet18.yaml`` trains) with a 95% t interval over seeds. Each run validates
about 15 times (every ``epochs // 15`` epochs), so a run of tiny epochs is not all validation. Results are kept
in ``WORKDIR/results.json``, so a run that stops resumes where it was. Prints markdown for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "experiments/folder_resnet18.yaml")
UNFREEZE = str(ROOT / "experiments/presets/unfreeze.yaml")
NAMES = ["T-shirt_top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle_boot"]
#: the fine-tune runs' common options: 32-px crops of Fashion-MNIST's 28-px images stored at 37 px
COMMON = ["--data.image_size", "32", "--data.crop_scale", "[0.6, 1.0]", "--trainer.enable_progress_bar", "false",
          "--trainer.enable_model_summary", "false", "--data.decode_workers", "2"]
BATCH = 16
#: the mode folder_resnet18.yaml trains in (backbone_lr_ratio: 1.0, set from this benchmark's table)
DEFAULT = "full_1x"


def modes(pretrained: str) -> dict[str, list[str]]:
    """Each fine-tune mode's options (the YAML's own where they are not named)."""
    weights = "--model.init_args.net.init_args.weights"
    return {
        "scratch": [weights, "none"],
        DEFAULT: [weights, pretrained],  # the YAML's backbone_lr_ratio: 1.0
        "full_0.1x": [weights, pretrained, "--model.init_args.backbone_lr_ratio", "0.1"],
        "frozen": [weights, pretrained, "--model.init_args.net.init_args.freeze_backbone", "true"],
        "unfreeze": [weights, pretrained, "-c", UNFREEZE],
    }


def fashion(data_dir: Path, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28) uint8, labels) of the raw idx files."""
    raw = data_dir / "FashionMNIST/raw"
    prefix = "train" if train else "t10k"
    images = np.frombuffer((raw / f"{prefix}-images-idx3-ubyte").read_bytes(), np.uint8, offset=16).reshape(-1, 28, 28)
    labels = np.frombuffer((raw / f"{prefix}-labels-idx1-ubyte").read_bytes(), np.uint8, offset=8)
    return images, labels


def write_pngs(folder: Path, images: np.ndarray, labels: np.ndarray, indices) -> None:
    for i in indices:
        target = folder / NAMES[labels[i]]
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i]).save(target / f"{i:05d}.png")


def prepare(data_dir: Path, work: Path, sizes: list[int], seeds: list[int]) -> None:
    """The pre-training folder, the test folder and one fine-tune folder per (size, seed), written once."""
    images, labels = fashion(data_dir, train=True)
    if not (work / "pretrain").is_dir():
        write_pngs(work / "pretrain", images, labels, np.flatnonzero(labels < 5))
    test_images, test_labels = fashion(data_dir, train=False)
    if not (work / "test").is_dir():
        write_pngs(work / "test", test_images, test_labels, np.flatnonzero(test_labels >= 5))
    for size in sizes:
        for seed in seeds:
            root = work / f"ft_{size}_{seed}"
            if root.is_dir():
                continue
            rng = np.random.default_rng(seed)
            for label in range(5, 10):
                chosen = rng.choice(np.flatnonzero(labels == label), size, replace=False)
                held = max(1, size // 5)
                write_pngs(root / "val", images, labels, chosen[:held])
                write_pngs(root / "train", images, labels, chosen[held:])
            (root / "test").symlink_to(work / "test", target_is_directory=True)


def cli(args: list[str], cwd: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "experiments", *args], cwd=cwd, capture_output=True, text=True,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(args)}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def test_acc(work: Path, experiment: str) -> float:
    runs = sorted((work / "lightning_logs" / experiment).glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    return float(json.loads((runs[-1] / "summary.json").read_text())["test"]["metrics"]["test/acc"])


def epochs_for(size: int, steps: int) -> int:
    train = 5 * (size - max(1, size // 5))
    return max(1, math.ceil(steps / max(1, train // BATCH)))


def fine_tune(work: Path, mode: str, extra: list[str], size: int, seed: int, steps: int) -> float:
    experiment = f"ft_{mode}_{size}_{seed}"
    epochs = epochs_for(size, steps)
    args = ["fit", "-c", CONFIG, *extra, "--data.root", str(work / f"ft_{size}_{seed}"), *COMMON,
            "--data.batch_size", str(BATCH), "--trainer.max_epochs", str(epochs), "--seed_everything", str(seed),
            # about 15 validations (and checkpoints) per run, whatever the epoch count: 150 epochs of 2 steps would
            # otherwise spend most of their time validating and saving
            "--trainer.check_val_every_n_epoch", str(max(1, epochs // 15)),
            "--experiment", experiment, "--test_after_fit", "true"]
    if mode == "unfreeze":  # unfreeze a third of the way in (the preset's epoch 2 is for longer runs)
        preset = work / f"unfreeze_{epochs}.yaml"
        preset.write_text(Path(UNFREEZE).read_text().replace("unfreeze_backbone_at_epoch: 2",
                                                             f"unfreeze_backbone_at_epoch: {max(1, epochs // 3)}"))
        args[args.index(UNFREEZE)] = str(preset)
    cli(args, work)
    return test_acc(work, experiment)


def interval(differences: list[float]) -> str:
    n = len(differences)
    mean = statistics.fmean(differences)
    if n < 2:
        return f"{100 * mean:+.1f}"
    half = stats.t.ppf(0.975, n - 1) * statistics.stdev(differences) / math.sqrt(n)
    return f"{100 * mean:+.1f} [{100 * (mean - half):+.1f}, {100 * (mean + half):+.1f}]"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.transfer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", type=Path, required=True)
    parser.add_argument("--fetch", action="store_true", help="fetch Fashion-MNIST from Debian's package first")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/litexp-transfer"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 50, 200])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--pretrain_epochs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--modes", nargs="+", default=None)
    args = parser.parse_args(argv)
    if args.fetch:
        from benchmarks.accuracy import fetch_fashion_mnist

        fetch_fashion_mnist(args.data_dir)
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    seeds = list(range(137, 137 + args.seeds))
    prepare(args.data_dir, work, args.sizes, seeds)
    saved = work / "results.json"
    results = json.loads(saved.read_text()) if saved.is_file() else {}

    def keep(key: str, value) -> None:
        results[key] = value
        saved.write_text(json.dumps(results, indent=1))

    if "pretrain" not in results:
        started = time.perf_counter()
        cli(["fit", "-c", CONFIG, "--data.root", str(work / "pretrain"), *COMMON, "--data.val_size", "0.05",
             "--data.batch_size", "64", "--model.init_args.net.init_args.weights", "none",
             "--model.init_args.optimizer.init_args.lr", "0.05", "--trainer.max_epochs", str(args.pretrain_epochs),
             "--experiment", "pretrain"], work)
        run = sorted((work / "lightning_logs/pretrain").glob("version_*"))[-1]
        summary = json.loads((run / "summary.json").read_text())
        keep("pretrain", {"checkpoint": str(next((run / "checkpoints").glob("best*.ckpt"))),
                          "val_acc": summary["best"]["value"], "seconds": time.perf_counter() - started})
    pretrained = results["pretrain"]["checkpoint"]
    chosen = modes(pretrained)
    names = args.modes or list(chosen)
    for size in args.sizes:
        for seed in seeds:
            for mode in names:
                key = f"{mode}/{size}/{seed}"
                if key not in results:
                    keep(key, fine_tune(work, mode, chosen[mode], size, seed, args.steps))
                    print(f"{key}: {results[key]:.4f}", flush=True)
    if 50 in args.sizes and "tuned_lr" not in results:  # the LR finder on the 50-per-class set of the first seed
        out = cli(["tune", "-c", CONFIG, *chosen[DEFAULT], "--data.root", str(work / f"ft_50_{seeds[0]}"), *COMMON,
                   "--data.batch_size", str(BATCH), "--experiment", "tune_50"], work)
        tuned = __import__("yaml").safe_load((work / "lightning_logs/tune_50/tune/tuned.yaml").read_text())
        keep("tuned_lr", tuned["model"]["init_args"]["optimizer"]["init_args"]["lr"])
        print(out.strip().splitlines()[-3], flush=True)
    if "tuned_lr" in results:
        for seed in seeds:
            key = f"lr_finder/50/{seed}"
            if key not in results:
                extra = [*chosen[DEFAULT], "--model.init_args.optimizer.init_args.lr", str(results["tuned_lr"])]
                keep(key, fine_tune(work, "lr_finder", extra, 50, seed, args.steps))
    report(results, args.sizes, seeds, [*names, "lr_finder"])


def report(results: dict, sizes: list[int], seeds: list[int], names: list[str]) -> None:
    pre = results["pretrain"]
    print(f"\nPre-training: ResNet-18 from scratch on classes 0-4 (30k images), best val/acc {pre['val_acc']:.4f}, "
          f"{pre['seconds'] / 60:.1f} min\n")
    print("| mode | " + " | ".join(f"{s}/class: test acc | vs {DEFAULT}" for s in sizes) + " |")
    print("|---|" + "---|---|" * len(sizes))
    for mode in names:
        cells = []
        for size in sizes:
            values = [results.get(f"{mode}/{size}/{seed}") for seed in seeds]
            if any(v is None for v in values):
                cells += ["", ""]
                continue
            base = [results[f"{DEFAULT}/{size}/{seed}"] for seed in seeds]
            spread = f" +- {100 * statistics.stdev(values):.1f}" if len(values) > 1 else ""
            cells.append(f"{100 * statistics.fmean(values):.1f}{spread}")
            cells.append("" if mode == DEFAULT else interval([v - b for v, b in zip(values, base, strict=True)]))
        print(f"| {mode} | " + " | ".join(cells) + " |")
    if "tuned_lr" in results:
        config = __import__("yaml").safe_load(Path(CONFIG).read_text())
        default_lr = config["model"]["init_args"]["optimizer"]["init_args"]["lr"]
        print(f"\nLR finder suggestion on 50/class (seed {seeds[0]}): {results['tuned_lr']:.3g} (YAML: {default_lr})")


if __name__ == "__main__":
    main()
