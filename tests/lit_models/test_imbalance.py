"""Imbalanced classes: class weights give the loss computed by hand; balanced accuracy, macro F1 and the per-class
precision, recall and F1 equal a hand computation from the predictions; the monitored metric is an option.
"""

from __future__ import annotations

import types

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lit_models import ImageClassifier
from lit_models.classifier import loss_weights


class Flatten(nn.Module):
    """Outputs its input, plus a bias that starts at zero (something to train)."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) + self.bias


class Logits(L.LightningDataModule):
    """Samples that are their own logits, in one batch: the metrics see exactly these predictions."""

    def __init__(self, logits: torch.Tensor, y: torch.Tensor) -> None:
        super().__init__()
        self.train = self.test_data = (logits, y)
        self.num_classes, self.class_names = logits.shape[1], [f"c{i}" for i in range(logits.shape[1])]
        self.image_shape = (logits.shape[1],)

    def _loader(self) -> DataLoader:
        return DataLoader(TensorDataset(*self.train), batch_size=len(self.train[1]))

    train_dataloader = val_dataloader = test_dataloader = _loader


def test_auto_class_weights_give_the_loss_computed_by_hand():
    y = torch.tensor([0] * 6 + [1] * 3 + [2] * 1)
    weights = loss_weights("auto", types.SimpleNamespace(train=(torch.zeros(10), y)), 3)
    assert weights.tolist() == pytest.approx([10 / (3 * 6), 10 / (3 * 3), 10 / (3 * 1)])
    logits = torch.randn(10, 3, generator=torch.Generator().manual_seed(0))
    task = ImageClassifier(net=Flatten(), class_weights="auto", figure_every_n_epochs=0)
    seen = []

    class Loss(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append(float(outputs["loss"]))

    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0, callbacks=[Loss()])
    trainer.fit(task, datamodule=Logits(logits, y))
    assert seen[0] == pytest.approx(F.cross_entropy(logits, y, weight=weights).item(), rel=1e-6)
    assert seen[0] != pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-3)  # the weights changed it


def test_macro_and_per_class_metrics_equal_a_hand_computation():
    y = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    predicted = torch.tensor([0, 0, 1, 2, 1, 0, 2, 2, 2, 1])
    logits = F.one_hot(predicted, 3).float() * 5
    task = ImageClassifier(net=Flatten(), figure_every_n_epochs=0)
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.test(task, datamodule=Logits(logits, y), verbose=False)
    metrics = trainer.callback_metrics
    precision, recall, f1 = [], [], []
    for c in range(3):
        tp = int(((predicted == c) & (y == c)).sum())
        p, r = tp / int((predicted == c).sum()), tp / int((y == c).sum())
        precision.append(p), recall.append(r), f1.append(2 * p * r / (p + r))
    assert float(metrics["test/balanced_acc"]) == pytest.approx(sum(recall) / 3)
    assert float(metrics["test/f1_macro"]) == pytest.approx(sum(f1) / 3)
    assert float(metrics["test/acc"]) == pytest.approx(0.6)
    for c in range(3):
        assert float(metrics[f"test/precision_class/c{c}"]) == pytest.approx(precision[c])
        assert float(metrics[f"test/recall_class/c{c}"]) == pytest.approx(recall[c])
        assert float(metrics[f"test/f1_class/c{c}"]) == pytest.approx(f1[c])


def test_the_monitored_metric_is_an_option():
    task = ImageClassifier(net=Flatten(), monitor="val/f1_macro")
    assert (task.monitor, task.monitor_mode) == ("val/f1_macro", "max")
    assert ImageClassifier.monitor_of({"monitor": "val/loss"}) == ("val/loss", "min")
    assert ImageClassifier.monitor_of({}) == ("val/acc", "max")
    with pytest.raises(ValueError, match="--model.monitor must be one of"):
        ImageClassifier(net=Flatten(), monitor="val/auc")
    with pytest.raises(ValueError, match="class_weights must be none, auto"):
        ImageClassifier(net=Flatten(), class_weights="balanced")
