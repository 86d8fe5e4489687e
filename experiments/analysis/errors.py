"""What a classifier's test answers say about its errors, written as ``<run>/analysis/``.

From one pass's per-sample probabilities and targets (and the highest-loss images):

- ``per_class.csv``: class, support, precision, recall, F1, accuracy (the class's recall), with torchmetrics;
- ``most_confused.csv``: true, predicted, count, share of the true class, the largest off-diagonal cells first;
- ``confusion.png`` (counts, rows coloured by share) and ``confusion_normalized.png`` (shares);
- ``misclassified.csv``: source, target, prediction, the probability of each, the loss; most confident mistakes first;
- ``top_losses.png``: the highest-loss images with true / predicted / probability, as a person would look at them;
- ``reliability.png``: accuracy against confidence in 15 equal-width bins, the gap that the ECE sums;
- ``tta.csv`` (a task with ``tta_flip``): accuracy, ECE and NLL of the flip average and of the image alone, from
  the same pass, so a user sees whether the test-time augmentation helps on their data.

The ECE is torchmetrics' ``multiclass_calibration_error`` (15 bins, L1) on these probabilities; the diagram bins
confidences exactly as torchmetrics does (``torch.bucketize`` on ``linspace(0, 1, 16)``, right-closed), so its
gaps weighted by the bins' shares add up to the same number.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torchmetrics.functional.classification import (
    multiclass_calibration_error,
    multiclass_confusion_matrix,
    multiclass_f1_score,
    multiclass_precision,
    multiclass_recall,
)

from experiments.files import write_atomically
from lit_models import figures

#: bins of the calibration error and the reliability diagram (Guo et al. 2017 use 15)
BINS = 15
#: images shown in ``top_losses.png``
TOP_LOSSES = 32


@dataclass
class Answers:
    """One evaluation pass, sample by sample.

    Attributes:
        probabilities: (N, K) class probabilities.
        targets: (N,) true classes.
        sources: a name per sample (a path relative to the data's root, or the sample's index in its split).
        class_names: the K class names.
        predictions: (N,) predicted classes (default: the arg-max of the probabilities).
    """

    probabilities: torch.Tensor
    targets: torch.Tensor
    sources: list[str]
    class_names: list[str]
    predictions: torch.Tensor | None = None

    def __post_init__(self) -> None:
        self.probabilities = self.probabilities.float()
        if self.predictions is None:
            self.predictions = self.probabilities.argmax(1)

    @property
    def losses(self) -> torch.Tensor:
        """Each sample's cross-entropy, -log p(target) (no label smoothing: the loss of the answer as given)."""
        picked = self.probabilities.gather(1, self.targets.view(-1, 1)).flatten()
        return -picked.clamp(min=1e-12).log()


def ece(answers: Answers) -> float:
    """The expected calibration error: torchmetrics' ``multiclass_calibration_error`` (15 bins, L1)."""
    k = answers.probabilities.shape[1]
    return float(multiclass_calibration_error(answers.probabilities, answers.targets, k, n_bins=BINS, norm="l1"))


def reliability_bins(answers: Answers) -> dict[str, torch.Tensor]:
    """Per confidence bin (torchmetrics' binning): ``count``, mean ``confidence``, ``accuracy``, and its ``lower``
    edge; the last slot holds the confidences of exactly 1.
    """
    confidence = answers.probabilities.max(1).values
    correct = (answers.probabilities.argmax(1) == answers.targets).float()
    edges = torch.linspace(0, 1, BINS + 1)
    index = torch.bucketize(confidence, edges, right=True) - 1
    count = torch.zeros(BINS + 1).scatter_add_(0, index, torch.ones_like(confidence))
    mean_conf = torch.zeros(BINS + 1).scatter_add_(0, index, confidence) / count.clamp(min=1)
    accuracy = torch.zeros(BINS + 1).scatter_add_(0, index, correct) / count.clamp(min=1)
    return {"count": count, "confidence": mean_conf, "accuracy": accuracy, "lower": edges}


def per_class_rows(answers: Answers) -> list[list[str]]:
    """class, support, precision, recall, F1, accuracy per class (torchmetrics, ``average=None``)."""
    k = len(answers.class_names)
    p, t = answers.predictions, answers.targets
    precision = multiclass_precision(p, t, k, average=None)
    recall = multiclass_recall(p, t, k, average=None)
    f1 = multiclass_f1_score(p, t, k, average=None)
    support = torch.bincount(t, minlength=k)
    return [[name, str(int(support[i])), f"{float(precision[i]):.6f}", f"{float(recall[i]):.6f}",
             f"{float(f1[i]):.6f}", f"{float(recall[i]):.6f}"] for i, name in enumerate(answers.class_names)]


def most_confused_rows(confusion: torch.Tensor, class_names: list[str]) -> list[list[str]]:
    """Off-diagonal cells with a count, largest first: true, predicted, count, share of the true class."""
    counts = confusion.clone()
    counts.fill_diagonal_(0)
    totals = confusion.sum(1)
    cells = [(int(counts[i, j]), i, j) for i, j in counts.nonzero().tolist()]
    cells.sort(key=lambda c: (-c[0], c[1], c[2]))
    return [[class_names[i], class_names[j], str(n), f"{n / max(1, int(totals[i])):.6f}"] for n, i, j in cells]


def misclassified_rows(answers: Answers) -> list[list[str]]:
    """The mistakes, most confident first: source, target, prediction, p(target), p(prediction), loss."""
    wrong = (answers.predictions != answers.targets).nonzero().flatten()
    probs, losses = answers.probabilities, answers.losses
    confidence = probs[wrong, answers.predictions[wrong]]
    order = wrong[torch.argsort(confidence, descending=True, stable=True)]
    names = answers.class_names
    targets, predictions = answers.targets[order], answers.predictions[order]
    # gathered as whole columns, then lists: indexing tensors row by row took 0.1 s per 1k mistakes
    columns = (targets.tolist(), predictions.tolist(), probs[order, targets].tolist(),
               probs[order, predictions].tolist(), losses[order].tolist())
    return [[answers.sources[i], names[t], names[p], f"{pt:.6f}", f"{pp:.6f}", f"{loss:.6f}"]
            for i, t, p, pt, pp, loss in zip(order.tolist(), *columns, strict=True)]


def top_loss_indices(answers: Answers, count: int) -> torch.Tensor:
    """The ``count`` samples of highest loss, highest first."""
    return torch.argsort(answers.losses, descending=True, stable=True)[:count]


def reliability_figure(bins: dict[str, torch.Tensor], value: float) -> Figure:
    """Accuracy per confidence bin against the diagonal, with the share of samples per bin below."""
    fig = Figure(figsize=(4.2, 5.0), dpi=100)
    top, bottom = fig.subplots(2, 1, height_ratios=(3, 1), sharex=True)
    width = 1 / BINS
    count, accuracy, confidence = bins["count"].clone(), bins["accuracy"].clone(), bins["confidence"].clone()
    if count[BINS] > 0:  # confidence exactly 1: drawn in the top bin, merged by weight
        total = count[BINS - 1] + count[BINS]
        accuracy[BINS - 1] = (accuracy[BINS - 1] * count[BINS - 1] + accuracy[BINS] * count[BINS]) / total
        confidence[BINS - 1] = (confidence[BINS - 1] * count[BINS - 1] + confidence[BINS] * count[BINS]) / total
        count[BINS - 1] = total
    used = (count[:BINS] > 0).numpy()
    lower = bins["lower"][:BINS].numpy()
    acc, conf = accuracy[:BINS].numpy(), confidence[:BINS].numpy()
    top.bar(lower[used], acc[used], width=width, align="edge", color="tab:blue", edgecolor="black", lw=0.5,
            label="accuracy")
    top.bar(lower[used], (conf - acc)[used], bottom=acc[used], width=width, align="edge", color="tab:red",
            alpha=0.35, label="gap to confidence")
    top.plot([0, 1], [0, 1], color="0.3", lw=1, ls="--")
    top.set_ylabel("accuracy")
    top.set_ylim(0, 1)
    top.set_title(f"reliability: ECE {value:.4f} ({BINS} bins)", fontsize=9)
    top.legend(fontsize=7, loc="upper left")
    share = (count[:BINS] / count[:BINS].sum().clamp(min=1)).numpy()
    bottom.bar(lower, share, width=width, align="edge", color="0.5")
    bottom.set_xlabel("confidence (top probability)")
    bottom.set_ylabel("share")
    bottom.set_xlim(0, 1)
    fig.tight_layout()
    return fig


def normalized_confusion_figure(confusion: torch.Tensor, class_names: list[str]) -> Figure:
    """The confusion matrix as shares of each true class, written in the cells."""
    rates = confusion.float() / confusion.sum(1, keepdim=True).clamp(min=1)
    n = len(class_names)
    size = max(4.0, 0.55 * n + 1.5)
    fig = Figure(figsize=(size, size), dpi=100)
    ax = fig.add_subplot()
    ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels=class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), labels=class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{float(rates[i, j]):.2f}", ha="center", va="center", fontsize=6,
                        color="white" if rates[i, j] > 0.5 else "black")
    fig.tight_layout()
    return fig


def top_losses_figure(answers: Answers, indices: torch.Tensor, images: torch.Tensor) -> Figure:
    """The images of ``indices`` (in [0, 1]) captioned ``true -> predicted p``."""
    names = answers.class_names
    # true -> predicted and its probability (the losses are in misclassified.csv: a longer caption overflows)
    titles = [f"{names[int(answers.targets[i])]} → {names[int(answers.predictions[i])]} "
              f"{float(answers.probabilities[i, answers.predictions[i]]):.2f}" for i in indices.tolist()]
    return figures.labelled_images(images, titles, columns=min(8, max(1, len(titles))))


def _csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(rows)
    write_atomically(path, text.getvalue())


def tta_rows(answers: Answers, single: torch.Tensor) -> list[list[str]]:
    """variant, accuracy, ECE, NLL of the answers (the flip average) and of ``single`` (the image alone)."""
    rows = []
    for variant, probs in (("flip average", answers.probabilities), ("image alone", single)):
        alone = Answers(probs, answers.targets, answers.sources, answers.class_names)
        accuracy = float((alone.predictions == alone.targets).float().mean())
        rows.append([variant, f"{accuracy:.6f}", f"{ece(alone):.6f}", f"{float(alone.losses.mean()):.6f}"])
    return rows


def write_analysis(folder: Path, answers: Answers, top_images: torch.Tensor | None = None,
                   top_indices: torch.Tensor | None = None,
                   single: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Write the analysis files into ``folder``.

    Args:
        folder: where (``<run>/analysis``).
        answers: the pass's answers.
        top_images: the highest-loss images in [0, 1], (M, C, H, W), in the order of ``top_indices``.
        top_indices: which samples ``top_images`` shows.
        single: under test-time augmentation, the probabilities of each image alone (``tta.csv``).

    Returns:
        The figures drawn, by name, as CHW float images in [0, 1] (for TensorBoard's ``add_image``).
    """
    folder.mkdir(parents=True, exist_ok=True)
    k = len(answers.class_names)
    confusion = multiclass_confusion_matrix(answers.predictions, answers.targets, k)
    _csv(folder / "per_class.csv", ["class", "support", "precision", "recall", "f1", "accuracy"],
         per_class_rows(answers))
    _csv(folder / "most_confused.csv", ["true", "predicted", "count", "share_of_true"],
         most_confused_rows(confusion, answers.class_names))
    _csv(folder / "misclassified.csv", ["source", "target", "prediction", "p_target", "p_prediction", "loss"],
         misclassified_rows(answers))
    if single is not None:
        _csv(folder / "tta.csv", ["variant", "accuracy", "ece", "nll"], tta_rows(answers, single))
    drawn = {"confusion": figures.confusion_matrix(confusion, answers.class_names),
             "confusion_normalized": normalized_confusion_figure(confusion, answers.class_names),
             "reliability": reliability_figure(reliability_bins(answers), ece(answers))}
    if top_images is not None and top_indices is not None and len(top_indices):
        drawn["top_losses"] = top_losses_figure(answers, top_indices, top_images)
    images = {}
    for name, fig in drawn.items():
        pixels = render(fig)
        write_atomically(folder / f"{name}.png", lambda f, pixels=pixels: save_png(pixels, f))
        images[name] = torch.from_numpy(pixels[..., :3]).permute(2, 0, 1).float() / 255
    return images


def render(fig: Figure) -> np.ndarray:
    """The figure's RGBA pixels (H, W, 4), drawn once for both the PNG file and TensorBoard (whose
    ``add_figure`` would draw it again: a third of the analysis's time).
    """
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy()


def save_png(pixels: np.ndarray, file: Any) -> None:
    """RGBA or RGB pixels (H, W, 3|4) as a PNG into ``file`` (a path or a binary file)."""
    # zlib level 1: a third of the default level's time on these flat-coloured figures, files ~20% larger
    PIL.Image.fromarray(pixels[..., :3]).save(file, format="png", compress_level=1)
