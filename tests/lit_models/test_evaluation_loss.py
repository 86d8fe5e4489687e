"""val/loss and test/loss are means over samples, whatever the batch sizes (a short last batch, or the
uneven shards of DDP, must not weigh more than its samples).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lit_models import ImageClassifier, Regressor


class Flatten(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


def test_classifier_loss_weighs_each_sample_once():
    task = ImageClassifier(net=Flatten(), figure_every_n_epochs=0)
    task.num_classes = 3
    task.build_metrics()
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(1500, 3, generator=generator) * 3
    y = torch.randint(0, 3, (1500,), generator=generator)
    for part in (slice(0, 1000), slice(1000, 1500)):  # a full batch and a half one
        task._evaluate((logits[part].view(-1, 1, 1, 3), y[part]), task.val_loss, task.val_acc, task.val_confusion)
    assert task.val_loss.compute().item() == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)


def test_regressor_loss_weighs_each_sample_once():
    task = Regressor(net=nn.Identity(), figure_every_n_epochs=0)
    task.build_metrics()
    # squared errors 1.0 for 1000 samples then 3.0 for 500: the mean is 5/3, not the batch mean 2.0
    for n, error in ((1000, 1.0), (500, 3.0)):
        task.test_step((torch.zeros(n, 1), torch.full((n, 1), error ** 0.5)), 0)
    assert task.test_loss.compute().item() == pytest.approx(5 / 3, rel=1e-6)
    assert task.test_mse.compute().item() == pytest.approx(5 / 3, rel=1e-6)
