"""Scale out and survive: DDP shards, exact resume after SIGKILL, atomic checkpoints, bad input."""

from __future__ import annotations

import errno
import subprocess
import sys
import urllib.error

import lightning as L
import pytest
import torch

from datamodules import MNISTDataModule
from datamodules.bundled.synthetic import write_cifar10, write_mnist
from experiments.entry import main
from lit_models import ImageClassifier
from tests.helpers import EXPERIMENTS, callback_arg, cli_env, event_data, fingerprints, run_cli

SIN = str(EXPERIMENTS / "sin_mlp.yaml")
SIN_SMALL = ["--data.train_size", "256", "--data.val_size", "128", "--data.test_size", "128",
             "--trainer.check_val_every_n_epoch", "1", "--model.figure_every_n_epochs", "0",
             "--model.lr_scheduler", "null"]


def run_main(args, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    return exit_info.value.code, capsys.readouterr().err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    return lines[0]


@pytest.mark.slow
def test_ddp_two_ranks_disjoint_shards_synced_metrics_one_set_of_files(tmp_path):
    data = tmp_path / "data"
    write_mnist(data, n_train=1000, n_test=200)
    record = tmp_path / "seen"
    common = ["--data.init_args.data_dir", str(data), "--data.init_args.download", "false",
              "--data.init_args.val_size", "200", "--data.init_args.batch_size", "50",
              "--data.init_args.eval_batch_size", "64"]  # 100 per rank: a batch of 64 and one of 36
    run_cli("fit", "-c", str(EXPERIMENTS / "mnist_mlp.yaml"), *common, "--trainer.max_epochs", "2",
            "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
            "--trainer.callbacks+=" + callback_arg("RecordTrainSamples", folder=str(record)), cwd=tmp_path,
            timeout=600)
    dm = MNISTDataModule(data_dir=str(data), download=False, val_size=200)
    dm.setup()
    everything = set(fingerprints(dm.on_after_batch_transfer((dm.train[0], dm.train[1]), 0)[0]))
    assert len(everything) == 800
    for epoch in (0, 1):
        ranks = [set(torch.load(record / f"rank{r}_epoch{epoch}.pt")) for r in (0, 1)]
        assert not ranks[0] & ranks[1]  # disjoint
        assert ranks[0] | ranks[1] == everything  # and together the whole training split
    exp_dir = tmp_path / "lightning_logs" / "mnist_mlp"
    assert [p.name for p in exp_dir.iterdir()] == ["version_0"]
    run_dir = exp_dir / "version_0"
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert len(ckpts) == 2 and "last.ckpt" in ckpts
    # the accuracy DDP logged for the best checkpoint equals a one-device evaluation of it
    best = next(p for p in (run_dir / "checkpoints").iterdir() if p.name.startswith("best-"))
    checkpoint = torch.load(best, weights_only=False)
    logged = next(v["best_model_score"] for k, v in checkpoint["callbacks"].items() if "val/acc" in k).item()
    task = ImageClassifier.load_from_checkpoint(best)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    single = trainer.validate(task, MNISTDataModule(data_dir=str(data), download=False, val_size=200),
                              verbose=False)[0]["val/acc"]
    assert single == pytest.approx(logged, abs=1e-6)
    # and the loss DDP logged for the last epoch equals a one-device evaluation of the last weights
    # (a mean over samples: the short batches of each rank weigh by their samples)
    logged_loss = event_data(run_dir)[0]["val/loss"][-1][1]
    last = ImageClassifier.load_from_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    single_loss = trainer.validate(last, MNISTDataModule(data_dir=str(data), download=False, val_size=200,
                                                         eval_batch_size=200), verbose=False)[0]["val/loss"]
    assert single_loss == pytest.approx(logged_loss, rel=1e-5)


@pytest.mark.slow
def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path):
    data = tmp_path / "data"
    write_cifar10(data, per_batch=40, n_test=40)
    common = ["--data.init_args.data_dir", str(data), "--data.init_args.download", "false",
              "--data.init_args.verify_integrity", "false", "--data.init_args.val_size", "40",
              "--data.init_args.batch_size", "16", "--trainer.deterministic", "true", "--trainer.max_epochs", "3",
              "--model.init_args.net.init_args.widths", "[8, 16, 32]",
              "--model.init_args.net.init_args.hidden_sizes", "[32]",
              "--model.init_args.net.init_args.head_dropout", "0.5",  # random masks: needs the RNG restored
              "--model.init_args.figure_every_n_epochs", "0"]
    config = str(EXPERIMENTS / "cifar10_cnn.yaml")
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    straight.mkdir()
    crashed.mkdir()
    run_cli("fit", "-c", config, *common, cwd=straight)
    killed = run_cli("fit", "-c", config, *common, "--trainer.callbacks+=" + callback_arg("KillAfterEpoch", epoch=1),
                     cwd=crashed, check=False)
    assert killed.returncode == -9  # a real SIGKILL, no clean shutdown
    run_dir = crashed / "lightning_logs" / "cifar10_cnn" / "version_0"
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["epoch"] == 1
    run_cli("fit", "-c", config, *common, "--ckpt_path", "last", cwd=crashed)
    assert [p.name for p in run_dir.parent.iterdir()] == ["version_0"]  # same run, same TensorBoard version
    a = torch.load(straight / "lightning_logs/cifar10_cnn/version_0/checkpoints/last.ckpt", weights_only=False)
    b = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert a["epoch"] == b["epoch"] == 2
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    scalars, _ = event_data(run_dir)
    assert sorted({int(v) for _, v in scalars["epoch"]}) == [0, 1, 2]


@pytest.mark.slow
def test_concurrent_fits_get_distinct_runs(tmp_path):
    args = [sys.executable, "-m", "experiments", "fit", "-c", SIN, *SIN_SMALL, "--trainer.max_epochs", "2"]
    procs = [subprocess.Popen(args, cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()[-2000:]
    exp_dir = tmp_path / "lightning_logs" / "sin_mlp"
    assert sorted(p.name for p in exp_dir.iterdir()) == ["version_0", "version_1"]
    for version in ("version_0", "version_1"):
        assert (exp_dir / version / "checkpoints" / "last.ckpt").is_file()
    result = run_cli("test", "-c", SIN, *SIN_SMALL, "--ckpt_path", "last", cwd=tmp_path)
    assert "test/mse" in result.stdout
    assert (exp_dir / "version_1" / "config_test.yaml").is_file()  # the newest run, unambiguously
    assert not (exp_dir / "version_0" / "config_test.yaml").exists()


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    result = run_cli("fit", "-c", SIN, *SIN_SMALL, "--trainer.max_epochs", "5",
                     "--trainer.callbacks+=" + callback_arg("PoisonWeightsAtEpoch", epoch=2), cwd=tmp_path,
                     check=False)
    assert result.returncode == 2
    line = one_error_line(result.stderr)
    assert "train/loss became nan" in line and "(epoch 2)" in line
    last = torch.load(tmp_path / "lightning_logs/sin_mlp/version_0/checkpoints/last.ckpt", weights_only=False)
    assert last["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values())


def test_checkpoint_write_is_atomic_and_disk_full_is_clear(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    main(["fit", "-c", SIN, *SIN_SMALL, "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false"])
    ckpt_dir = tmp_path / "lightning_logs/sin_mlp/version_0/checkpoints"
    last = ckpt_dir / "last.ckpt"
    before = last.read_bytes()

    real_open = open

    class FullDisk:
        """A file that takes half of what is written, then fails like a full disk."""

        def __init__(self, path, mode):
            self.file = real_open(path, mode)

        def write(self, data):
            self.file.write(bytes(data)[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

    def patched_open(path, mode="r", *args, **kwargs):
        if "w" in mode and str(path).endswith(".tmp") and ".ckpt." in str(path):  # a checkpoint being written
            return FullDisk(path, mode)
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", patched_open)
    code, err = run_main(["fit", "-c", SIN, *SIN_SMALL, "--trainer.max_epochs", "2", "--ckpt_path", "last",
                          "--trainer.enable_progress_bar", "false"], capsys)
    monkeypatch.setattr("builtins.open", real_open)
    assert code == 2
    line = one_error_line(err)
    assert "could not write checkpoint" in line and "No space left on device" in line
    assert last.read_bytes() == before  # the earlier checkpoint is intact, byte for byte
    assert not list(ckpt_dir.glob(".*.tmp"))  # and no half-written leftovers
    assert torch.load(last, weights_only=False)["epoch"] == 0


BAD_CONFIG = {
    ("--model.init_args.net.class_path", "lit_models.nets.Nope"): "'lit_models.nets' has no attribute 'Nope'",
    ("--data.init_args.train_size", "-3"): "--data.train_size must be >= 1",
    ("--trainer.default_root_dir", "/dev/null/runs"): "cannot create the run folder /dev/null/runs",
}


@pytest.mark.parametrize("args", list(BAD_CONFIG), ids=[a[0] for a in BAD_CONFIG])
def test_more_bad_config_is_one_line(args, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, err = run_main(["fit", "-c", SIN, *SIN_SMALL, *args, "--trainer.max_epochs", "1"], capsys)
    assert code == 2
    assert BAD_CONFIG[args] in one_error_line(err)


def test_checkpoint_of_another_experiment_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_mnist(tmp_path / "data", n_train=200, n_test=50)
    mnist = ["--data.init_args.data_dir", str(tmp_path / "data"), "--data.init_args.download", "false",
             "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false"]
    main(["fit", "-c", str(EXPERIMENTS / "mnist_mlp.yaml"), *mnist])
    ckpt = tmp_path / "lightning_logs/mnist_mlp/version_0/checkpoints/last.ckpt"
    code, err = run_main(["test", "-c", SIN, *SIN_SMALL, "--ckpt_path", str(ckpt)], capsys)
    assert code == 2
    assert "belongs to experiment 'mnist_mlp', not 'sin_mlp'" in one_error_line(err)


def _mnist_fit_error(tmp_path, monkeypatch, capsys, config: str, *extra: str) -> str:
    """The one error line of a fit of ``config`` on synthetic MNIST files with ``extra`` options."""
    monkeypatch.chdir(tmp_path)
    write_mnist(tmp_path / "data", n_train=200, n_test=50)
    code, err = run_main(["fit", "-c", str(EXPERIMENTS / config), "--data.init_args.data_dir",
                          str(tmp_path / "data"), "--data.init_args.download", "false", *extra], capsys)
    assert code == 2
    return one_error_line(err)


def test_mnist_val_size_larger_than_data_is_one_line(tmp_path, monkeypatch, capsys):
    line = _mnist_fit_error(tmp_path, monkeypatch, capsys, "mnist_mlp.yaml", "--data.init_args.val_size", "5000")
    assert "--data.val_size=5000 leaves no training" in line


def test_no_network_with_download_on_is_one_line(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    dm = MNISTDataModule(data_dir=str(tmp_path), download=True)
    with pytest.raises(ConnectionError, match=r"could not download MNIST into .*--data.download false"):
        dm.prepare_data()


def test_extending_a_one_cycle_run_is_refused_up_front(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    small = [a for a in SIN_SMALL if a not in ("--model.lr_scheduler", "null")]
    main(["fit", "-c", SIN, *small, "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false"])
    code, err = run_main(["fit", "-c", SIN, *small, "--trainer.max_epochs", "3", "--ckpt_path", "last",
                          "--trainer.enable_progress_bar", "false"], capsys)
    assert code == 2
    assert "OneCycleLR schedule was planned for 4 steps but this run takes 12" in one_error_line(err)


def test_one_cycle_with_an_empty_phase_is_one_line(tmp_path, monkeypatch, capsys):
    # 4 steps with pct_start 0.25: torch's OneCycleLR would divide by zero in its constructor
    monkeypatch.chdir(tmp_path)
    small = [a for a in SIN_SMALL if a not in ("--model.lr_scheduler", "null")]
    code, err = run_main(["fit", "-c", SIN, *small, "--trainer.max_epochs", "1", "--trainer.enable_progress_bar",
                          "false", "--model.lr_scheduler.init_args.pct_start", "0.25"], capsys)
    assert code == 2
    assert "OneCycleLR with pct_start 0.25 over 4 steps has a phase of zero steps" in one_error_line(err)


def test_net_data_mismatch_through_the_cli_is_one_line(tmp_path, monkeypatch, capsys):
    line = _mnist_fit_error(tmp_path, monkeypatch, capsys, "mnist_lenet.yaml", "--data.init_args.pad", "0")
    assert "LeNet5 cannot take MNISTDataModule's images of shape (1, 28, 28)" in line and "pad 2" in line
    assert not list(tmp_path.rglob("*.ckpt"))
