"""The sweep's own cost per trial, beyond a plain ``fit`` of the same config: ``python -m benchmarks.sweep_overhead``.

Runs an N-trial sweep of sin(1/x) (in this process, as the command does), then the same N configs as
plain in-process fits, alternating nothing else, and reports (sweep wall time - fits wall time) / N,
plus the sweep's one-off start (option checks, study creation) measured separately.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sqlite3
import tempfile
import time
from pathlib import Path

import yaml

from experiments.cli import ExperimentCLI
from experiments.sweep import command as sweep_command
from experiments.sweep.study import Sweep

ROOT = Path(__file__).resolve().parents[1]
SIN = ["-c", str(ROOT / "experiments/sin_mlp.yaml"), "--data.init_args.train_size", "256",
       "--trainer.max_epochs", "2", "--trainer.enable_progress_bar", "false",
       "--trainer.enable_model_summary", "false"]
LR = "model.init_args.lr_scheduler.init_args.max_lr"


def measure(n_trials: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        here = os.getcwd()
        os.chdir(folder)
        try:
            spec = {"n_trials": n_trials, "parameters": {LR: {"type": "float", "low": 1e-3, "high": 3e-2, "log": True}}}
            Path("sweep.yaml").write_text(yaml.safe_dump(spec))
            out = io.StringIO()
            start = time.perf_counter()
            with contextlib.redirect_stdout(out):
                args, rest = sweep_command.parse([*SIN, "--sweep", "sweep.yaml"])
                runner = Sweep(args, rest)
                ready = time.perf_counter()
                runner.run()
            swept = time.perf_counter() - ready
            setup = ready - start
            with sqlite3.connect("lightning_logs/sin_mlp/sweeps/sweep.db") as db:
                values = [row[0] for row in db.execute("SELECT param_value FROM trial_params ORDER BY trial_id")]
            start = time.perf_counter()
            with contextlib.redirect_stdout(out):
                for value in values:
                    ExperimentCLI(args=["fit", *SIN, f"--{LR}", str(value)], report=False)
            plain = time.perf_counter() - start
        finally:
            os.chdir(here)
    return {"trials": n_trials, "sweep_s": swept, "fits_s": plain, "setup_s": setup,
            "overhead_per_trial_s": (swept - plain) / n_trials}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sweep_overhead", description=__doc__)
    parser.add_argument("--trials", type=int, default=8)
    result = measure(parser.parse_args().trials)
    print(f"{result['trials']} trials: sweep {result['sweep_s']:.2f} s, the same fits in-process "
          f"{result['fits_s']:.2f} s, overhead per trial {result['overhead_per_trial_s']:.3f} s; "
          f"one-off start (option checks, study) {result['setup_s']:.2f} s")


if __name__ == "__main__":
    main()
