"""The per-step cuts around Lightning: the CLI uses them, and each keeps Lightning's behaviour."""

from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest
from lightning.pytorch.profilers import SimpleProfiler

from experiments.cli import ExperimentCLI
from experiments.runtime import fast_paths
from tests.helpers import EXPERIMENTS, ROOT, cli_env

SMALL = ["--data.train_size", "128", "--data.val_size", "64", "--trainer.max_epochs", "1",
         "--model.figure_every_n_epochs", "0", "--trainer.enable_progress_bar", "false"]


def _cli(tmp_path, *args: str) -> ExperimentCLI:
    return ExperimentCLI(args=["-c", str(EXPERIMENTS / "sin_mlp.yaml"), "--trainer.default_root_dir", str(tmp_path),
                               *SMALL, *args], run=False)


def test_no_op_profiler_by_default_and_an_asked_for_profiler_still_records(tmp_path):
    assert isinstance(_cli(tmp_path).trainer.profiler, fast_paths.NoOpProfiler)
    cli = _cli(tmp_path, "--trainer.profiler", "simple")
    assert isinstance(cli.trainer.profiler, SimpleProfiler)
    cli.trainer.fit(cli.model, cli.datamodule)
    recorded = cli.trainer.profiler.recorded_durations
    assert recorded["run_training_batch"] and any("training_step" in name for name in recorded), sorted(recorded)


@pytest.mark.process
def test_nvml_check_is_dropped_exactly_when_the_driver_library_is_missing():
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
        driver = True
    except OSError:
        driver = False
    probe = "import os, experiments.cli; print(os.environ.get('PYTORCH_NVML_BASED_CUDA_CHECK'))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=cli_env({fast_paths.NVML_CHECK: "1"}),
                         capture_output=True, text=True, timeout=120, check=True).stdout.strip()
    assert out == ("1" if driver else "None")
