"""``tune``: Lightning's learning-rate finder through the config's own optimizer and one-cycle schedule, written as a
config that ``fit`` runs; the batch-size finder capped by the training split.
"""

from __future__ import annotations

import math

import pytest
import yaml

from experiments.tune import batch_trials, configured_lr, steepest_fall, tuned_config
from tests.helpers import EXPERIMENTS, run_cli

SIN = str(EXPERIMENTS / "sin_mlp.yaml")


def test_the_suggestion_goes_where_the_config_keeps_its_rate():
    one_cycle = {"model": {"init_args": {"optimizer": {"init_args": {"lr": 0.005}},
                                         "lr_scheduler": {"class_path": "torch.optim.lr_scheduler.OneCycleLR",
                                                          "init_args": {"max_lr": 0.005}}}},
                 "min_lr": 1e-6, "config": ["x.yaml"], "data": {"init_args": {"batch_size": 64}}}
    tuned = tuned_config(one_cycle, 0.02, 256)
    assert configured_lr(one_cycle) == 0.005 and configured_lr(tuned) == 0.02
    assert tuned["model"]["init_args"]["lr_scheduler"]["init_args"]["max_lr"] == 0.02
    assert tuned["data"]["init_args"]["batch_size"] == 256 and "min_lr" not in tuned and "config" not in tuned
    assert one_cycle["model"]["init_args"]["optimizer"]["init_args"]["lr"] == 0.005  # the input is left alone
    cosine = {"model": {"init_args": {"optimizer": {"init_args": {"lr": 0.1}},
                                      "lr_scheduler": {"class_path": "lit_models.schedules.CosineAnnealingLR"}}}}
    assert tuned_config(cosine, 0.3, None)["model"]["init_args"]["optimizer"]["init_args"]["lr"] == 0.3
    assert "init_args" not in tuned_config(cosine, 0.3, None)["model"]["init_args"]["lr_scheduler"]


def test_the_suggestion_is_the_steepest_fall_per_decade():
    lrs = [10 ** (-6 + 6 * i / 99) for i in range(100)]  # the finder's exponential ladder, 1e-6 to 1
    # a loss that falls fastest around 1e-2 (a logistic step in log10 rate), with a wiggle of 1e-4 at the start,
    # which Lightning's derivative in the rate itself (tiny steps there) would take for the steepest point
    losses = [2.0 - 1.0 / (1 + math.exp(-4 * (math.log10(lr) + 2))) + (1e-4 if i == 12 else 0.0)
              for i, lr in enumerate(lrs)]
    chosen = steepest_fall(lrs, losses)
    assert abs(math.log10(lrs[chosen]) + 2) <= 0.1
    assert steepest_fall(lrs[:5], losses[:5]) is None


def test_batch_trials_never_pass_the_split_or_the_cap():
    assert batch_trials(64, 1000, 1024) == 3  # 128, 256, 512: the next (1024) would pass 1000 samples
    assert batch_trials(64, 50, 1024) == 0 and batch_trials(32, 10_000, 128) == 2


def test_tune_writes_a_config_that_fit_runs(tmp_path):
    found = run_cli("tune", "-c", SIN, "--num_training", "40", "--batch_size", "true", "--max_batch_size", "256",
                    "--trainer.enable_progress_bar", "false", cwd=tmp_path)
    folder = tmp_path / "lightning_logs/sin_mlp/tune"
    tuned = yaml.safe_load((folder / "tuned.yaml").read_text())
    lr = tuned["model"]["init_args"]["lr_scheduler"]["init_args"]["max_lr"]
    assert math.isfinite(lr) and 1e-6 <= lr <= 1.0 and tuned["model"]["init_args"]["optimizer"]["init_args"]["lr"] == lr
    assert f"suggested learning rate: {lr:.3g}" in found.stdout and "the config trains at 0.005" in found.stdout
    assert 64 <= tuned["data"]["init_args"]["batch_size"] <= 256 and (folder / "lr_find.png").stat().st_size > 1000
    run_cli("fit", "-c", str(folder / "tuned.yaml"), "--trainer.max_epochs", "2", "--trainer.enable_progress_bar",
            "false", cwd=tmp_path)
    assert (tmp_path / "lightning_logs/sin_mlp/version_0/checkpoints/last.ckpt").is_file()


@pytest.mark.parametrize("option, value, message", [("--min_lr", "2", "need 0 < min_lr < max_lr"),
                                                    ("--num_training", "3", "at least 10 rates")])
def test_bad_search_options_are_one_line(option, value, message, tmp_path):
    from tests.experiments.trained_runs import one_error_line

    refused = run_cli("tune", "-c", SIN, option, value, cwd=tmp_path, check=False)
    assert message in one_error_line(refused)
