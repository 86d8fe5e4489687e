"""Batched, per-sample image augmentation on the device: a few tensor ops per batch, no Python loop.

Equivalent to torchvision's ``RandomCrop(size, padding)`` + ``RandomHorizontalFlip()`` applied to
each image independently, but done for a whole (N, C, H, W) batch at once where the data already
is (the GPU), which is what keeps the input pipeline off the critical path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero-pad by ``padding`` and cut a random window of the original size, per image.

    One gather over all four dimensions, so the result has the input's plain (N, C, H, W) layout.
    Indexing a channels-last view instead is ~15% faster here but hands back channels-last strides,
    and with one channel those look like a plain tensor to ``is_contiguous()`` while CPU convolutions
    and BatchNorm take their slow path on them: a LeNet-5 + BatchNorm step measured 21.7 ms against
    9.8 ms on the plain layout (batch 128, 2-core CPU).
    """
    if padding <= 0:
        return x
    n, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (n,), device=x.device, generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n,), device=x.device, generator=generator)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # n, 1, h, 1
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # n, 1, 1, w
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    channels = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, channels, rows, cols]


def random_flip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2."""
    flip = torch.rand(x.shape[0], device=x.device, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def crop_flip(
    x: torch.Tensor, padding: int = 4, flip: bool = True, generator: torch.Generator | None = None
) -> torch.Tensor:
    """The CIFAR training augmentation for a whole batch; labels are untouched (same order)."""
    x = random_crop(x, padding, generator)
    return random_flip(x, generator) if flip else x
