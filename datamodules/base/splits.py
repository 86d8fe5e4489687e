"""Train/validation/test splits fixed by a seed: one stratified split for every data module, the recipe's random one."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch


def resolve_size(size: int | float, total: int, option: str) -> int:
    """A split size given as a count or as a fraction of ``total``.

    Returns:
        The count.

    Raises:
        ValueError: the count leaves no training or no held-out data (the message names ``option``).
    """
    count = round(size * total) if isinstance(size, float) and 0 < size < 1 else int(size)
    if not 0 < count < total:
        raise ValueError(
            f"{option}={size} leaves no training or no validation data out of {total} samples; "
            f"use a count in [1, {total - 1}] or a fraction in (0, 1)"
        )
    return count


def _shares(counts: torch.Tensor, size: int | float, left: torch.Tensor) -> torch.Tensor:
    """How many samples of each class a held-out split takes.

    ``size`` as a fraction in (0, 1): ``round(n * size)`` of each class's ``n``; as a count: spread over the classes
    in proportion to ``counts`` (largest remainder, so the shares add up to it). Then at least one from every class
    that still has two (``left``), and never the last one of a class.
    """
    if size <= 0:
        return torch.zeros_like(counts)
    if isinstance(size, float) and size < 1:
        share = torch.tensor([round(n * size) for n in counts.tolist()], dtype=torch.int64)
    else:
        exact = counts.double() * int(size) / int(counts.sum())
        share = exact.floor().long()
        remainder = int(size) - int(share.sum())
        if remainder > 0:
            share[torch.argsort(exact - share, descending=True, stable=True)[:remainder]] += 1
    share = torch.where(left >= 2, share.clamp(min=1), share)
    return torch.minimum(share, (left - 1).clamp(min=0))


def stratified_split(labels: torch.Tensor, val_size: int | float, seed: int, test_size: int | float = 0,
                     keys: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """Sorted indices per split (``train``, ``val``, ``test``), every class giving its share of the held-out sizes.

    A size is a fraction of each class (a float in (0, 1)) or a count over the whole pool (an int, spread over the
    classes in proportion). Which samples of a class are held out is decided by the hash of ``(seed, key)``
    (``keys``: e.g. the files' relative paths; default the positions), not by position: the same files land in
    the same split however the samples are listed, so a folder's cache can be stored in split order and its
    stream built from the listing. Every class with at least two samples gives at least one to a held-out split
    and keeps at least one for training (a tiny class is still validated and trained on).

    Returns:
        ``{"train": ..., "val": ..., "test": ...}`` of int64 index tensors.
    """
    keys = list(keys) if keys is not None else [str(i) for i in range(len(labels))]
    rank = [hashlib.sha1(f"{seed}:{key}".encode()).hexdigest() for key in keys]
    classes, counts = labels.unique(sorted=True, return_counts=True)
    val_share = _shares(counts, val_size, counts)
    test_share = _shares(counts, test_size, counts - val_share)
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for label, n_val, n_test in zip(classes.tolist(), val_share.tolist(), test_share.tolist(), strict=True):
        members = sorted((labels == label).nonzero().flatten().tolist(), key=rank.__getitem__)
        parts["val"] += members[:n_val]
        parts["test"] += members[n_val:n_val + n_test]
        parts["train"] += members[n_val + n_test:]
    return {name: torch.tensor(sorted(index), dtype=torch.int64) for name, index in parts.items()}


def random_split(n: int, val_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, val indices) from ``torch.randperm(n)`` with the given seed (the CIFAR recipe)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[val_size:], perm[:val_size]
