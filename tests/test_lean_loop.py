"""The per-step cuts around Lightning: the CLI uses them, and each keeps Lightning's behaviour."""

from __future__ import annotations

import ctypes

import pytest
from lightning.pytorch import callbacks
from lightning.pytorch.profilers import SimpleProfiler

from experiments import lean_loop
from experiments.cli import ExperimentCLI
from tests.helpers import EXPERIMENTS


def _trainer(tmp_path, *args: str):
    cli = ExperimentCLI(args=["-c", str(EXPERIMENTS / "sin_mlp.yaml"), "--trainer.default_root_dir", str(tmp_path),
                              *args], run=False)
    return cli.trainer


def test_cli_uses_the_no_op_profiler_unless_one_is_asked_for(tmp_path):
    assert isinstance(_trainer(tmp_path).profiler, lean_loop.NoOpProfiler)
    assert isinstance(_trainer(tmp_path, "--trainer.profiler", "simple").profiler, SimpleProfiler)


def test_no_op_profiler_scopes_run_their_body():
    ran = []
    with lean_loop.NoOpProfiler().profile("action"):
        ran.append(1)
    with pytest.raises(KeyError), lean_loop.NoOpProfiler().profile("action"):
        raise KeyError("not swallowed")
    assert ran == [1]


def test_checkpoint_state_key_is_lightnings_and_follows_its_settings(tmp_path):
    kwargs = dict(monitor="val/mse", mode="min", every_n_epochs=2)
    ours, theirs = lean_loop.ModelCheckpoint(**kwargs), callbacks.ModelCheckpoint(**kwargs)
    assert ours.state_key == theirs.state_key  # checkpoints written by either restore into the other
    ours.monitor = theirs.monitor = "val/loss"
    assert ours.state_key == theirs.state_key and "val/loss" in ours.state_key
    keys = [type(c) for c in _trainer(tmp_path).callbacks if isinstance(c, callbacks.ModelCheckpoint)]
    assert keys == [lean_loop.ModelCheckpoint, lean_loop.ModelCheckpoint]


def test_nvml_check_is_dropped_only_without_the_driver(monkeypatch):
    monkeypatch.setenv(lean_loop.NVML_CHECK, "1")
    monkeypatch.setattr(ctypes, "CDLL", lambda name: object())  # a driver is installed
    lean_loop.drop_nvml_probe_without_driver()
    assert lean_loop.os.environ.get(lean_loop.NVML_CHECK) == "1"

    def missing(name):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", missing)
    lean_loop.drop_nvml_probe_without_driver()
    assert lean_loop.NVML_CHECK not in lean_loop.os.environ
