"""Label checks: planted label flips come first; probabilities are averaged over seeds; cleanlab missing is a line."""

from __future__ import annotations

import csv
import sys

import numpy as np
import pytest
import torch

from experiments.analysis.labels import pooled_probabilities, require_cleanlab, write_label_issues

NAMES = ["ant", "bee", "cat"]


def planted(tmp_path, flips: int = 15):
    """Out-of-fold probabilities (two seeds of logistic regression) on three separable blobs, ``flips`` labels
    changed at random; the oof CSV as ``cv`` writes it.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 100)
    x = rng.normal(size=(300, 2)) * 0.7 + np.array([[0, 0], [3, 0], [0, 3]])[y]
    flipped = rng.choice(300, flips, replace=False)
    given = y.copy()
    given[flipped] = (y[flipped] + rng.integers(1, 3, flips)) % 3
    path = tmp_path / "oof_predictions.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["source", "seed", "fold", "target", "prediction", *[f"p_{n}" for n in NAMES]])
        for seed in (1, 2):
            splits = StratifiedKFold(5, shuffle=True, random_state=seed)
            probs = cross_val_predict(LogisticRegression(), x, given, cv=splits, method="predict_proba")
            for i in range(300):
                writer.writerow([f"img{i:03d}.png", seed, 0, given[i], probs[i].argmax(), *probs[i]])
    return path, {f"img{i:03d}.png" for i in flipped}, given


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_planted_flips_are_ranked_first(tmp_path):
    path, flips, given = planted(tmp_path)
    shown = []

    def images_of(sources):
        shown.extend(sources)
        return torch.zeros(len(sources), 3, 8, 8, dtype=torch.uint8)

    out, flagged = write_label_issues(tmp_path, path, images_of)
    rows = read(out)
    assert flagged == len(rows) >= len(flips) - 2
    top = [r["source"] for r in rows[:len(flips)]]
    assert len(set(top) & flips) >= len(flips) - 2, (top, sorted(flips))
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores)  # most likely wrong first
    first = rows[0]
    assert first["label"] == NAMES[given[int(first["source"][3:6])]] and first["suggested"] != first["label"]
    assert shown == [r["source"] for r in rows[:32]] and (tmp_path / "label_issues.png").stat().st_size > 1000


def test_probabilities_are_the_mean_over_seeds(tmp_path):
    path, _, given = planted(tmp_path)
    rows = [r for r in read(path) if r["source"] == "img007.png"]
    sources, labels, probs, names = pooled_probabilities(path)
    i = sources.index("img007.png")
    expected = np.mean([[float(r[f"p_{n}"]) for n in NAMES] for r in rows], axis=0)
    np.testing.assert_allclose(probs[i], expected / expected.sum(), atol=1e-9)
    assert names == NAMES and labels[i] == given[7] and len(sources) == 300


def test_without_cleanlab_it_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cleanlab", None)
    monkeypatch.setitem(sys.modules, "cleanlab.filter", None)
    with pytest.raises(ValueError, match="pip install"):
        require_cleanlab()
