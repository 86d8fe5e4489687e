"""Any torchvision classification model by name: the head replaced whatever the family calls it, local weights
loaded bit for bit, wrong ones refused in one line, a frozen backbone that gets no gradient.
"""

from __future__ import annotations

import types

import pytest
import torch
import torchvision
from torch import nn

from lit_models.classifier import check_data_fits_weights
from lit_models.nets import TorchvisionClassifier


@pytest.mark.parametrize("name, head", [("resnet18", "fc"), ("efficientnet_b0", "classifier.1"),
                                        ("mobilenet_v3_small", "classifier.3"), ("convnext_tiny", "classifier.2"),
                                        ("squeezenet1_1", "classifier.1"), ("vit_b_16", "heads.head"),
                                        ("regnet_y_400mf", "fc"), ("alexnet", "classifier.6")])
def test_the_head_is_replaced_and_backbone_plus_head_is_every_parameter(name, head):
    net = TorchvisionClassifier(name, num_classes=7, weights="none")
    assert net.head_name == head and net.expects is None
    size = 224 if name == "vit_b_16" else 64
    assert net.eval()(torch.zeros(1, 3, size, size)).shape == (1, 7)
    every = {id(p) for p in net.parameters()}
    parts = [id(p) for p in net.backbone.parameters()] + [id(p) for p in net.head.parameters()]
    assert sorted(parts) == sorted(every)  # each parameter in exactly one of them


def test_a_local_weights_file_loads_bit_exact_and_a_wrong_one_is_one_line(tmp_path):
    torch.manual_seed(0)
    source = torchvision.models.resnet18()
    torch.save(source.state_dict(), tmp_path / "resnet18.pth")
    net = TorchvisionClassifier("resnet18", num_classes=4, weights=str(tmp_path / "resnet18.pth"))
    loaded = net.model.state_dict()
    for key, value in source.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(loaded[key], value), key
    assert loaded["fc.weight"].shape == (4, 512)
    assert net.expects["mean"] == [0.485, 0.456, 0.406] and net.expects["crop_size"] == 224
    torch.save(torchvision.models.alexnet().state_dict(), tmp_path / "alexnet.pth")
    with pytest.raises(ValueError) as refused:
        TorchvisionClassifier("resnet18", weights=str(tmp_path / "alexnet.pth"))
    message = str(refused.value)
    assert "\n" not in message and "do not fit torchvision's resnet18" in message and "missing" in message
    with pytest.raises(ValueError, match="did you mean resnet18"):
        TorchvisionClassifier("resnet81", weights="none")


def test_a_frozen_backbone_gets_no_gradient_and_keeps_batchnorm_in_eval():
    net = TorchvisionClassifier("resnet18", num_classes=3, weights="none", freeze_backbone=True).train()
    assert all(not m.training for m in net.backbone.modules() if isinstance(m, nn.BatchNorm2d))
    before = net.model.bn1.running_mean.clone()
    net(torch.rand(4, 3, 64, 64)).sum().backward()
    assert all(p.grad is None for p in net.backbone.parameters())
    assert all(p.grad is not None for p in net.head.parameters())
    assert torch.equal(net.model.bn1.running_mean, before)  # eval BatchNorm: statistics untouched


def test_a_head_sized_by_the_data_and_data_that_contradicts_the_weights(tmp_path):
    net = TorchvisionClassifier("resnet18", weights="none")
    assert net.head.out_features == 1000 and net.num_classes is None
    net.match_classes(5)
    assert net.head.out_features == 5
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r.pth")
    pretrained = TorchvisionClassifier("resnet18", weights=str(tmp_path / "r.pth"))
    data = types.SimpleNamespace(mean=(0.5, 0.5, 0.5), std=(0.229, 0.224, 0.225), image_size=64)
    with pytest.raises(ValueError, match=r"--data.mean \[0.5, 0.5, 0.5\] contradicts the IMAGENET1K_V1 weights"):
        check_data_fits_weights(pretrained, data)
    check_data_fits_weights(net, data)  # weights none: any normalisation
    vit = TorchvisionClassifier("vit_b_16", weights="none")
    vit.expects = {"weights": "IMAGENET1K_V1", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                   "crop_size": 224, "min_size": [224, 224]}
    with pytest.raises(ValueError, match="--data.image_size 64 is below the 224 px"):
        check_data_fits_weights(vit, types.SimpleNamespace(mean=None, std=None, image_size=64))
