"""The sin(1/x) experiment through the real CLI: fit -> test best -> resume last, in new processes."""

from __future__ import annotations

import pytest
import torch
import yaml

from experiments.entry import main
from tests.helpers import EXPERIMENTS, event_data, run_cli

SMALL = [
    "--data.train_size", "256", "--data.val_size", "128", "--data.test_size", "128",
    "--model.figure_every_n_epochs", "1", "--trainer.log_every_n_steps", "2", "--trainer.check_val_every_n_epoch", "1",
    # a constant rate: a one-cycle schedule cannot be extended from 3 to 5 epochs on resume
    "--model.lr_scheduler", "null",
]


def test_fit_test_best_resume_last(tmp_path):
    config = str(EXPERIMENTS / "sin_mlp.yaml")
    fit = run_cli("fit", "-c", config, "--trainer.max_epochs", "3", *SMALL, cwd=tmp_path)
    run_dir = tmp_path / "lightning_logs" / "sin_mlp" / "version_0"
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert "last.ckpt" in ckpts and any(n.startswith("best-") for n in ckpts), ckpts
    assert "Best checkpoint:" in fit.stdout and "val/mse =" in fit.stdout

    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["seed_everything"] == 137 and saved["experiment"] == "sin_mlp"
    assert (run_dir / "hparams.yaml").is_file()

    scalars, images = event_data(run_dir)
    for tag in ("train/loss", "train/loss_epoch", "val/loss", "val/mse", "val/mse_best", "lr-Adam", "epoch"):
        assert tag in scalars, (tag, sorted(scalars))
    assert "val/fit" in images
    assert len(scalars["val/mse"]) == 3  # once per epoch, not per step

    # test with `best` in a new process: finds version_0's best checkpoint, logs into that run
    test = run_cli("test", "-c", config, "--ckpt_path", "best", *SMALL, cwd=tmp_path)
    assert "test/mse" in test.stdout
    scalars, _ = event_data(run_dir)
    assert "test/mse" in scalars and "test/loss" in scalars
    assert (run_dir / "config.yaml").is_file() and (run_dir / "config_test.yaml").is_file()
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["ckpt_path"] is None  # fit's, kept

    # resume with `last`: same version, epoch count continues from 3 to 5
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["epoch"] == 2
    run_cli("fit", "-c", config, "--ckpt_path", "last", "--trainer.max_epochs", "5", *SMALL, cwd=tmp_path)
    versions = sorted(p.name for p in (tmp_path / "lightning_logs" / "sin_mlp").iterdir())
    assert versions == ["version_0"]
    resumed = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert resumed["epoch"] == 4 and resumed["global_step"] > last["global_step"]
    scalars, _ = event_data(run_dir)
    epochs = sorted({int(v) for _, v in scalars["epoch"]})
    assert epochs == [0, 1, 2, 3, 4]


def run_main(args, capsys) -> tuple[int, str, str]:
    """The CLI in this process (no interpreter start-up): exit code, stdout, stderr."""
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


BAD_INPUT = {
        ("--trainer.max_epochz", "3"): "unrecognized arguments: --trainer.max_epochz",
        ("--data.batch_size", "abc"): "Expected a <class 'int'>. Got value: abc",
        ("--model.net.init_args.depth", "3"): "depth=3 does not match hidden_sizes=[64, 64, 64]",
        ("--data.batch_size", "0"): "--data.batch_size must be >= 1, got 0",
        ("--ckpt_path", "best"): "--ckpt_path best: no runs (sweep trials are left out) with a best checkpoint",
        ("--ckpt_path", "nowhere.ckpt"): "--ckpt_path nowhere.ckpt: no such file",
        ("--model.optimizer.init_args.lr", "-1"): "--model.optimizer: Invalid learning rate: -1.0",
        ("--model.net.init_args.activation", "gelu"): "Expected a typing.Literal['relu'",
}


@pytest.mark.parametrize("args", list(BAD_INPUT), ids=[" ".join(a) for a in BAD_INPUT])
def test_bad_input_gives_one_line_error(args, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(["fit", "-c", str(EXPERIMENTS / "sin_mlp.yaml"), *args,
                             "--trainer.max_epochs", "1"], capsys)
    assert code == 2, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and BAD_INPUT[args] in errors[0], err
    assert "Traceback" not in err
    assert not list(tmp_path.rglob("*.ckpt"))  # nothing ran


def test_help_and_print_config(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, help_text, _ = run_main(["fit", "--help"], capsys)
    assert code == 0 and "--ckpt_path" in help_text and "--experiment" in help_text
    code, printed, _ = run_main(["fit", "-c", str(EXPERIMENTS / "sin_mlp.yaml"), "--data.batch_size", "128",
                                 "--print_config"], capsys)
    assert code == 0
    config = yaml.safe_load(printed)
    assert config["data"]["init_args"]["batch_size"] == 128
    assert config["model"]["init_args"]["net"]["init_args"]["hidden_sizes"] == [64, 64, 64]
    assert not (tmp_path / "lightning_logs").exists()  # printing runs nothing


NOISE = ("litlogger", "LeafSpec", "was configured so", "to estimate number of stepping batches",
         "is smaller than the logging interval", "exists and is not empty")


def test_output_is_what_a_user_needs(tmp_path):
    config = str(EXPERIMENTS / "sin_mlp.yaml")
    # a smoke run of a one-cycle schedule too short for its phases: the project's warning must show
    args = ["--data.train_size", "256", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "4",
            "--trainer.limit_val_batches", "1.0", "--model.lr_scheduler.init_args.pct_start", "0.25",
            "--model.figure_every_n_epochs", "0", "--trainer.enable_progress_bar", "false"]
    fit = run_cli("fit", "-c", config, *args, cwd=tmp_path)
    again = run_cli("fit", "-c", config, *args, "--ckpt_path", "last", cwd=tmp_path)  # into the same folder
    for result in (fit, again):
        output = result.stdout + result.stderr
        assert not [text for text in NOISE if text in output], output
    assert "Seed set to 137" in fit.stderr and "Logs:" in fit.stdout  # the other lines stay
    warnings = [line for line in fit.stderr.splitlines() if "OneCycleLR" in line]
    assert warnings == ["UserWarning: OneCycleLR: this short run has 4 steps, too few for pct_start 0.25; "
                        "using pct_start 0.5 so that every phase has a step"], fit.stderr
