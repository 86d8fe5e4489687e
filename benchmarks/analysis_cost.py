"""What the error analysis costs a ``test``: ``python -m benchmarks.analysis_cost --data_dir DATA [--fetch]``.

Trains ``fashion_mnist_lenet`` briefly on real Fashion-MNIST (``--epochs``, default 3), then runs ``test --ckpt_path
best`` on the 10k test images in this process, alternately with the analysis (the default) and without it (the
``ErrorAnalysis`` callback left out of the run's callbacks), ``--repeats`` times each; reports the median wall times
and their ratio. Copies the analysis figures to ``--figures`` when given.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from experiments.callbacks import ErrorAnalysis
from experiments.cli import ExperimentCLI, defaults

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.analysis_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", type=Path, required=True)
    parser.add_argument("--fetch", action="store_true")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--figures", type=Path, help="copy the analysis's PNGs here")
    args = parser.parse_args()
    if args.fetch:
        from benchmarks.accuracy import fetch_fashion_mnist

        fetch_fashion_mnist(args.data_dir)
    common = ["-c", str(ROOT / "experiments/fashion_mnist_lenet.yaml"), "--data.init_args.data_dir",
              str(args.data_dir.resolve()), "--data.init_args.download", "false", "--trainer.enable_progress_bar",
              "false", "--trainer.enable_model_summary", "false"]
    original = defaults.run_callbacks

    def without_analysis(*a, **k):
        return [c for c in original(*a, **k) if not isinstance(c, ErrorAnalysis)]

    here = os.getcwd()
    times: dict[str, list[float]] = {"with": [], "without": []}
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                ExperimentCLI(args=["fit", *common, "--trainer.max_epochs", str(args.epochs)], report=False)
                for _ in range(args.repeats):
                    for side in ("without", "with"):
                        defaults.run_callbacks = without_analysis if side == "without" else original
                        start = time.perf_counter()
                        cli = ExperimentCLI(args=["test", *common, "--ckpt_path", "best"], report=False)
                        times[side].append(time.perf_counter() - start)
                        del cli
            defaults.run_callbacks = original
            analysis = Path("lightning_logs/fashion_mnist_lenet/version_0/analysis")
            if args.figures:
                args.figures.mkdir(parents=True, exist_ok=True)
                for name in ("reliability.png", "top_losses.png", "confusion_normalized.png"):
                    shutil.copy(analysis / name, args.figures / name)
            head = (analysis / "most_confused.csv").read_text().splitlines()[:4]
        finally:
            defaults.run_callbacks = original
            os.chdir(here)
    plain, full = statistics.median(times["without"]), statistics.median(times["with"])
    print(f"test of fashion_mnist_lenet on the 10k test images ({args.epochs} epochs trained), medians of "
          f"{args.repeats}: without the analysis {plain:.2f} s, with it {full:.2f} s: +{100 * (full / plain - 1):.1f}% "
          f"(each: {', '.join(f'{t:.2f}' for t in times['without'])} / {', '.join(f'{t:.2f}' for t in times['with'])})")
    print("most_confused.csv:\n" + "\n".join(head))


if __name__ == "__main__":
    main()
