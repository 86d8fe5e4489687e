"""Two DDP ranks (gloo, CPU): each rank's random streams survive a SIGKILL, a NaN on one rank stops both."""

from __future__ import annotations

import time

import pytest
import torch

from datamodules.bundled.synthetic import write_cifar10
from tests.helpers import EXPERIMENTS, callback_arg, run_cli

DDP = ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
       "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


@pytest.mark.slow
def test_resumed_ranks_continue_their_own_random_streams(tmp_path):
    data = tmp_path / "data"
    write_cifar10(data, per_batch=36, n_test=20)
    common = ["-c", str(EXPERIMENTS / "cifar10_cnn.yaml"), "--data.init_args.data_dir", str(data),
              "--data.init_args.download", "false", "--data.init_args.verify_integrity", "false",
              "--data.init_args.val_size", "20", "--data.init_args.batch_size", "20",
              "--trainer.deterministic", "true", "--trainer.max_epochs", "3",
              "--model.init_args.net.init_args.widths", "[4, 8, 16]", "--model.init_args.net.init_args.hidden_sizes",
              "[16]", "--model.init_args.net.init_args.head_dropout", "0.5",  # dropout: draws from the torch stream
              "--model.init_args.figure_every_n_epochs", "0", *DDP]
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    for folder in (straight, crashed):
        folder.mkdir()
    record = callback_arg("RecordRandomDraws", folder="draws")
    run_cli("fit", *common, "--trainer.callbacks+=" + record, cwd=straight, timeout=600)
    killed = run_cli("fit", *common, "--trainer.callbacks+=" + record,
                     "--trainer.callbacks+=" + callback_arg("KillAfterEpoch", epoch=1), cwd=crashed, check=False,
                     timeout=600)
    assert killed.returncode == -9
    run_cli("fit", *common, "--ckpt_path", "last", "--trainer.callbacks+=" + record, cwd=crashed, timeout=600)

    def draws(folder, rank):
        return torch.load(folder / "draws" / f"rank{rank}_epoch2.pt")

    for rank in (0, 1):  # the epoch after the resume draws exactly what the uninterrupted run drew
        assert draws(crashed, rank) == draws(straight, rank), rank
    ours, theirs = draws(straight, 0), draws(straight, 1)
    assert ours["augment"] != theirs["augment"] and ours["torch"] != theirs["torch"]  # ranks draw differently
    weights = [torch.load(f / "lightning_logs/cifar10_cnn/version_0/checkpoints/last.ckpt",
                          weights_only=True)["state_dict"] for f in (straight, crashed)]
    for key, value in weights[0].items():
        assert torch.equal(value, weights[1][key]), key


@pytest.mark.slow
def test_nan_on_one_rank_stops_every_rank_at_once(tmp_path):
    started = time.monotonic()
    # 256 points, batch 64, two ranks: 2 steps per epoch; rank 1's loss is NaN at step 3 (epoch 1)
    result = run_cli("fit", "-c", str(EXPERIMENTS / "sin_mlp.yaml"), "--data.train_size", "256",
                     "--data.val_size", "64", "--trainer.max_epochs", "4", "--trainer.check_val_every_n_epoch", "1",
                     "--trainer.log_every_n_steps", "50", "--model.figure_every_n_epochs", "0",
                     "--trainer.callbacks+=" + callback_arg("NanLossOnRank", rank=1, step=3), *DDP,
                     cwd=tmp_path, check=False, timeout=120)  # a hang would wait for gloo's 30-minute timeout
    assert time.monotonic() - started < 120
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "train/loss became nan on rank 1 by step 4 (epoch 1)" in errors[0]
    last = torch.load(tmp_path / "lightning_logs/sin_mlp/version_0/checkpoints/last.ckpt", weights_only=True)
    assert last["epoch"] == 0 and all(torch.isfinite(v).all() for v in last["state_dict"].values())
