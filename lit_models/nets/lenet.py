"""LeNet-5 in the recipe's "features / classifier" style."""

from __future__ import annotations

import torch
from torch import nn


class LeNet5(nn.Module):
    """Conv(6, 5x5) -> pool -> Conv(16, 5x5) -> pool -> 120 -> 84 -> classes, on 32x32 input.

    ``modern=False`` is the classic net (tanh, average pooling); ``modern=True`` swaps in ReLU and
    max pooling, which trains faster. Feed MNIST padded by 2 (``--data.init_args.pad 2``).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, modern: bool = False) -> None:
        super().__init__()
        act = nn.ReLU if modern else nn.Tanh
        pool = nn.MaxPool2d if modern else nn.AvgPool2d
        self.num_classes = num_classes
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5),  # 32 -> 28
            act(),
            pool(2),  # 28 -> 14
            nn.Conv2d(6, 16, kernel_size=5),  # 14 -> 10
            act(),
            pool(2),  # 10 -> 5
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120),
            act(),
            nn.Linear(120, 84),
            act(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
