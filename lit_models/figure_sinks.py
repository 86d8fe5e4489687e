"""Where a task's figures go: TensorBoard's writer, and the MLflow run of every MLFlowLogger beside it.

The task draws a figure once and hands it here; each tracker gets it in its own form (an image summary
at the step in TensorBoard, ``figures/<tag>/step_NNNNNNN.png`` among the MLflow run's artifacts).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from lightning.pytorch.loggers import Logger, MLFlowLogger, TensorBoardLogger
from matplotlib.figure import Figure


class FigureSinks:
    """The figure-taking side of a trainer's loggers (rank zero), with TensorBoard's ``SummaryWriter`` methods."""

    def __init__(self, loggers: list[Logger]) -> None:
        self.writers = [lg.experiment for lg in loggers if isinstance(lg, TensorBoardLogger)]
        self.mlflow = [lg for lg in loggers if isinstance(lg, MLFlowLogger)]

    def __bool__(self) -> bool:
        return bool(self.writers or self.mlflow)

    @staticmethod
    def artifact(tag: str, step: int) -> str:
        """The MLflow artifact path of a figure at a step."""
        return f"figures/{tag}/step_{step:07d}.png"

    def add_figure(self, tag: str, figure: Figure, step: int) -> None:
        """Write a figure to every sink: MLflow first, then TensorBoard (which closes it)."""
        for logger in self.mlflow:  # before TensorBoard, whose add_figure closes the figure
            logger.experiment.log_figure(logger.run_id, figure, self.artifact(tag, step))
        for writer in self.writers:
            writer.add_figure(tag, figure, step)

    def add_image(self, tag: str, image: torch.Tensor, step: int) -> None:
        """``image``: CHW floats in [0, 1], as TensorBoard's ``add_image`` takes it."""
        for writer in self.writers:
            writer.add_image(tag, image, step)
        if self.mlflow:
            pixels = (image.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
            hwc: Any = np.ascontiguousarray(pixels.permute(1, 2, 0).numpy())
            hwc = hwc[..., 0] if hwc.shape[-1] == 1 else hwc
            for logger in self.mlflow:
                logger.experiment.log_image(logger.run_id, hwc, artifact_file=self.artifact(tag, step))
