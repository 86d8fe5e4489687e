"""The state a run's summary ends in: ``interrupted`` for Ctrl-C and SIGTERM, ``failed`` with the reason for
an error, also one raised during the sanity check before the first epoch.
"""

from __future__ import annotations

import json

import pytest

from experiments.entry import main
from tests.helpers import EXPERIMENTS, callback_arg, run_cli

SIN = ["-c", str(EXPERIMENTS / "sin_mlp.yaml"), "--data.init_args.train_size", "128", "--data.init_args.val_size",
       "64", "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
       "--model.init_args.figure_every_n_epochs", "0"]


@pytest.mark.process
@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_a_signal_leaves_the_run_interrupted(signal_name, tmp_path):
    stopped = run_cli("fit", *SIN, "--trainer.max_epochs", "5",
            "--trainer.callbacks+=" + callback_arg("SignalAtEpoch", epoch=2, signal_name=signal_name),
            cwd=tmp_path, check=False)
    summary = json.loads((tmp_path / "lightning_logs/sin_mlp/version_0/summary.json").read_text())
    assert summary["state"] == "interrupted" and summary["epochs"] == 2, summary
    # non-zero, as a shell expects of a process a signal stopped: `fit && export` goes no further
    assert stopped.returncode == {"SIGINT": 1, "SIGTERM": 143}[signal_name], stopped.stderr[-2000:]
    listed = run_cli("runs", "sin_mlp", "--csv", cwd=tmp_path).stdout
    assert ",interrupted," in listed


def test_a_failure_in_the_sanity_check_is_recorded_with_its_reason(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):  # a fraction of sin_mlp's single validation batch is none
        main(["fit", *SIN, "--trainer.limit_val_batches", "0.1"])
    summary = json.loads((tmp_path / "lightning_logs/sin_mlp/version_0/summary.json").read_text())
    assert summary["state"] == "failed" and "limit_val_batches" in summary["reason"], summary
