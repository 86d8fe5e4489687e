"""Figures for people, drawn with matplotlib's object API (no pyplot state, no GUI backend)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.figure import Figure
from torchvision.utils import make_grid


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


def labelled_images(images: torch.Tensor, titles: Sequence[str], columns: int = 8) -> Figure:
    """A grid of images (N, C, H, W in [0, 1]), each captioned (e.g. 'true 3 -> pred 8').

    One axes holding a ``make_grid`` mosaic: a subplot per image costs ~15 ms each to draw.
    """
    n, _, h, w = images.shape
    pad = 2
    grid = make_grid(images.detach().float().cpu().clamp(0, 1), nrow=columns, padding=pad, pad_value=1.0)
    rows = -(-n // columns)
    scale = 1.3 / max(h, w) * max(28, h)
    fig = Figure(figsize=(scale * columns, scale * rows * 1.25), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest", aspect="auto",
              extent=(0, grid.shape[2], grid.shape[1], 0))
    for i, title in enumerate(titles[:n]):
        row, col = divmod(i, columns)
        ax.text(col * (w + pad) + pad + 1, row * (h + pad) + pad + 1, title, fontsize=6, va="top", ha="left",
                color="yellow", bbox={"facecolor": "black", "alpha": 0.6, "pad": 0.5, "lw": 0})
    ax.axis("off")
    return fig
