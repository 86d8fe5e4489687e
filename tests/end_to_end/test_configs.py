"""Every experiment YAML fits two steps through the CLI on synthetic files; every preset composes with every
experiment (the whole matrix instantiates; each preset that changes the loop fits on each kind of data).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch.callbacks import BackboneFinetuning, EMAWeightAveraging
from lightning.pytorch.loggers import MLFlowLogger, TensorBoardLogger
from lightning.pytorch.loggers.logger import DummyLogger
from lightning.pytorch.profilers import SimpleProfiler
from lightning.pytorch.strategies import DDPStrategy
from torchvision.models import alexnet, resnet18

from datamodules.bundled.synthetic import write_cifar10, write_mnist
from experiments.cli import ExperimentCLI
from experiments.entry import main
from experiments.tracking import RunCSVLogger
from tests.helpers import EXPERIMENTS
from tests.image_folders import write_image_folder

EXPERIMENT_FILES = sorted(EXPERIMENTS.glob("*.yaml"))
PRESETS = sorted((EXPERIMENTS / "presets").glob("*.yaml"))
#: one experiment of each kind of data, the part of each matrix that ``make test-fast`` keeps (the rest is slow)
FAST_KINDS = ("sin_mlp", "mnist_lenet", "cifar10_cnn", "folder_resnet18")


def tiered(values: list, ids: list[str], fast: list[bool]) -> list:
    """``values`` as parameters, those not in the fast tier marked slow."""
    return [pytest.param(*(v if isinstance(v, tuple) else (v,)), id=i, marks=() if f else pytest.mark.slow)
            for v, i, f in zip(values, ids, fast, strict=True)]


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory) -> str:
    """One SQLite tracking store for the matrices' MLflow runs, as a team shares one: a store of its own per test
    would create and migrate a database each time (seconds), and the default store has its own tests.
    """
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def tracked(request, mlflow_store, monkeypatch) -> None:
    """With the mlflow preset, its runs go to the shared store."""
    if "mlflow" in request.node.name:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_store)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inputs")
    write_mnist(root / "data", n_train=200, n_test=50)
    write_mnist(root / "data", n_train=200, n_test=50, name="FashionMNIST")
    write_cifar10(root / "data", per_batch=20, n_test=20)
    torch.manual_seed(0)
    torch.save(alexnet(weights=None).state_dict(), root / "alexnet-owt-7be5be79.pth")
    torch.save(resnet18(weights=None).state_dict(), root / "resnet18-f37072fd.pth")
    write_image_folder(root / "photos", per_class=(12, 8), size=(40, 30))
    return {"data": root / "data", "weights": root / "alexnet-owt-7be5be79.pth", "photos": root / "photos",
            "resnet18": root / "resnet18-f37072fd.pth"}


def overrides(config: Path, inputs: dict[str, Path]) -> list[str]:
    """What points an experiment at the synthetic files and keeps it small; nothing else changes."""
    spec = yaml.safe_load(config.read_text())
    data_class = spec["data"]["class_path"].rsplit(".", 1)[-1]
    args = {
        "SinDataModule": ["--data.init_args.train_size", "64", "--data.init_args.val_size", "32"],
        "MNISTDataModule": ["--data.init_args.data_dir", str(inputs["data"]), "--data.init_args.download", "false",
                            "--data.init_args.batch_size", "16", "--data.init_args.val_size", "0.2"],
        "CIFAR10DataModule": ["--data.init_args.data_dir", str(inputs["data"]), "--data.init_args.download", "false",
                              "--data.init_args.verify_integrity", "false", "--data.init_args.val_size", "20",
                              "--data.init_args.batch_size", "4", "--data.init_args.eval_batch_size", "20"],
        "ImageFolderDataModule": ["--data.init_args.root", str(inputs["photos"]), "--data.init_args.image_size", "32",
                                  "--data.init_args.batch_size", "4", "--data.init_args.val_size", "0.25",
                                  "--data.init_args.decode_workers", "0"],
    }[data_class]
    net = spec["model"]["init_args"]["net"]
    if "AlexNet" in net["class_path"] or net["init_args"].get("name") == "alexnet":
        args += ["--model.init_args.net.init_args.weights", str(inputs["weights"])]
    elif net["init_args"].get("name") == "resnet18":
        args += ["--model.init_args.net.init_args.weights", str(inputs["resnet18"])]
    if "alexnet" in config.stem and data_class == "ImageFolderDataModule":
        args[args.index("32")] = "64"  # AlexNet's 11x11/4 stem and three pools need more than 32 px
    return args


@pytest.mark.parametrize("config", tiered(EXPERIMENT_FILES, [p.stem for p in EXPERIMENT_FILES],
                                           [p.stem in FAST_KINDS for p in EXPERIMENT_FILES]))
def test_every_experiment_fits_two_steps(config, inputs, tmp_path):
    main(["fit", "-c", str(config), *overrides(config, inputs), "--trainer.default_root_dir", str(tmp_path),
          "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1", "--trainer.num_sanity_val_steps", "0",
          "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
          "--model.init_args.figure_every_n_epochs", "0"])
    run = tmp_path / "lightning_logs" / config.stem / "version_0"
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True, mmap=True)
    assert last["global_step"] == 2 and last["litexp_experiment"] == config.stem
    assert yaml.safe_load((run / "config.yaml").read_text())["experiment"] == config.stem


def pretrained_backbone(config: Path) -> bool:
    return "alexnet" in config.stem or config.stem.startswith("folder_")


PRESET_EFFECT = {
    "cpu": lambda t: t.accelerator.__class__.__name__ == "CPUAccelerator" and t.precision == "32-true",
    "csv": lambda t: isinstance(t.loggers[0], TensorBoardLogger) and isinstance(t.loggers[1], RunCSVLogger),
    "ddp": lambda t: isinstance(t.strategy, DDPStrategy),
    "debug": lambda t: bool(t.fast_dev_run) and isinstance(t.logger, DummyLogger),
    "ema": lambda t: any(isinstance(c, EMAWeightAveraging) for c in t.callbacks),
    "mlflow": lambda t: isinstance(t.loggers[0], TensorBoardLogger) and isinstance(t.loggers[1], MLFlowLogger),
    "limit": lambda t: t.limit_train_batches == 20 and t.limit_val_batches == 5 and t.max_epochs == 2,
    "overfit": lambda t: t.overfit_batches == 1,
    "profile": lambda t: isinstance(t.profiler, SimpleProfiler),
    "unfreeze": lambda t: any(isinstance(c, BackboneFinetuning) for c in t.callbacks),
}


MATRIX = [(p, c) for p in PRESETS for c in EXPERIMENT_FILES]


@pytest.mark.parametrize("preset, config", tiered(MATRIX, [f"{p.stem}+{c.stem}" for p, c in MATRIX],
                                                   [c.stem == "mnist_lenet" for _, c in MATRIX]))
def test_every_preset_instantiates_with_every_experiment(preset, config, inputs, tracked, tmp_path):
    assert preset.stem in PRESET_EFFECT, f"a new preset: say what it does in PRESET_EFFECT ({preset.name})"
    extra = ["--trainer.accelerator", "cpu"] if preset.stem == "ddp" else []
    args = ["-c", str(config), "-c", str(preset), *overrides(config, inputs), *extra,
            "--trainer.default_root_dir", str(tmp_path)]
    if preset.stem == "unfreeze" and not pretrained_backbone(config):
        with pytest.raises(ValueError, match="has none: drop that preset"):
            ExperimentCLI(args=args, run=False)
        return
    cli = ExperimentCLI(args=args, run=False)
    assert PRESET_EFFECT[preset.stem](cli.trainer), preset.stem


#: one experiment per kind of data; the pretrained backbone (slow at 224 px) for the preset that needs it.
#: ddp's own tests are in test_ddp.py
FIT_WITH = ["sin_mlp", "mnist_lenet", "cifar10_cnn"]
LOOP_PRESETS = [p for p in PRESETS if p.stem != "ddp"]
FITS = [(p, e) for p in LOOP_PRESETS for e in FIT_WITH] + [(EXPERIMENTS / "presets" / "unfreeze.yaml",
                                                             "cifar10_alexnet")]


@pytest.mark.parametrize("preset, experiment", tiered(FITS, [f"{p.stem}+{e}" for p, e in FITS],
                                                       [e == "sin_mlp" for _, e in FITS]))
def test_every_preset_fits_each_kind_of_experiment(preset, experiment, inputs, tracked, tmp_path, capsys):
    config = EXPERIMENTS / f"{experiment}.yaml"
    args = ["fit", "-c", str(config), "-c", str(preset), *overrides(config, inputs),
            "--trainer.default_root_dir", str(tmp_path), "--trainer.max_epochs", "1",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--model.init_args.figure_every_n_epochs", "0"]
    if preset.stem == "overfit":
        args += ["--trainer.check_val_every_n_epoch", "1"]
    if preset.stem == "unfreeze" and not pretrained_backbone(config):  # no backbone to unfreeze: one line, no run
        with pytest.raises(SystemExit) as stopped:
            main(args)
        assert stopped.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "has none: drop that preset" in err[0] and "Traceback" not in err[0]
        assert not (tmp_path / "lightning_logs").exists()
        return
    main(args)
    if preset.stem == "debug":  # fast_dev_run: no run folder by design
        return
    (run,) = (tmp_path / "lightning_logs" / experiment).iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["state"] in ("finished", "stopped early"), summary
    if preset.stem in ("csv", "mlflow"):  # beside TensorBoard, into the run folder / the run's MLflow run
        assert (run / {"csv": "csv/metrics.csv", "mlflow": "mlflow.json"}[preset.stem]).is_file()
