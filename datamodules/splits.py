"""Train/validation splits that are fixed by a seed."""

from __future__ import annotations

import torch


def resolve_size(size: int | float, total: int, option: str) -> int:
    """A split size given as a count or as a fraction of ``total``."""
    count = round(size * total) if isinstance(size, float) and 0 < size < 1 else int(size)
    if not 0 < count < total:
        raise ValueError(
            f"{option}={size} leaves no training or no validation data out of {total} samples; "
            f"use a count in [1, {total - 1}] or a fraction in (0, 1)"
        )
    return count


def stratified_split(labels: torch.Tensor, val_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, val indices): every class gets its share of ``val_size``, drawn at random."""
    generator = torch.Generator().manual_seed(seed)
    classes, counts = labels.unique(return_counts=True)
    # largest-remainder allocation so the class shares add up to exactly val_size
    exact = counts.double() * val_size / len(labels)
    share = exact.floor().long()
    remainder = val_size - int(share.sum())
    if remainder > 0:
        share[torch.argsort(exact - share, descending=True)[:remainder]] += 1
    train_parts, val_parts = [], []
    for cls, k in zip(classes.tolist(), share.tolist(), strict=True):
        members = (labels == cls).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        val_parts.append(members[:k])
        train_parts.append(members[k:])
    train = torch.cat(train_parts).sort().values
    val = torch.cat(val_parts).sort().values
    return train, val


def random_split(n: int, val_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, val indices) from ``torch.randperm(n)`` with the given seed (the CIFAR recipe)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[val_size:], perm[:val_size]
