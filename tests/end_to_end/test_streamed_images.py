"""The streamed path of the folder module (LitData chunks), forced on: every training sample once per epoch, the
same test accuracy as the in-memory path; under 2-rank DDP, streamed or in memory, every training sample once per
epoch across the ranks.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchvision

from tests.helpers import EXPERIMENTS, callback_arg, run_cli
from tests.image_folders import write_image_folder

pytestmark = pytest.mark.slow

DDP = ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]


def common(tmp_path: Path) -> list[str]:
    photos = tmp_path / "photos"
    if not photos.exists():
        write_image_folder(photos, per_class=(14, 11, 9), size=(40, 30))
        torch.manual_seed(0)
        torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "resnet18.pth")
    return ["-c", str(EXPERIMENTS / "folder_resnet18.yaml"), "--data.root", str(photos), "--data.image_size", "32",
            "--data.batch_size", "4", "--data.test_size", "0.2", "--data.crop_scale", "[1.0, 1.0]",
            "--data.flip", "false", "--data.decode_workers", "2", "--trainer.deterministic", "true",
            "--model.init_args.net.init_args.weights", str(tmp_path / "resnet18.pth"),
            "--model.init_args.figure_every_n_epochs", "0", "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false"]


def accuracy_of(run: Path) -> float:
    return json.loads((run / "summary.json").read_text())["test"]["metrics"]["test/acc"]


def samples(folder: Path, epoch: int, ranks: int) -> list[list[int]]:
    return [torch.load(folder / f"rank{r}_epoch{epoch}.pt") for r in range(ranks)]


def test_streamed_like_in_memory_each_sample_once(tmp_path):
    args = common(tmp_path)
    record = tmp_path / "record"
    run_cli("fit", *args, "--data.storage", "stream", "--trainer.max_epochs", "2",
            "--trainer.callbacks+=" + callback_arg("RecordTrainSamples", folder=str(record)), cwd=tmp_path)
    run = tmp_path / "lightning_logs/folder_resnet18/version_0"
    report = json.loads((run / "data_report.json").read_text())
    assert report["storage"] == "stream" and sum(report["streamed"].values()) == 34 and not report["skipped"]
    assert list((tmp_path / "photos/.litexp-cache").glob("stream-37px-3c-*/complete"))
    train = report["streamed"]["train"]
    epochs = [samples(record, epoch, 1)[0] for epoch in (0, 1)]
    for seen in epochs:  # one process: nothing dropped, each training sample once
        assert len(seen) == len(set(seen)) == train
    assert epochs[0] != epochs[1] and sorted(epochs[0]) == sorted(epochs[1])  # reshuffled every epoch
    run_cli("test", *args, "--data.storage", "stream", "--ckpt_path", "best", cwd=tmp_path)
    streamed = accuracy_of(run)
    run_cli("test", *args, "--data.storage", "memory", "--ckpt_path", "best", cwd=tmp_path)
    assert accuracy_of(run) == pytest.approx(streamed, abs=1e-6)  # the same files, decoded and prepared alike


@pytest.mark.parametrize("storage", ["stream", "memory"])
def test_under_ddp_every_sample_once_per_epoch(tmp_path, storage):
    args = common(tmp_path) + ["--data.storage", storage]
    record = tmp_path / "record"
    run_cli("fit", *args, *DDP, "--trainer.max_epochs", "2",
            "--trainer.callbacks+=" + callback_arg("RecordTrainSamples", folder=str(record)), cwd=tmp_path,
            timeout=600)
    run = tmp_path / "lightning_logs/folder_resnet18/version_0"
    report = json.loads((run / "data_report.json").read_text())  # written once, by rank 0, on every rank's way
    train = sum(report["images"]["train"].values())
    assert train == 24 and report.get("storage", "memory") == storage
    orders = []
    for epoch in (0, 1):
        ranks = samples(record, epoch, 2)
        assert len(ranks[0]) == len(ranks[1]) == train // 2  # equal steps per rank (24 splits evenly)
        assert not set(ranks[0]) & set(ranks[1])  # disjoint
        assert len(set(ranks[0]) | set(ranks[1])) == train  # together the whole training split
        orders.append(ranks[0] + ranks[1])
    assert orders[0] != orders[1]  # reshuffled every epoch
    assert (run / "checkpoints/last.ckpt").is_file()
    tested = run_cli("test", *args, *DDP, "--ckpt_path", "best", cwd=tmp_path, timeout=600)
    assert tested.returncode == 0 and 0.0 <= accuracy_of(run) <= 1.0


def test_streamed_under_ddp_sigkill_then_resume_continues_the_same_order(tmp_path):
    """LitData counts epochs in its loader; a run resumed from last.ckpt gets that count back from the data
    module's checkpoint state, so every rank's epochs 1 and 2 come in the uninterrupted run's order (without it,
    epoch 1 repeated epoch 0's order).
    """
    args = common(tmp_path) + ["--data.storage", "stream", "--trainer.max_epochs", "3", *DDP]
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    for folder in (straight, crashed):
        folder.mkdir()
    run_cli("fit", *args, "--trainer.callbacks+=" + callback_arg("RecordTrainSamples", folder=str(straight / "seen")),
            cwd=straight, timeout=600)
    record = "--trainer.callbacks+=" + callback_arg("RecordTrainSamples", folder=str(crashed / "seen"))
    killed = run_cli("fit", *args, record, "--trainer.callbacks+=" + callback_arg("KillAfterEpoch", epoch=0),
                     cwd=crashed, check=False, timeout=600)
    assert killed.returncode == -9  # a real SIGKILL after epoch 0's checkpoints
    run_cli("fit", *args, record, "--ckpt_path", "last", cwd=crashed, timeout=600)
    for epoch in (0, 1, 2):
        assert samples(straight / "seen", epoch, 2) == samples(crashed / "seen", epoch, 2), epoch
    assert samples(crashed / "seen", 0, 2) != samples(crashed / "seen", 1, 2)
    # the weights are not compared: two uninterrupted 2-rank CPU runs of this net already differ after epoch 0
    # with identical batches on each rank (numerics, not data order)
    last = torch.load(crashed / "lightning_logs/folder_resnet18/version_0/checkpoints/last.ckpt", weights_only=False)
    assert last["epoch"] == 2
