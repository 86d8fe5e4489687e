"""uint8 image tensors served one PIL image at a time, for pipelines built from torchvision's PIL transforms."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset


class PILImages(Dataset):
    """``(transform(PIL image), label)`` pairs from uint8 ``(N, C, H, W)`` images, as torchvision's data
    sets yield them (``Image.fromarray`` on the ``H, W, C`` array), so the classic DataLoader recipe runs
    unchanged over tensors read once.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor,
                 transform: Callable[[Image.Image], Any] | None = None) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4 or len(images) != len(labels):
            raise ValueError(f"expected uint8 (N, C, H, W) images with N labels, got {tuple(images.shape)} "
                             f"{images.dtype} and {len(labels)} labels")
        self.images = images.permute(0, 2, 3, 1).numpy()  # a view: N, H, W, C
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        array = self.images[index]
        image = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
        return (self.transform(image) if self.transform else image), self.labels[index]
