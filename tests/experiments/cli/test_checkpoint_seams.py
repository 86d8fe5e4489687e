"""Where the CLI, checkpoints and the task meet: what the user types wins, `best`, `last.ckpt`, short
schedules, EMA weights.
"""

from __future__ import annotations

import shutil

import lightning as L
import pytest
import torch
import yaml

from experiments.cli import ExperimentCLI
from experiments.entry import main
from experiments.runs import RunFolder, checkpoints
from lit_models.nets import Feedforward
from tests.helpers import EXPERIMENTS, synthetic_cifar_args

CNN = str(EXPERIMENTS / "cifar10_cnn.yaml")
SIN = str(EXPERIMENTS / "sin_mlp.yaml")
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    return [*synthetic_cifar_args(tmp_path_factory.mktemp("cifar") / "data", per_batch=20, batch_size=20),
            "--trainer.enable_model_summary", "false"]


def run_main(args, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    return exit_info.value.code, capsys.readouterr().err


def test_the_config_wins_over_the_checkpoint_except_the_net_architecture(cifar, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    small_net = ["--model.init_args.net.init_args.widths", "[4, 8, 16]",
                 "--model.init_args.net.init_args.hidden_sizes", "[16]", "--model.init_args.net.init_args.head_dropout",
                 "0.1"]
    main(["fit", "-c", CNN, *cifar, *small_net, "--model.init_args.label_smoothing", "0.3",
          "--trainer.max_epochs", "1"])
    run_dir = tmp_path / "lightning_logs" / "cifar10_cnn" / "version_0"

    # no net options typed: the net is the checkpoint's; tta_flip typed: it wins; label_smoothing is
    # the YAML's (0), not the 0.3 saved in the checkpoint
    main(["test", "-c", CNN, *cifar, "--ckpt_path", "best", "--model.init_args.tta_flip", "true"])
    model = yaml.safe_load((run_dir / "config_test.yaml").read_text())["model"]["init_args"]
    assert model["tta_flip"] is True and model["label_smoothing"] == 0.0
    assert model["net"]["init_args"]["widths"] == [4, 8, 16] and model["net"]["init_args"]["hidden_sizes"] == [16]

    # a typed net option that the weights cannot take: one line naming it
    code, err = run_main(["test", "-c", CNN, *cifar, "--ckpt_path", "best",
                          "--model.init_args.net.init_args.widths", "[4, 8, 32]"], capsys)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err, err[-2000:]
    assert "--model.init_args.net.init_args.widths contradicts the weights in" in errors[0]
    assert "trained with widths=[4, 8, 16]" in errors[0]
    # a typed net option that fits the same weights is taken (a dropout rate)
    main(["test", "-c", CNN, *cifar, "--ckpt_path", "best", "--model.net.head_dropout", "0.25"])
    model = yaml.safe_load((run_dir / "config_test.yaml").read_text())["model"]["init_args"]
    assert model["net"]["init_args"]["head_dropout"] == 0.25 and model["net"]["init_args"]["widths"] == [4, 8, 16]


def test_best_is_the_checkpoint_the_run_recorded(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(["fit", "-c", SIN, "--data.train_size", "128", "--data.val_size", "64", "--trainer.max_epochs", "2",
          "--trainer.check_val_every_n_epoch", "1", "--model.figure_every_n_epochs", "0", *QUIET])
    run_dir = tmp_path / "lightning_logs" / "sin_mlp" / "version_0"
    (recorded,) = run_dir.glob("checkpoints/best-*.ckpt")
    decoy = run_dir / "checkpoints" / "best-epoch999.ckpt"  # newer, and a higher epoch in its name
    shutil.copy(recorded, decoy)
    assert checkpoints.checkpoint_in(RunFolder(run_dir), "best") == recorded
    main(["test", "-c", SIN, "--data.train_size", "128", "--data.test_size", "64", "--ckpt_path", "best", *QUIET])
    assert yaml.safe_load((run_dir / "config_test.yaml").read_text())["ckpt_path"] == str(recorded)
    # without the record (no last.ckpt) the file name decides
    (run_dir / "checkpoints" / "last.ckpt").unlink()
    assert checkpoints.checkpoint_in(RunFolder(run_dir), "best") == decoy


class _LastCheckpointEpochs(L.Callback):
    """At the start of each epoch, the epoch recorded in last.ckpt (None: no file yet)."""

    def __init__(self) -> None:
        self.seen: list[int | None] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == 0:
            return
        path = trainer.checkpoint_callbacks[-1].dirpath + "/last.ckpt"
        try:
            self.seen.append(torch.load(path, weights_only=True, mmap=True)["epoch"])
        except FileNotFoundError:
            self.seen.append(None)


def test_last_checkpoint_is_written_after_every_epoch_even_when_validation_is_not(tmp_path):
    # sin_mlp validates every second epoch
    cli = ExperimentCLI(args=["-c", SIN, "--trainer.default_root_dir", str(tmp_path), "--data.train_size", "128",
                              "--data.val_size", "64", "--trainer.max_epochs", "4", "--model.lr_scheduler", "null",
                              "--model.figure_every_n_epochs", "0", *QUIET], run=False)
    assert cli.trainer.check_val_every_n_epoch == 2
    probe = _LastCheckpointEpochs()
    cli.trainer.callbacks.append(probe)
    cli.trainer.fit(cli.model, cli.datamodule)
    assert probe.seen == [0, 1, 2]


def test_a_smoke_run_shortens_one_cycle_phases_and_a_full_run_is_refused(cifar, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    resnet = [str(EXPERIMENTS / "cifar10_resnet18.yaml"), *cifar, "--data.init_args.batch_size", "16",
              "--model.init_args.net.init_args.widths", "[4, 8, 16, 32]", "--trainer.max_epochs", "1"]
    # 80 training images at batch 16 limited to 4 steps: pct_start 0.25 leaves an empty warm-up
    with pytest.warns(UserWarning, match=r"OneCycleLR: this short run has 4 steps, too few for pct_start 0.25"):
        main(["fit", "-c", *resnet, "--trainer.limit_train_batches", "4"])
    last = tmp_path / "lightning_logs" / "cifar10_resnet18" / "version_0" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True, mmap=True)["global_step"] == 4
    # the same length as a full run (batch 20: 4 steps per epoch) is a mistake: one line
    code, err = run_main(["fit", "-c", *resnet, "--data.init_args.batch_size", "20"], capsys)
    assert code == 2
    assert "OneCycleLR with pct_start 0.25 over 4 steps has a phase of zero steps" in err


def test_ema_preset_validates_and_saves_the_averaged_weights(tmp_path):
    decay = 0.5  # far from the current weights after a few steps
    cli = ExperimentCLI(args=["-c", SIN, "-c", str(EXPERIMENTS / "presets" / "ema.yaml"),
                              "--trainer.callbacks.init_args.decay", str(decay),
                              "--trainer.default_root_dir", str(tmp_path), "--data.train_size", "256",
                              "--data.val_size", "128", "--trainer.max_epochs", "1",
                              "--trainer.check_val_every_n_epoch", "1", "--model.lr_scheduler", "null",
                              "--model.figure_every_n_epochs", "0", *QUIET], run=False)

    class Steps(L.Callback):
        def __init__(self) -> None:
            self.weights: list[dict[str, torch.Tensor]] = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self.weights.append({k: v.detach().clone() for k, v in pl_module.net.state_dict().items()})

    steps = Steps()
    cli.trainer.callbacks.append(steps)
    cli.trainer.fit(cli.model, cli.datamodule)
    assert len(steps.weights) == 4
    ema = dict(steps.weights[0])
    for current in steps.weights[1:]:
        ema = {k: decay * ema[k] + (1 - decay) * current[k] for k in ema}
    assert not torch.allclose(ema["layers.0.linear.weight"], steps.weights[-1]["layers.0.linear.weight"])

    run_dir = tmp_path / "lightning_logs" / "sin_mlp" / "version_0"
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    for key, value in ema.items():
        torch.testing.assert_close(saved[f"net.{key}"], value)
    net = Feedforward(1, 1, [64, 64, 64])
    net.load_state_dict(ema)
    x, y = cli.datamodule.val
    with torch.no_grad():
        expected = torch.nn.functional.mse_loss(net(x), y).item()
    assert cli.trainer.callback_metrics["val/mse"].item() == pytest.approx(expected, rel=1e-5)
