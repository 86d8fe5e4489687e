"""Figures for people, drawn with matplotlib's object API (no pyplot state, no GUI backend)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.figure import Figure


def regression_fit(x: torch.Tensor, target: torch.Tensor, prediction: torch.Tensor) -> Figure:
    """The fitted curve against the target, on points sorted by x."""
    order = torch.argsort(x.flatten())
    x, target, prediction = (t.flatten()[order].float().cpu().numpy() for t in (x, target, prediction))
    fig = Figure(figsize=(7, 4), dpi=100)
    ax = fig.add_subplot()
    ax.plot(x, target, color="0.3", lw=1.0, label="target")
    ax.plot(x, prediction, color="tab:red", lw=1.0, label="prediction")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def confusion_matrix(matrix: torch.Tensor, class_names: Sequence[str]) -> Figure:
    """Row-normalised confusion matrix (rows: true class) with counts written in the cells."""
    counts = matrix.detach().cpu().long()
    rates = counts.float() / counts.sum(1, keepdim=True).clamp(min=1)
    n = len(class_names)
    size = max(4.0, 0.55 * n + 1.5)
    fig = Figure(figsize=(size, size), dpi=100)
    ax = fig.add_subplot()
    ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels=list(class_names), rotation=45, ha="right")
    ax.set_yticks(range(n), labels=list(class_names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(int(counts[i, j])), ha="center", va="center", fontsize=7,
                        color="white" if rates[i, j] > 0.5 else "black")
    fig.tight_layout()
    return fig


def labelled_images(
    images: torch.Tensor, titles: Sequence[str], columns: int = 8
) -> Figure:
    """A grid of images (N, C, H, W in [0, 1]) each with its own title (e.g. 'true 3 / pred 8')."""
    n = len(images)
    rows = max(1, -(-n // columns))
    fig = Figure(figsize=(1.4 * columns, 1.6 * rows), dpi=100)
    for i in range(n):
        ax = fig.add_subplot(rows, columns, i + 1)
        image = images[i].detach().float().cpu().clamp(0, 1)
        if image.shape[0] == 1:
            ax.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=1)
        else:
            ax.imshow(image.permute(1, 2, 0).numpy())
        ax.set_title(titles[i], fontsize=7)
        ax.axis("off")
    fig.tight_layout()
    return fig
