"""Cross-validation folds of a data module's pool (its training and validation data; a test split stays out).

A data module that can be cross-validated describes its pool (:class:`Pool`: each sample's source name, its label
for stratification, its group when samples must stay together); :func:`assign_folds` gives every sample a fold with
scikit-learn's splitters, and :func:`fold_rows` the rows one run trains and validates on. The assignment depends on
the pool and the seed alone: the samples are ordered by their source names first, so it does not change with the
order the files are listed in or with any model or training option.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Fold:
    """Which run of a cross-validation this is: fold ``fold`` of ``folds`` under seed ``seed``.

    Attributes:
        folds: how many folds the pool is split into (K).
        fold: the held-out fold of this run, in ``[0, folds)``; None: a refit that trains on the whole pool (its
            validation split is the pool too, and is not meant to be run).
        seed: the seed of the fold assignment (each seed gives another assignment).
        group_by: samples whose group is equal stay in one fold (a CSV column, or a regex on the relative path).
    """

    folds: int
    fold: int | None
    seed: int
    group_by: str | None = None

    def __post_init__(self) -> None:
        if self.folds < 2:
            raise ValueError(f"--folds {self.folds}: cross-validation needs at least 2 folds")
        if self.fold is not None and not 0 <= self.fold < self.folds:
            raise ValueError(f"fold {self.fold} is not one of the {self.folds} folds (0 to {self.folds - 1})")


@dataclass
class Pool:
    """The samples folds are drawn from.

    Attributes:
        sources: each sample's name (a path relative to the data's root, or its index in the data set).
        labels: class indices to stratify by (None: a regression target, plain K-fold).
        groups: each sample's group (None: every sample is its own).
    """

    sources: list[str]
    labels: torch.Tensor | None = None
    groups: list[str] | None = None


def _canonical(sources: list[str]) -> np.ndarray:
    """The pool's rows ordered by source name (numbers as numbers), so listing order cannot move a fold."""
    if all(s.isdigit() for s in sources):
        return np.argsort(np.array([int(s) for s in sources]), kind="stable")
    return np.argsort(np.array(sources, dtype=object), kind="stable")


def assign_folds(pool: Pool, folds: int, seed: int) -> np.ndarray:
    """The fold (in ``[0, folds)``) of every sample of ``pool``, in the pool's order.

    Stratified by label when the pool has labels (scikit-learn's ``StratifiedKFold``, or ``StratifiedGroupKFold``
    with groups), shuffled by ``seed``; plain ``KFold``/``GroupKFold`` for a regression.

    Raises:
        ValueError: fewer than 2 folds, more folds than the smallest class has samples, or than there are groups;
            scikit-learn is not installed.
    """
    try:
        from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold
    except ImportError:
        raise ValueError("cross-validation needs scikit-learn: pip install 'litexp[results]' "
                         "(or scikit-learn)") from None
    n = len(pool.sources)
    if folds < 2:
        raise ValueError(f"--folds {folds}: cross-validation needs at least 2 folds")
    if folds > n:
        raise ValueError(f"--folds {folds}: the pool has only {n} samples; pass --folds {max(2, n)} or fewer")
    order = _canonical(pool.sources)
    labels = pool.labels.numpy()[order] if pool.labels is not None else None
    groups = np.array(pool.groups, dtype=object)[order] if pool.groups is not None else None
    if labels is not None:
        classes, counts = np.unique(labels, return_counts=True)
        if folds > counts.min():
            raise ValueError(f"--folds {folds}: class {int(classes[counts.argmin()])} has {counts.min()} samples, so "
                             f"some folds would validate without it; pass --folds {max(2, int(counts.min()))} or fewer")
    if groups is not None and len(set(groups.tolist())) < folds:
        raise ValueError(f"--folds {folds}: --group_by gives {len(set(groups.tolist()))} groups, fewer than the "
                         "folds; pass fewer folds or a finer --group_by")
    if groups is not None and labels is not None:
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    elif groups is not None:  # GroupKFold shuffles groups only from scikit-learn 1.6 on: order them by the seed
        splitter = GroupKFold(n_splits=folds)
        rng = np.random.default_rng(seed)
        names = sorted(set(groups.tolist()))
        rank = dict(zip(names, rng.permutation(len(names)).tolist(), strict=True))
        groups = np.array([rank[g] for g in groups.tolist()])
    elif labels is not None:
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    else:
        splitter = KFold(n_splits=folds, shuffle=True, random_state=seed)
    y = labels if labels is not None else np.zeros(n)
    assigned = np.empty(n, dtype=np.int64)
    for index, (_, held_out) in enumerate(splitter.split(np.zeros((n, 1)), y, groups)):
        assigned[order[held_out]] = index
    if pool.labels is not None:
        _check_every_class_trained(pool.labels.numpy(), assigned, folds, seed)
    return assigned


def _check_every_class_trained(labels: np.ndarray, assigned: np.ndarray, folds: int, seed: int) -> None:
    """Groups can hold a whole class in one fold: that fold's run would never see the class in training."""
    classes = set(np.unique(labels).tolist())
    for fold in range(folds):
        missing = classes - set(np.unique(labels[assigned != fold]).tolist())
        if missing:
            raise ValueError(f"--group_by: fold {fold} of seed {seed} holds every sample of class {min(missing)}, so "
                             "its run would train without it; pass a --group_by whose groups share classes, or "
                             "fewer folds")


def fold_rows(pool: Pool, fold: Fold) -> dict[str, torch.Tensor]:
    """``{"train": rows, "val": rows}`` of ``pool`` for one run: the held-out fold is validated on."""
    if fold.fold is None:
        every = torch.arange(len(pool.sources))
        return {"train": every, "val": every}
    assigned = torch.from_numpy(assign_folds(pool, fold.folds, fold.seed))
    held_out = assigned == fold.fold
    return {"train": (~held_out).nonzero().flatten(), "val": held_out.nonzero().flatten()}


def groups_from_paths(sources: list[str], pattern: str) -> list[str]:
    """Each relative path's group: the regex's first group where it has one, else its whole match.

    Raises:
        ValueError: the regex is invalid, or does not match a path (the message names the first).
    """
    try:
        compiled = re.compile(pattern)
    except re.error as err:
        raise ValueError(f"--group_by {pattern!r}: not a regular expression ({err})") from None
    groups = []
    for source in sources:
        found = compiled.search(source)
        if found is None:
            raise ValueError(f"--group_by {pattern!r} does not match {source}; pass a regex that finds the group in "
                             "every path relative to --data.root (e.g. '^(\\w+)_' for a subject id)")
        groups.append(found.group(1) if compiled.groups else found.group(0))
    return groups
