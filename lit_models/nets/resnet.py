"""ResNet for 32x32 inputs (CIFAR): 3x3 stem, no max-pool, stages built from a table."""

from __future__ import annotations

import torch
from torch import nn
from typing_extensions import override


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """A 3x3 convolution without bias (BatchNorm follows), padding 1."""
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """conv3x3(stride) BN ReLU conv3x3 BN + shortcut (1x1 conv + BN when the shape changes), ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    @override
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """Stem conv3x3(64) BN ReLU; stages (width, blocks, stride); global average pool; linear head.

    ``blocks_per_stage=[2, 2, 2, 2]`` is ResNet-18 (11.17M parameters for 10 classes),
    ``[3, 4, 6, 3]`` is ResNet-34.

    Args:
        num_classes: outputs of the linear head.
        in_channels: image channels (3 for RGB).
        blocks_per_stage: basic blocks in each stage ([2, 2, 2, 2] is ResNet-18).
        widths: channels of each stage; every stage after the first halves the side.
        zero_init_residual: start each block's last BatchNorm at zero (each block begins as identity).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        blocks_per_stage: list[int] = [2, 2, 2, 2],  # noqa: B006
        widths: list[int] = [64, 128, 256, 512],  # noqa: B006
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if len(blocks_per_stage) != len(widths) or min(blocks_per_stage) < 1:
            raise ValueError(
                f"CifarResNet: blocks_per_stage={blocks_per_stage} must give >= 1 block for each of widths={widths}"
            )
        self.num_classes = num_classes
        self.stem = nn.Sequential(conv3x3(in_channels, widths[0]), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        stages = []
        channels = widths[0]
        for i, (width, blocks) in enumerate(zip(widths, blocks_per_stage, strict=True)):
            stride = 1 if i == 0 else 2
            layers = [BasicBlock(channels, width, stride)] + [BasicBlock(width, width) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*layers))
            channels = width
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if zero_init_residual:  # each block starts as the identity: steadier early training
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    @override
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def resnet18(num_classes: int = 10) -> CifarResNet:
    """ResNet-18 for 32x32 images: two basic blocks in each of four stages."""
    return CifarResNet(num_classes, blocks_per_stage=[2, 2, 2, 2])
