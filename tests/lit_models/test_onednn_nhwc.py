"""NHWC on the CPU computes the same gradients as NCHW without oneDNN (oneDNN issue #6035).

The affected kernel is the AVX2 one, so the check also runs in a process with oneDNN capped at AVX2
(``ONEDNN_MAX_CPU_ISA``), which takes that kernel on any x86 CPU newer than AVX2: without the guard in
``lit_models/channels_last.py`` a ResNet with small widths hangs there or returns a wrong weight gradient.
The nets run in a child process (the cap is read once, when oneDNN starts) bounded by a timeout.
"""

from __future__ import annotations

import copy
import json
import platform
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lit_models.channels_last import onednn_nhwc_hazard, to_channels_last
from tests.helpers import ROOT, cli_env

#: relative error of every parameter's gradient against the NCHW reference without oneDNN
TOLERANCE = 1e-4
#: the nets :func:`nets` builds (named here so the test process need not build them)
NAMES = ("CifarResNet widths 4-32", "CifarResNet widths 3-24", "CifarResNet default", "CifarCNN, batch norm", "LeNet5",
         "AlexNetClassifier", "torchvision resnet18", "torchvision squeezenet1_1", "torchvision regnet, stem 4",
         "torchvision shufflenet_v2, widths 4-32", "torchvision mobilenet_v2 x0.25")
CHILD_TIMEOUT_S = 120


def nets() -> dict[str, tuple[nn.Module, int]]:
    """Every bundled net with a convolution and a few torchvision ones, at small widths: (net, image side)."""
    import torchvision
    from torchvision.models.regnet import BlockParams, RegNet

    from lit_models.nets import AlexNetClassifier, CifarCNN, CifarResNet, LeNet5, TorchvisionClassifier

    torch.manual_seed(0)
    regnet = RegNet(BlockParams.from_init_params(depth=4, w_0=8, w_a=8.0, w_m=2.0, group_width=4), stem_width=4,
                    num_classes=5)
    return {
        "CifarResNet widths 4-32": (CifarResNet(num_classes=5, widths=[4, 8, 16, 32]), 32),
        "CifarResNet widths 3-24": (CifarResNet(num_classes=5, blocks_per_stage=[1, 1, 1], widths=[3, 5, 24]), 32),
        "CifarResNet default": (CifarResNet(num_classes=5, blocks_per_stage=[1, 1, 1, 1]), 32),
        "CifarCNN, batch norm": (CifarCNN(num_classes=5, widths=[4, 8, 16], hidden_sizes=[8], batch_norm=True), 32),
        "LeNet5": (LeNet5(num_classes=5, in_channels=3), 32),
        "AlexNetClassifier": (AlexNetClassifier(num_classes=5, weights="none"), 64),
        "torchvision resnet18": (TorchvisionClassifier("resnet18", num_classes=5, weights="none"), 32),
        "torchvision squeezenet1_1": (TorchvisionClassifier("squeezenet1_1", num_classes=5, weights="none"), 64),
        "torchvision regnet, stem 4": (regnet, 32),
        "torchvision shufflenet_v2, widths 4-32": (torchvision.models.ShuffleNetV2(
            [1, 1, 1], [4, 8, 16, 24, 32], num_classes=5), 32),
        "torchvision mobilenet_v2 x0.25": (torchvision.models.mobilenet_v2(num_classes=5, width_mult=0.25), 32),
    }


def _gradients(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    # evaluation mode: batch statistics amplify float32 rounding (the two layouts sum in different orders)
    # to ~1e-3 through a deep net and make some biases' gradients zero up to rounding; with running
    # statistics each layer is affine and the convolutions' backward, which is under test, is unchanged
    net.eval()
    F.cross_entropy(net(x), y).backward()
    return {k: p.grad.detach().clone() for k, p in net.named_parameters() if p.grad is not None}


def errors(name: str, net: nn.Module, side: int) -> float:
    """The largest relative gradient error of the task's layout against NCHW without oneDNN."""
    from lit_models import ImageClassifier

    generator = torch.Generator().manual_seed(1)
    x = torch.randn(8, 3, side, side, generator=generator)
    y = torch.randint(0, 5, (8,), generator=generator)
    reference = copy.deepcopy(net)
    with torch.backends.mkldnn.flags(enabled=False):
        expected = _gradients(reference, x, y)
    task = ImageClassifier(net=copy.deepcopy(net), channels_last=True, figure_every_n_epochs=0)
    got = _gradients(_TaskForward(task), x, y)
    worst = 0.0
    for key, ref in expected.items():
        diff = (got["task.net." + key] - ref).norm().item()
        worst = max(worst, diff / max(ref.norm().item(), 1e-12))
    return worst


class _TaskForward(nn.Module):
    """The task's forward (which puts the images in the task's layout) as a module, its net's parameters named."""

    def __init__(self, task: nn.Module) -> None:
        super().__init__()
        self.task = task

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.task(x)


def main() -> None:
    """Child process: one line per net, JSON, flushed before the next starts (a hang names its net)."""
    torch.set_num_threads(2)
    built = nets()
    assert tuple(built) == NAMES
    for name, (net, side) in built.items():
        print(json.dumps({"start": name}), flush=True)
        print(json.dumps({"net": name, "error": errors(name, net, side)}), flush=True)


def _run_child(env: dict[str, str]) -> dict[str, float]:
    code = "from tests.lit_models.test_onednn_nhwc import main; main()"
    try:
        done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=cli_env(env), capture_output=True,
                              text=True, timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired as err:
        lines = (err.stdout.decode() if isinstance(err.stdout, bytes) else err.stdout or "").splitlines()
        started = [json.loads(line)["start"] for line in lines if line.startswith('{"start"')]
        pytest.fail(f"backward hung past {CHILD_TIMEOUT_S} s on {started[-1] if started else 'import'}")
    assert done.returncode == 0, f"child died ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"net"')]
    return {row["net"]: row["error"] for row in rows}


@pytest.mark.process
@pytest.mark.parametrize("isa", ["native", "AVX2"])
def test_every_net_backward_in_nhwc_equals_nchw_without_onednn(isa):
    if isa == "AVX2" and platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("oneDNN's AVX2 kernels exist on x86 only")
    env = {"ONEDNN_MAX_CPU_ISA": isa} if isa != "native" else {}
    found = _run_child({**env, "PYTHONWARNINGS": "ignore"})
    assert tuple(found) == NAMES
    wrong = {name: error for name, error in found.items() if not error <= TOLERANCE}
    assert not wrong, f"gradients off by more than {TOLERANCE} (relative): {wrong}"


def test_the_guard_keeps_exactly_the_hazardous_layers_nchw_on_the_cpu():
    assert onednn_nhwc_hazard(nn.Conv2d(4, 8, 1, stride=2))
    assert onednn_nhwc_hazard(nn.Conv2d(15, 32, 1, stride=(2, 1)))
    assert not onednn_nhwc_hazard(nn.Conv2d(16, 32, 1, stride=2))  # a whole block
    assert not onednn_nhwc_hazard(nn.Conv2d(4, 8, 1, stride=1))
    assert not onednn_nhwc_hazard(nn.Conv2d(4, 8, 3, stride=2))
    from lit_models.nets import CifarResNet

    net = CifarResNet(num_classes=5, widths=[4, 8, 16, 32])
    guarded = to_channels_last(net)
    # the shortcuts entering stages 2 and 3 (4 -> 8, 8 -> 16); 16 -> 32 is a whole AVX-512 block
    assert guarded == ["stages.1.0.shortcut.0", "stages.2.0.shortcut.0"]
    assert to_channels_last(net) == guarded  # idempotent: one hook per layer
    assert len(net.get_submodule(guarded[0])._forward_pre_hooks) == 1
    seen = {}
    for name in guarded + ["stages.3.0.shortcut.0"]:
        net.get_submodule(name).register_forward_pre_hook(
            lambda m, args, name=name: seen.__setitem__(name, args[0].is_contiguous()), prepend=False)
    net(torch.randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last))
    assert seen == {guarded[0]: True, guarded[1]: True, "stages.3.0.shortcut.0": False}
    weights = {name: p for name, p in net.named_parameters() if p.dim() == 4}
    kept = {f"{name}.weight" for name in guarded}
    assert all(p.stride() == (p.shape[1], 1, 1, 1) for name, p in weights.items() if name in kept)
    assert all(p.is_contiguous(memory_format=torch.channels_last) and p.stride()[-1] == p.shape[1]
               for name, p in weights.items() if name not in kept)
