"""``fit --test_after_fit true``: the best checkpoint tested in the same process, into the same run and
summary.json, with the values a separate ``test --ckpt_path best`` gives.
"""

from __future__ import annotations

import json

import pytest

from experiments.entry import main
from tests.helpers import EXPERIMENTS

SIN = ["-c", str(EXPERIMENTS / "sin_mlp.yaml"), "--data.train_size", "128", "--data.val_size", "64",
       "--data.test_size", "50", "--trainer.max_epochs", "4", "--trainer.check_val_every_n_epoch", "1",
       "--model.figure_every_n_epochs", "0", "--trainer.enable_progress_bar", "false",
       "--trainer.enable_model_summary", "false"]


def test_fit_then_test_in_one_command_equals_a_separate_test(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    main(["fit", *SIN, "--test_after_fit", "true"])
    run = tmp_path / "lightning_logs" / "sin_mlp" / "version_0"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["state"] == "finished" and summary["test"]["checkpoint"].startswith("best-")
    in_fit = summary["test"]["metrics"]
    assert "Testing" in capsys.readouterr().out
    main(["test", *SIN, "--ckpt_path", "best"])
    separate = json.loads((run / "summary.json").read_text())["test"]["metrics"]
    assert in_fit.keys() == separate.keys() and in_fit["test/mse"] == pytest.approx(separate["test/mse"], rel=1e-6)
    assert [p.name for p in run.parent.iterdir()] == ["version_0"]  # the same run, no second one


def test_only_with_fit(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["test", *SIN, "--ckpt_path", "best", "--test_after_fit", "true"])
    assert "--test_after_fit is an option of fit, not test" in capsys.readouterr().err


@pytest.mark.slow
def test_under_ddp_every_test_sample_counts_once(tmp_path):
    from tests.helpers import run_cli

    run_cli("fit", *SIN, "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
            "--data.test_size", "51", "--test_after_fit", "true", cwd=tmp_path, timeout=300)  # 51: uneven shards
    run = tmp_path / "lightning_logs" / "sin_mlp" / "version_0"
    in_fit = json.loads((run / "summary.json").read_text())["test"]["metrics"]
    run_cli("test", *SIN, "--data.test_size", "51", "--ckpt_path", "best", cwd=tmp_path)
    single = json.loads((run / "summary.json").read_text())["test"]["metrics"]
    assert in_fit["test/mse"] == pytest.approx(single["test/mse"], rel=1e-5)
