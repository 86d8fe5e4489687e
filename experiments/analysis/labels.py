"""Label checks: which given labels a cross-validation's out-of-fold predictions say are most likely wrong.

cleanlab's confident learning (Northcutt et al. 2021) needs out-of-sample probabilities, which is what
``oof_predictions.csv`` holds: each sample predicted by the runs that never trained on it, averaged here over the
seeds. ``cleanlab.filter.find_label_issues`` decides which samples are issues (per-class thresholds from the
confident joint); ``cleanlab.rank.get_label_quality_scores`` (the probability of the given label, "self
confidence") ranks them, lowest first. Written into the cv's folder:

- ``label_issues.csv``: source, label, suggested (the most probable class), score (the given label's quality in
  [0, 1], lower = more likely wrong), p_suggested; the flagged samples, most likely wrong first;
- ``label_issues.png``: the top 32 with their given and suggested labels, when the data module can show its pool
  images (``pool_images(sources)``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from experiments.analysis.errors import render, save_png
from experiments.files import write_atomically
from lit_models import figures

EXTRA_HINT = 'pip install "cleanlab>=2.6,<3" (or: pip install -e ".[results]" in the project)'
#: images shown in ``label_issues.png``
SHOWN = 32
CSV = "label_issues.csv"


def require_cleanlab() -> Any:
    """The cleanlab module, or a one-line error naming what to install."""
    try:
        import cleanlab.filter
        import cleanlab.rank  # noqa: F401
    except ImportError:
        raise ValueError(f"label checks need cleanlab, which is not installed: {EXTRA_HINT}") from None
    return cleanlab


def pooled_probabilities(oof_csv: Path) -> tuple[list[str], np.ndarray, np.ndarray, list[str]]:
    """(sources, given labels, probabilities averaged over seeds, class names) from ``oof_predictions.csv``.

    Raises:
        ValueError: the file holds no per-class probability columns (more classes than the writer puts in columns)
            or no targets.
    """
    with oof_csv.open(newline="") as f:
        reader = csv.DictReader(f)
        columns = [c for c in reader.fieldnames or [] if c.startswith("p_")]
        if not columns:
            raise ValueError(f"{oof_csv}: no per-class probability columns (p_<class>); label checks need them")
        sums: dict[str, np.ndarray] = {}
        counts: dict[str, int] = {}
        labels: dict[str, int] = {}
        for row in reader:
            if row.get("target", "") == "":
                raise ValueError(f"{oof_csv}: a row without its target; label checks need the given labels")
            source = row["source"]
            probs = np.array([float(row[c]) for c in columns])
            sums[source] = sums.get(source, 0) + probs
            counts[source] = counts.get(source, 0) + 1
            labels[source] = int(row["target"])
    sources = list(sums)
    probs = np.stack([sums[s] / counts[s] for s in sources]) if sources else np.zeros((0, len(columns)))
    probs = probs / probs.sum(1, keepdims=True).clip(min=1e-12)
    return sources, np.array([labels[s] for s in sources]), probs, [c.removeprefix("p_") for c in columns]


def rank_label_issues(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the flagged samples' indices, most likely wrong first; every sample's label quality score)."""
    cleanlab = require_cleanlab()
    scores = cleanlab.rank.get_label_quality_scores(labels, probs, method="self_confidence")
    flagged = cleanlab.filter.find_label_issues(labels, probs, return_indices_ranked_by="self_confidence")
    return np.asarray(flagged, dtype=np.int64), np.asarray(scores)


def write_label_issues(folder: Path, oof_csv: Path,
                       images_of: Callable[[list[str]], torch.Tensor | None] | None = None) -> tuple[Path, int]:
    """Write ``label_issues.csv`` (and ``label_issues.png`` given ``images_of``) into ``folder``; return the CSV
    and the number of flagged samples.
    """
    sources, labels, probs, names = pooled_probabilities(oof_csv)
    flagged, scores = rank_label_issues(labels, probs)
    suggested = probs.argmax(1)
    rows = [[sources[i], names[labels[i]], names[suggested[i]], f"{scores[i]:.6f}", f"{probs[i, suggested[i]]:.6f}"]
            for i in flagged.tolist()]
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["source", "label", "suggested", "score", "p_suggested"])
    writer.writerows(rows)
    write_atomically(folder / CSV, text.getvalue())
    shown = flagged[:SHOWN].tolist()
    images = images_of([sources[i] for i in shown]) if images_of is not None and shown else None
    if images is not None:
        titles = [f"{names[labels[i]]} → {names[suggested[i]]}? {probs[i, suggested[i]]:.2f}" for i in shown]
        pixels = render(figures.labelled_images(images.float() / 255, titles, columns=min(8, len(shown))))
        write_atomically(folder / "label_issues.png", lambda f: save_png(pixels, f))
    return folder / CSV, len(rows)
