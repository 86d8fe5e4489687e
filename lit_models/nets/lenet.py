"""LeNet-5 in the recipe's "features / classifier" style."""

from __future__ import annotations

import torch
from torch import nn
from typing_extensions import override


class LeNet5(nn.Module):
    """Conv(6, 5x5) -> pool -> Conv(16, 5x5) -> pool -> 120 -> 84 -> classes, on 32x32 input.

    ``modern=False`` is the classic net (tanh, average pooling); ``modern=True`` swaps in ReLU and
    max pooling, which trains faster. Feed MNIST padded by 2 (``--data.init_args.pad 2``).

    ``batch_norm`` adds a BatchNorm after each convolution and hidden linear layer (before the
    activation) and ``dropout`` drops the outputs of the two hidden linear layers; the
    channels and units stay LeNet-5's. Both are off by default, and off the parameter names are
    the recipe's, so saved recipe nets still load.

    Args:
        in_channels: channels of the input images (1 for MNIST-format data, 3 for colour).
        num_classes: outputs of the last layer (logits), one per class.
        modern: ReLU and max pooling instead of the classic tanh and average pooling.
        batch_norm: a BatchNorm after each convolution and hidden linear layer, before the activation.
        dropout: probability of dropping the outputs of the two hidden linear layers (0 turns it off).
    """

    def __init__(
        self, in_channels: int = 1, num_classes: int = 10, modern: bool = False, batch_norm: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"LeNet5: dropout must be in [0, 1), got {dropout}")
        act = nn.ReLU if modern else nn.Tanh
        pool = nn.MaxPool2d if modern else nn.AvgPool2d
        self.num_classes = num_classes

        def norm(kind: type[nn.Module], width: int) -> list[nn.Module]:
            return [kind(width)] if batch_norm else []

        def drop() -> list[nn.Module]:
            return [nn.Dropout(dropout)] if dropout else []

        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5),  # 32 -> 28
            *norm(nn.BatchNorm2d, 6),
            act(),
            pool(2),  # 28 -> 14
            nn.Conv2d(6, 16, kernel_size=5),  # 14 -> 10
            *norm(nn.BatchNorm2d, 16),
            act(),
            pool(2),  # 10 -> 5
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120),
            *norm(nn.BatchNorm1d, 120),
            act(),
            *drop(),
            nn.Linear(120, 84),
            *norm(nn.BatchNorm1d, 84),
            act(),
            *drop(),
            nn.Linear(84, num_classes),
        )

    @override
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
