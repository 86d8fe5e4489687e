"""``channels_last``: the net's weights are NHWC from the task's construction on, so a copy any callback makes
in its setup (EMA's averaged model) has the live net's strides and stays on the fused update.
"""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging

from datamodules import CIFAR10DataModule
from datamodules.bundled.synthetic import write_cifar10
from lit_models import ImageClassifier
from lit_models.nets import CifarCNN


def _nhwc(module: torch.nn.Module) -> list[bool]:
    return [p.is_contiguous(memory_format=torch.channels_last) for p in module.parameters() if p.dim() == 4]


class StridesAtTrainStart(L.Callback):
    """Records the strides of the live net and of EMA's averaged copy once training starts (test-only
    inspection of the callback's AveragedModel).
    """

    def __init__(self, ema: EMAWeightAveraging) -> None:
        self.ema = ema
        self.seen: tuple[list, list] | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        live = [p.stride() for p in pl_module.parameters()]
        averaged = [p.stride() for p in self.ema._average_model.module.parameters()]
        self.seen = (live, averaged)


def test_weights_are_nhwc_from_construction():
    task = ImageClassifier(net=CifarCNN(widths=[4, 8, 16], hidden_sizes=[8]), channels_last=True,
                           figure_every_n_epochs=0)
    assert _nhwc(task.net) and all(_nhwc(task.net))
    plain = ImageClassifier(net=CifarCNN(widths=[4, 8, 16], hidden_sizes=[8]), figure_every_n_epochs=0)
    assert not any(_nhwc(plain.net))


def test_ema_copy_has_the_live_net_strides(tmp_path):
    write_cifar10(tmp_path / "data", per_batch=20, n_test=20)
    data = CIFAR10DataModule(data_dir=str(tmp_path / "data"), download=False, verify_integrity=False, val_size=20,
                             batch_size=10, eval_batch_size=20)
    task = ImageClassifier(net=CifarCNN(widths=[4, 8, 16], hidden_sizes=[8]), channels_last=True,
                           figure_every_n_epochs=0)
    ema = EMAWeightAveraging(decay=0.9)
    strides = StridesAtTrainStart(ema)
    L.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, callbacks=[ema, strides], default_root_dir=tmp_path).fit(task, data)
    live, averaged = strides.seen
    assert live == averaged
    assert all(_nhwc(task.net))
