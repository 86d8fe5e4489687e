"""timm backbones by name (``name: timm/<model>``): built without a download, the head sized for the data, local
weights loaded, the data's normalisation taken from the model's pretrained config, trained through the CLI.
"""

from __future__ import annotations

import json

import pytest
import torch

from lit_models.nets import TorchvisionClassifier
from tests.helpers import EXPERIMENTS, run_cli
from tests.image_folders import write_image_folder

timm = pytest.importorskip("timm", reason="timm is an optional extra: pip install -e '.[timm]'")

TINY = "timm/test_resnet"  # timm's own test model: ~0.5 M parameters, built from code, no download


def test_a_timm_model_gets_a_head_for_the_data_and_local_weights(tmp_path):
    reference = timm.create_model("test_resnet", pretrained=False)
    torch.save(reference.state_dict(), tmp_path / "test_resnet.pth")
    net = TorchvisionClassifier(TINY, weights=str(tmp_path / "test_resnet.pth"), num_classes=4)
    for key, value in reference.state_dict().items():
        if not key.startswith(net.head_name):
            assert torch.equal(net.model.state_dict()[key], value), key
    assert net.eval()(torch.zeros(2, 3, 64, 64)).shape == (2, 4)
    cfg = reference.pretrained_cfg
    assert net.expects["mean"] == pytest.approx(list(cfg["mean"])) and net.expects["crop_size"] == cfg["input_size"][-1]
    frozen = TorchvisionClassifier(TINY, weights="none", num_classes=4, freeze_backbone=True)
    trainable = {n for n, p in frozen.named_parameters() if p.requires_grad}
    assert trainable == {f"model.{frozen.head_name}.weight", f"model.{frozen.head_name}.bias"}


def test_unknown_timm_names_are_one_line():
    with pytest.raises(ValueError, match="not a timm model.*did you mean timm/test_resnet"):
        TorchvisionClassifier("timm/test_resnett", weights="none")


@pytest.mark.slow
def test_a_timm_backbone_trains_through_the_cli(tmp_path):
    photos = tmp_path / "photos"
    for split, seed in (("train", 0), ("val", 1), ("test", 2)):
        write_image_folder(photos / split, per_class=(8, 8, 8), size=(40, 40), seed=seed)
    run_cli("fit", "-c", str(EXPERIMENTS / "folder_resnet18.yaml"), "--data.root", str(photos), "--data.image_size",
            "32", "--data.batch_size", "8", "--model.init_args.net.init_args.name", TINY,
            "--model.init_args.net.init_args.weights", "none", "--trainer.max_epochs", "3", "--test_after_fit", "true",
            "--trainer.enable_progress_bar", "false", cwd=tmp_path)
    summary = json.loads((tmp_path / "lightning_logs/folder_resnet18/version_0/summary.json").read_text())
    assert summary["state"] == "finished" and summary["test"]["metrics"]["test/acc"] >= 0.6  # classes differ by colour
