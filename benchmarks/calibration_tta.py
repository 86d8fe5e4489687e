"""Calibration and test-time augmentation on real Fashion-MNIST: ``python -m benchmarks.calibration_tta --data_dir
DATA [--fetch] [--seeds 3] [--epochs 20]``.

Per seed, ``fashion_mnist_lenet`` (whose default is the flip average, ``tta_flip: true``) is fitted, then on the 10k
test images: ``test`` (one pass gives the flip average and the image alone: ``tta.csv``, ``test/*_no_tta``), then
``calibrate`` (the temperature fitted on the 12k validation images), then ``test`` again with it. The temperature is
fitted on the validation split only; the test split measures. Prints markdown for BENCHMARKS.md, with the paired
mean differences over seeds and their 95% t intervals (scipy).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import platform
import statistics
import tempfile
from pathlib import Path

import torch
from scipy import stats

from experiments.cli import ExperimentCLI

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        ExperimentCLI(args=list(args), report=False)


def interval(values: list[float]) -> str:
    """The mean [low, high] of paired differences (t, n-1 degrees of freedom)."""
    n, mean = len(values), statistics.fmean(values)
    if n < 2:
        return f"{mean:+.4f}"
    half = stats.t.ppf(0.975, n - 1) * statistics.stdev(values) / n ** 0.5
    return f"{mean:+.4f} [{mean - half:+.4f}, {mean + half:+.4f}]"


def one_seed(seed: int, common: list[str]) -> dict[str, float]:
    cli("fit", *common, "--seed_everything", str(seed))
    run = Path("lightning_logs/fashion_mnist_lenet").resolve()
    run = max(run.glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    cli("test", *common, "--ckpt_path", str(best(run)))
    metrics = json.loads((run / "summary.json").read_text())["test"]["metrics"]
    tta = {r["variant"]: r for r in csv.DictReader(open(run / "analysis/tta.csv", newline=""))}
    cli("calibrate", *common, "--ckpt_path", str(best(run)))
    (record,) = json.loads((run / "calibration.json").read_text()).values()
    cli("test", *common, "--ckpt_path", str(best(run)))
    calibrated = json.loads((run / "summary.json").read_text())["test"]["metrics"]
    return {"acc_flip": metrics["test/acc"], "acc_alone": metrics["test/acc_no_tta"],
            "ece_flip": metrics["test/ece"], "ece_alone": metrics["test/ece_no_tta"],
            "nll_flip": float(tta["flip average"]["nll"]), "nll_alone": float(tta["image alone"]["nll"]),
            "temperature": record["temperature"], "val_ece_before": record["validation"]["before"]["ece"],
            "val_ece_after": record["validation"]["after"]["ece"], "val_nll_before": record["validation"]["before"][
                "nll"], "val_nll_after": record["validation"]["after"]["nll"],
            "test_ece_after": calibrated["test/ece"], "test_nll_after": calibrated["test/loss"],
            "test_acc_after": calibrated["test/acc"]}


def best(run: Path) -> Path:
    return next((run / "checkpoints").glob("best-*.ckpt"))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.calibration_tta", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", type=Path, required=True)
    parser.add_argument("--fetch", action="store_true")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    if args.fetch:
        from benchmarks.accuracy import fetch_fashion_mnist

        fetch_fashion_mnist(args.data_dir)
    common = ["-c", str(ROOT / "experiments/fashion_mnist_lenet.yaml"), "--data.init_args.data_dir",
              str(args.data_dir.resolve()), "--data.init_args.download", "false", "--trainer.enable_progress_bar",
              "false", "--trainer.enable_model_summary", "false", "--trainer.max_epochs", str(args.epochs)]
    here = os.getcwd()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        try:
            for seed in range(137, 137 + args.seeds):
                rows.append(one_seed(seed, common))
                print(f"seed {seed}: {rows[-1]}", flush=True)
        finally:
            os.chdir(here)
    seeds = ", ".join(str(s) for s in range(137, 137 + args.seeds))
    print(f"\nfashion_mnist_lenet, {args.epochs} epochs, seeds {seeds}, on {platform.processor() or 'CPU'} "
          f"({torch.get_num_threads()} threads); test = the 10k test images, temperature fitted on the 12k "
          "validation images\n")
    print("| | per seed | mean |\n|---|---|---|")

    def line(label: str, key: str, digits: int = 4) -> None:
        values = [r[key] for r in rows]
        print(f"| {label} | {', '.join(f'{v:.{digits}f}' for v in values)} | {statistics.fmean(values):.{digits}f} |")

    for label, key in (("test accuracy, flip average", "acc_flip"), ("test accuracy, image alone", "acc_alone"),
                       ("test ECE, flip average", "ece_flip"), ("test ECE, image alone", "ece_alone"),
                       ("test NLL, flip average", "nll_flip"), ("test NLL, image alone", "nll_alone"),
                       ("temperature (fitted on validation)", "temperature"),
                       ("validation ECE before / after", "val_ece_before"), ("", "val_ece_after"),
                       ("validation NLL before / after", "val_nll_before"), ("", "val_nll_after"),
                       ("test ECE calibrated (flip average)", "test_ece_after"),
                       ("test NLL calibrated (flip average)", "test_nll_after"),
                       ("test accuracy calibrated", "test_acc_after")):
        line(label, key)
    print()
    print(f"- flip average - image alone, accuracy: {interval([r['acc_flip'] - r['acc_alone'] for r in rows])}")
    print(f"- flip average - image alone, ECE: {interval([r['ece_flip'] - r['ece_alone'] for r in rows])}")
    print(f"- calibrated - uncalibrated, test ECE: {interval([r['test_ece_after'] - r['ece_flip'] for r in rows])}")
    print(f"- calibrated - uncalibrated, test NLL: {interval([r['test_nll_after'] - r['nll_flip'] for r in rows])}")
    same = all(r["test_acc_after"] == r["acc_flip"] for r in rows)
    print(f"- test accuracy identical after calibration in every seed: {same}")


if __name__ == "__main__":
    main()
