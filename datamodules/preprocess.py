"""Evaluation preprocessing as a module: the same code prepares batches, exported graphs and served requests.

A data module turns uint8 images into normalised floats after the transfer to the device (training
adds augmentation before it). Keeping that step an ``nn.Module`` with its statistics as buffers lets
``export`` and ``serve`` put the identical arithmetic in front of the net, so a model exported or
served sees exactly what evaluation saw.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class ImagePreprocess(nn.Module):
    """uint8 ``(N, [C,] H, W)`` -> normalised float ``(N, C, H', W')``: scale, crop, pad, normalise, resize.

    ``crop``: the central window evaluation takes of a stored image (the folder module stores images a
    little larger than the net's input, as torchvision's resize-then-centre-crop evaluation does).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], pad: int = 0, size: int | None = None,
                 crop: int | None = None) -> None:
        super().__init__()
        self.crop = crop
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.pad = pad
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        if self.crop and (x.shape[-2] > self.crop or x.shape[-1] > self.crop):
            top, left = (x.shape[-2] - self.crop) // 2, (x.shape[-1] - self.crop) // 2
            x = x[..., top:top + self.crop, left:left + self.crop]
        x = x.to(torch.float32) / 255  # a new tensor: the in-place steps below never touch the input
        if self.pad:
            x = F.pad(x, (self.pad,) * 4)  # pad with black before normalising, as the recipes do
        x = x.sub_(self.mean).div_(self.std)
        if self.size and (x.shape[-2] != self.size or x.shape[-1] != self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=False)
        return x

    def extra_repr(self) -> str:
        mean, std = self.mean.flatten().tolist(), self.std.flatten().tolist()
        return f"mean={mean}, std={std}, pad={self.pad}, size={self.size}, crop={self.crop}"
