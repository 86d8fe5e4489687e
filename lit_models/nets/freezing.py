"""A frozen pretrained backbone: no gradients for its parameters, and kept in eval mode (BatchNorm statistics and
dropout as trained), whatever ``train()`` the net around it is put in. One home for the rule, used by every net
that can freeze its backbone.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from typing_extensions import Self, override


def freeze(backbone: nn.Module) -> None:
    """No gradients for ``backbone``'s parameters, and eval mode now."""
    for parameter in backbone.parameters():
        parameter.requires_grad_(False)
    backbone.eval()


class FrozenBackbone(nn.Module):
    """Base of a net with a ``backbone`` (every layer but the head) that ``freeze_backbone`` freezes.

    Put it before the net's own base class (``class Net(FrozenBackbone, AlexNet)``); the net sets
    ``freeze_backbone`` and calls :meth:`freeze_if_asked` once its backbone exists.
    """

    freeze_backbone: bool = False
    backbone: Any  # an nn.Module (a property of the net: a view of its layers)

    def freeze_if_asked(self) -> None:
        """Freeze the backbone when ``freeze_backbone`` is set."""
        if self.freeze_backbone:
            freeze(self.backbone)

    @override
    def train(self, mode: bool = True) -> Self:
        """Train (or evaluate) the net, the frozen backbone staying in eval mode: BatchNorm and dropout as trained."""
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()
        return self
