"""Regression task: MSE loss and metrics, and the fitted curve drawn in TensorBoard."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric, MeanSquaredError, MinMetric
from typing_extensions import override

from lit_models import figures
from lit_models.inference import Inference, InferencePipeline
from lit_models.task import Task


def per_sample_mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """One squared error per sample (averaged over its outputs): MeanMetric then weighs every sample once,
    whatever the batch sizes (its ``weight=`` is dropped under ``nan_strategy="disable"``, torchmetrics #3434).
    """
    return F.mse_loss(prediction, target, reduction="none").flatten(1).mean(1)


class Regressor(Task):
    """Fits ``net(x) ~ y`` with the mean squared error; every argument is the base task's."""

    monitor = "val/mse"
    monitor_mode = "min"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._val_points: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    @override
    def build_metrics(self) -> None:
        self.val_loss = MeanMetric(nan_strategy="disable")  # a nan check is a host-device sync
        self.val_mse = MeanSquaredError()
        self.val_mse_best = MinMetric(nan_strategy="disable")
        self.test_loss = MeanMetric(nan_strategy="disable")
        self.test_mse = MeanSquaredError()

    @override
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.mse_loss(self(x), y)
        self.log_train_loss(loss, batch_idx)
        return loss

    @override
    def on_validation_epoch_start(self) -> None:
        self._val_points.clear()

    @override
    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        prediction = self(x)
        # Metrics are updated per batch and logged once per epoch (see Task.log_train_loss).
        self.val_loss.update(per_sample_mse(prediction, y))
        self.val_mse.update(prediction, y)
        if self.figures_due():
            self._val_points.append((x.detach(), y.detach(), prediction.detach()))

    @override
    def on_validation_epoch_end(self) -> None:
        mse = self.val_mse.compute()
        self.log_dict({"val/loss": self.val_loss, "val/mse": self.val_mse}, prog_bar=True)
        if self.trainer.sanity_checking:
            return
        self.val_mse_best(mse)
        self.log("val/mse_best", self.val_mse_best.compute(), sync_dist=True)  # equal on every rank
        target = self.figure_writer()
        if target is not None and self._val_points:
            writer, step = target
            x, y, p = (torch.cat(parts) for parts in zip(*self._val_points, strict=True))
            writer.add_figure("val/fit", figures.regression_fit(x, y, p), step)
        self._val_points.clear()

    @override
    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        prediction = self(x)
        self.test_loss.update(per_sample_mse(prediction, y))
        self.test_mse.update(prediction, y)

    @override
    def on_test_epoch_end(self) -> None:
        self.log_dict({"test/loss": self.test_loss, "test/mse": self.test_mse})

    @override
    def predict_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        """The prediction for each x, with the batch's targets and sample indices when it carries them."""
        x, *rest = batch if isinstance(batch, (tuple, list)) else (batch,)
        out = {"x": x, "prediction": self(x)}
        if rest:
            out["target"] = rest[0]
        if len(rest) > 1:
            out["index"] = rest[1]
        return out

    def inference(self, datamodule: Any) -> Inference:
        """X -> prediction: the net alone (the data is used as it is, no preprocessing). The sizes come
        from the net (``in_features``/``out_features``, as :class:`~lit_models.nets.Feedforward` has).
        """
        return Inference(
            module=InferencePipeline(self.net), task="regression",
            input_kind="tensor", input_name="x", input_dtype=torch.float32,
            input_shape=(int(getattr(self.net, "in_features", 1)),),
            output_kind="values", output_name="prediction", output_size=int(getattr(self.net, "out_features", 1)),
        )
