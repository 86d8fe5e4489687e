"""The recipe's custom CIFAR-10 CNN; BatchNorm, two convs per block and dropout are options."""

from __future__ import annotations

import torch
from torch import nn
from typing_extensions import override


def conv_block(in_channels: int, out_channels: int, convs: int, batch_norm: bool, dropout: float) -> nn.Sequential:
    """``convs`` x (Conv3x3 -> [BN] -> ReLU), then MaxPool2 and optional dropout: halves H and W."""
    layers: list[nn.Module] = []
    for i in range(convs):
        layers.append(nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3, padding=1,
                                bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(nn.ReLU(inplace=True))
    layers.append(nn.MaxPool2d(2))
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class CifarCNN(nn.Module):
    """Three blocks 3->64->128->256 (32->16->8->4), then 4096 -> 512 -> 128 -> classes.

    The defaults are the recipe's net. The stronger variant is a config:
    ``convs_per_block: 2, batch_norm: true, block_dropout: [0.2, 0.3, 0.4], head_dropout: 0.5``.

    Args:
        num_classes: outputs of the last layer.
        in_channels: image channels (3 for RGB).
        widths: channels of each block; each block halves the side.
        convs_per_block: 3x3 convolutions per block before its max-pool.
        batch_norm: BatchNorm2d after each convolution.
        block_dropout: dropout after each block's pool, one value per block (default none).
        hidden_sizes: widths of the fully connected layers before the output.
        head_dropout: dropout before each hidden fully connected layer (not the output layer).
        input_size: image side the net is built for (sets the first linear layer's size).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        widths: list[int] = [64, 128, 256],  # noqa: B006
        convs_per_block: int = 1,
        batch_norm: bool = False,
        block_dropout: list[float] | None = None,
        hidden_sizes: list[int] = [512, 128],  # noqa: B006
        head_dropout: float = 0.0,
        input_size: int = 32,
    ) -> None:
        super().__init__()
        dropouts = list(block_dropout) if block_dropout is not None else [0.0] * len(widths)
        if len(dropouts) != len(widths):
            raise ValueError(
                f"CifarCNN: block_dropout has {len(dropouts)} values for {len(widths)} blocks (widths={widths})"
            )
        side = input_size // 2 ** len(widths)
        if side < 1:
            raise ValueError(f"CifarCNN: {len(widths)} blocks halve input_size={input_size} to nothing")
        self.num_classes = num_classes
        channels = [in_channels, *widths]
        self.features = nn.Sequential(*(
            conv_block(a, b, convs_per_block, batch_norm, p)
            for a, b, p in zip(channels[:-1], channels[1:], dropouts, strict=True)
        ))
        sizes = [widths[-1] * side * side, *hidden_sizes]
        head: list[nn.Module] = [nn.Flatten()]
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            if head_dropout > 0:
                head.append(nn.Dropout(head_dropout))
            head += [nn.Linear(a, b), nn.ReLU(inplace=True)]
        head.append(nn.Linear(sizes[-1], num_classes))
        self.classifier = nn.Sequential(*head)

    @override
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
