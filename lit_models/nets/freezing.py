"""A frozen pretrained backbone: no gradients for its parameters, and kept in eval mode (BatchNorm statistics and
dropout as trained), whatever ``train()`` the net around it is put in."""

from __future__ import annotations

from torch import nn


def freeze(backbone: nn.Module) -> None:
    for parameter in backbone.parameters():
        parameter.requires_grad_(False)
    backbone.eval()
