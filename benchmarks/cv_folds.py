"""Cross-validation on real Fashion-MNIST: ``python -m benchmarks.cv_folds --data_dir DIR [--fetch]``.

A 10k pool (``--data.init_args.subset 10000``: a fixed stratified draw of the 60k training images), 5 folds x 2
seeds, the configs' own epochs. Measures LeNet-5 (``fashion_mnist_lenet.yaml``) and the MLP (``mnist_mlp.yaml`` on
FashionMNIST) with their corrected intervals, ``--compare`` of the two, and of LeNet-5 at two one-cycle peak rates
that differ little (0.003, the default, and 0.0025). Then the overhead of ``cv`` over the same runs started by hand:
the MLP's cv as one command, then its ten (seed, fold) runs as one Python script of ten in-process fits and as ten
``python -m experiments fit`` processes with the same options (``--cv_fold``, ``--seed_everything``).

Prints a markdown report for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from experiments.cv import command as cv_command
from experiments.cv.runs import fold_option

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def data_args(data_dir: Path, pool: int) -> list[str]:
    return ["--data.init_args.dataset", "FashionMNIST", "--data.init_args.data_dir", str(data_dir),
            "--data.init_args.download", "false", "--data.init_args.subset", str(pool)]


def run_cv(config: str, name: str, data: list[str], folds: int, seeds: int, extra: list[str]) -> tuple[dict, float]:
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        cv_command.main(["-c", str(ROOT / "experiments" / config), *data, *QUIET, *extra, "--folds", str(folds),
                         "--seeds", str(seeds), "--name", name])
    wall = time.perf_counter() - start
    experiment = Path(config).stem
    return json.loads((Path("lightning_logs") / experiment / "cv" / name / "summary.json").read_text()), wall


def compare(a: str, b: str) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        cv_command.main(["--compare", a, b])
    return json.loads((Path(a) / "compare.json").read_text())


def by_hand(config: str, data: list[str], folds: int, seeds: int) -> tuple[float, float, float]:
    """The cv as one command, then its (seed, fold) runs by hand: one Python script fitting them in-process, and
    one ``fit`` process each. Every side in fresh interpreters (imports and start-up included), in this order.

    Returns:
        ``(cv s, in-process script s, processes s)``.
    """
    runs = [(s, f) for s in range(seeds) for f in range(folds)]
    common = ["-c", str(ROOT / "experiments" / config), *data, *QUIET]

    def args(seed: int, fold: int) -> list[str]:
        return ["fit", *common, "--trainer.devices", "1", "--seed_everything", str(seed),
                *fold_option(folds, fold, seed, None), "--experiment", "by_hand"]

    def timed(command: list[str]) -> float:
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        return time.perf_counter() - start

    cv = timed([sys.executable, "-m", "experiments", "cv", *common, "--folds", str(folds), "--seeds", str(seeds),
                "--name", "overhead"])
    script = ("import sys, json; from experiments.cli import ExperimentCLI\n"
              "for a in json.loads(sys.argv[1]): ExperimentCLI(args=a, report=False)")
    in_process = timed([sys.executable, "-c", script, json.dumps([args(s, f) for s, f in runs])])
    processes = sum(timed([sys.executable, "-m", "experiments", *args(s, f)]) for s, f in runs)
    return cv, in_process, processes


def overhead(cv: float, in_process: float, processes: float, n: int) -> str:
    return (f"Overhead, the MLP's {n} runs, each side a fresh interpreter: `cv` {cv:.1f} s; the same fits by hand in "
            f"one Python script {in_process:.1f} s (cv {100 * (cv - in_process) / in_process:+.1f}%: the study, the "
            f"out-of-fold prediction pass, the report); as one `fit` process each {processes:.1f} s "
            f"(cv {100 * (cv - processes) / processes:+.1f}%).")


def line(summary: dict) -> str:
    m = summary["metrics"]["val/acc"]
    low, high = m["ci95"]
    values = ", ".join(f"{100 * v:.2f}" for v in m["values"])
    return (f"{100 * m['mean']:.2f} ± {100 * (high - low) / 2:.2f} | [{100 * low:.2f}, {100 * high:.2f}] | "
            f"{100 * m['std']:.2f} | {values}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cv_folds", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", type=Path, required=True)
    parser.add_argument("--fetch", action="store_true", help="get Fashion-MNIST from Debian's package first")
    parser.add_argument("--pool", type=int, default=10000)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--overhead_only", action="store_true", help="measure only cv against the same runs by hand")
    args = parser.parse_args()
    if args.fetch:
        from benchmarks.accuracy import fetch_fashion_mnist

        fetch_fashion_mnist(args.data_dir)
    data = data_args(args.data_dir.resolve(), args.pool)
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        try:
            if args.overhead_only:
                print(overhead(*by_hand("mnist_mlp.yaml", data, args.folds, args.seeds), args.folds * args.seeds))
                return
            lenet, lenet_s = run_cv("fashion_mnist_lenet.yaml", "lenet", data, args.folds, args.seeds, [])
            mlp, mlp_s = run_cv("mnist_mlp.yaml", "mlp", data, args.folds, args.seeds, [])
            slower, slower_s = run_cv("fashion_mnist_lenet.yaml", "lenet_lr0025", data, args.folds, args.seeds,
                                      ["--model.init_args.lr_scheduler.init_args.max_lr", "0.0025"])
            nets = compare("lightning_logs/fashion_mnist_lenet/cv/lenet", "lightning_logs/mnist_mlp/cv/mlp")
            rates = compare("lightning_logs/fashion_mnist_lenet/cv/lenet",
                            "lightning_logs/fashion_mnist_lenet/cv/lenet_lr0025")
            timings = by_hand("mnist_mlp.yaml", data, args.folds, args.seeds)
        finally:
            os.chdir(here)
    cpu = platform.processor() or platform.machine()
    print(f"Measured {time.strftime('%Y-%m-%d')} on real Fashion-MNIST, a {args.pool}-image pool, {args.folds} folds x "
          f"{args.seeds} seeds; {cpu}, {os.cpu_count()} cores, torch {torch.__version__}, no GPU.\n")
    print("| config | val acc % (mean ± half-width) | 95% CI (corrected) | std | per run (seed-major) | cv wall s |")
    print("|---|---|---|---|---|---|")
    for name, summary, wall in (("fashion_mnist_lenet", lenet, lenet_s), ("mnist_mlp (FashionMNIST)", mlp, mlp_s),
                                ("fashion_mnist_lenet, max_lr 0.0025", slower, slower_s)):
        print(f"| {name} | {line(summary)} | {wall:.0f} |")
    print("\n| comparison (A - B) | mean difference (points) | 95% CI (corrected) | p | n |")
    print("|---|---|---|---|---|")
    for name, c in (("LeNet-5 - MLP", nets), ("LeNet-5 max_lr 0.003 - 0.0025", rates)):
        low, high = c["ci95"]
        print(f"| {name} | {100 * c['mean_difference']:+.2f} | [{100 * low:+.2f}, {100 * high:+.2f}] | "
              f"{c['p_value']:.3g} | {c['n']} |")
    print("\n" + overhead(*timings, args.folds * args.seeds))

if __name__ == "__main__":
    main()
