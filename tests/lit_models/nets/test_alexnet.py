"""AlexNet fine-tuning: local weights, clear errors offline and on bad files, freezing, unfreezing."""

from __future__ import annotations

import urllib.error
from functools import partial

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import BackboneFinetuning
from torchvision.models import AlexNet_Weights, alexnet

from datamodules import CIFAR10DataModule
from datamodules.bundled.synthetic import write_cifar10
from experiments.entry import main
from lit_models import ImageClassifier
from lit_models.nets import AlexNetClassifier
from tests.helpers import EXPERIMENTS, event_data, run_cli


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "alexnet-owt-7be5be79.pth"
    torch.save(alexnet(weights=None).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar") / "data"
    write_cifar10(root, per_batch=40, n_test=40)
    return root


def test_local_weights_load_into_every_backbone_tensor(weights_file):
    net = AlexNetClassifier(num_classes=10, weights=str(weights_file))
    saved = torch.load(weights_file, weights_only=True)
    for key, value in net.state_dict().items():
        if key.startswith("classifier.6"):
            assert value.shape[0] == 10
        else:
            assert torch.equal(value, saved[key]), key
    assert net(torch.zeros(2, 3, 224, 224)).shape == (2, 10)


def test_bad_weight_files_say_what_differs(weights_file, tmp_path):
    state = torch.load(weights_file, weights_only=True)
    renamed = dict(state)
    renamed["features.0.kernel"] = renamed.pop("features.0.weight")
    torch.save(renamed, tmp_path / "renamed.pth")
    with pytest.raises(ValueError, match=r"missing \['features.0.weight'\]; unexpected \['features.0.kernel'\]"):
        AlexNetClassifier(weights=str(tmp_path / "renamed.pth"))
    reshaped = dict(state)
    reshaped["features.3.weight"] = torch.zeros(10, 64, 5, 5)
    torch.save(reshaped, tmp_path / "reshaped.pth")
    with pytest.raises(ValueError, match=r"shape features.3.weight \(10, 64, 5, 5\) != \(192, 64, 5, 5\)"):
        AlexNetClassifier(weights=str(tmp_path / "reshaped.pth"))
    with pytest.raises(FileNotFoundError, match="no such file"):
        AlexNetClassifier(weights=str(tmp_path / "absent.pth"))


def test_offline_default_is_one_line(monkeypatch, tmp_path, capsys, cifar_dir):
    def no_network(self, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(type(AlexNet_Weights.IMAGENET1K_V1), "get_state_dict", no_network)
    with pytest.raises(ConnectionError, match="could not fetch AlexNet weights IMAGENET1K_V1.*weights: none"):
        AlexNetClassifier()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "-c", str(EXPERIMENTS / "cifar10_alexnet.yaml"), "--data.init_args.data_dir", str(cifar_dir),
              "--data.init_args.download", "false"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "could not fetch AlexNet weights" in errors[0] and "Traceback" not in err


def _fit(task, cifar_dir, tmp_path, epochs, callbacks=()):
    data = CIFAR10DataModule(data_dir=str(cifar_dir), download=False, verify_integrity=False, val_size=20,
                             batch_size=8, image_size=64, normalization="imagenet")
    trainer = L.Trainer(max_epochs=epochs, limit_train_batches=3, limit_val_batches=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        accelerator="cpu", callbacks=list(callbacks), default_root_dir=tmp_path)
    trainer.fit(task, data)
    return trainer


def test_frozen_backbone_stays_bit_identical_and_head_learns(weights_file, cifar_dir, tmp_path):
    net = AlexNetClassifier(weights=str(weights_file), freeze_backbone=True)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    task = ImageClassifier(net=net, optimizer=partial(torch.optim.SGD, lr=0.01, momentum=0.9), figure_every_n_epochs=0)
    _fit(task, cifar_dir, tmp_path, epochs=1)
    after = net.state_dict()
    for key in before:
        if key.startswith("classifier.6"):
            assert not torch.equal(before[key], after[key]), key
        else:
            assert torch.equal(before[key], after[key]), key
    net.train()
    assert all(not m.training for m in list(net.backbone.modules())[1:]) and net.head.training
    # no autograd node runs through the frozen backbone: the graph holds the head's layers only
    nodes, leaves = _autograd_graph(net(torch.rand(2, 3, 64, 64)))
    assert not any("Convolution" in name for name in nodes), nodes
    head = {id(p) for p in net.head.parameters()}
    assert leaves and {id(v) for v in leaves} == head
    assert all(p.grad is None for p in net.backbone.parameters())
    # and unfrozen, the same walk does reach the convolutions (the check can see them)
    nodes, leaves = _autograd_graph(AlexNetClassifier(weights=str(weights_file))(torch.rand(2, 3, 64, 64)))
    assert any("Convolution" in name for name in nodes) and len(leaves) == 16


def _autograd_graph(output: torch.Tensor) -> tuple[list[str], list[torch.Tensor]]:
    """Names of every backward node reachable from ``output``, and the parameters at its leaves."""
    names, leaves, seen, todo = [], [], set(), [output.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.append(type(node).__name__)
        if hasattr(node, "variable"):
            leaves.append(node.variable)
        todo.extend(next_node for next_node, _ in node.next_functions)
    return names, leaves


def test_unfreezing_at_epoch_with_lower_learning_rate(weights_file, cifar_dir, tmp_path):
    net = AlexNetClassifier(weights=str(weights_file))
    task = ImageClassifier(net=net, optimizer=partial(torch.optim.SGD, lr=0.01), figure_every_n_epochs=0)
    seen = {}

    class Probe(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            groups = trainer.optimizers[0].param_groups
            seen[trainer.current_epoch] = ([g["lr"] for g in groups], all(
                p.requires_grad for p in pl_module.net.features.parameters()))

    unfreeze = BackboneFinetuning(unfreeze_backbone_at_epoch=2, backbone_initial_ratio_lr=0.1)
    _fit(task, cifar_dir, tmp_path, epochs=3, callbacks=[unfreeze, Probe()])
    assert seen[0] == ([0.01], False) and seen[1] == ([0.01], False)
    lrs, trainable = seen[2]
    assert trainable and len(lrs) == 2 and lrs[1] == pytest.approx(0.001)


def test_separate_backbone_rate_in_full_fine_tune(weights_file):
    task = ImageClassifier(net=AlexNetClassifier(weights=str(weights_file)), backbone_lr_ratio=0.1,
                           optimizer=partial(torch.optim.SGD, lr=0.01))
    groups = task.parameter_groups()
    assert len(groups) == 2 and "lr" not in groups[0] and groups[1]["lr"] == pytest.approx(0.001)
    assert sum(len(g["params"]) for g in groups) == len(list(task.net.parameters()))


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["cifar10_alexnet", "cifar10_alexnet_frozen"])
def test_experiment_fit_then_test_at_224(experiment, weights_file, cifar_dir, tmp_path):
    common = ["--data.init_args.data_dir", str(cifar_dir), "--data.init_args.download", "false",
              "--data.init_args.verify_integrity", "false", "--data.init_args.val_size", "20",
              "--data.init_args.batch_size", "8", "--data.init_args.eval_batch_size", "20",
              "--model.init_args.net.init_args.weights", str(weights_file),
              "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
              "--trainer.limit_test_batches", "1"]
    config = str(EXPERIMENTS / f"{experiment}.yaml")
    run_cli("fit", "-c", config, "--trainer.max_epochs", "1", *common, cwd=tmp_path)
    result = run_cli("test", "-c", config, "--ckpt_path", "last", *common, cwd=tmp_path)
    assert "test/acc" in result.stdout
    scalars, _ = event_data(tmp_path / "lightning_logs" / experiment / "version_0")
    assert "test/acc" in scalars and "train/loss_epoch" in scalars
