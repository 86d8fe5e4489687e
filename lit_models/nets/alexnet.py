"""torchvision's AlexNet with ImageNet weights and a new head, for fine-tuning on small data sets."""

from __future__ import annotations

import socket
from pathlib import Path

import torch
from torch import nn
from torchvision.models import AlexNet, AlexNet_Weights
from typing_extensions import override

from lit_models.nets import warm_start
from lit_models.nets.freezing import FrozenBackbone

#: how long the weights download may stall before we give up with a message (no endless hang)
DOWNLOAD_TIMEOUT_S = 30


def load_alexnet_state_dict(weights: str) -> dict[str, torch.Tensor] | None:
    """The 1000-class ImageNet state dict named by ``weights``: a torchvision enum name or a path."""
    if weights.lower() == "none":
        return None
    if weights in AlexNet_Weights.__members__:
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
        try:
            return AlexNet_Weights[weights].get_state_dict(progress=True, check_hash=True)
        except Exception as err:  # URLError, timeout, HTTP errors, a bad hash
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConnectionError(
                f"could not fetch AlexNet weights {weights} ({reason}); pass --model.init_args.net.init_args.weights "
                "PATH to a local alexnet-owt-7be5be79.pth (or any AlexNet state_dict), or weights: none"
            ) from None
        finally:
            socket.setdefaulttimeout(previous)
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(
            f"--model.init_args.net.init_args.weights {weights}: no such file and not one of "
            f"{list(AlexNet_Weights.__members__)} or none"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"AlexNet weights {path} cannot be read as a state_dict ({type(err).__name__})") from None
    if warm_start.is_run_checkpoint(state):  # a run of ours: its net's keys are torchvision's
        return warm_start.net_state(state)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"AlexNet weights {path} hold a {type(state).__name__}, not a state_dict")
    return state


class AlexNetClassifier(FrozenBackbone, AlexNet):
    """AlexNet (torchvision's layer names, so its checkpoints load as they are) with a new last layer.

    ``weights``: ``IMAGENET1K_V1`` (downloaded by torchvision, cached), ``none`` (random init), the
    path of a state_dict with torchvision's keys, or a checkpoint of a run of this project (its backbone).
    ``freeze_backbone`` trains only the new head: the backbone gets no gradients, runs without autograd (no
    backward through it) and stays in eval mode (its dropout off), so a frozen step costs
    little more than a forward pass.

    Args:
        num_classes: outputs of the new last layer.
        weights: IMAGENET1K_V1 (torchvision's download), none (random init), a state_dict file path, or a run's
            checkpoint (``fit``'s .ckpt, or ``<experiment>:best``).
        freeze_backbone: train only the new head; the backbone runs in eval mode without autograd.
        dropout: dropout probability in the classifier.
    """

    HEAD = "classifier.6"

    def __init__(
        self,
        num_classes: int = 10,
        weights: str = "IMAGENET1K_V1",
        freeze_backbone: bool = False,
        dropout: float = 0.5,
    ) -> None:
        super().__init__(num_classes=1000, dropout=dropout)
        self.flatten = nn.Flatten(1)  # no parameters: the state dict keeps torchvision's keys
        state = load_alexnet_state_dict(weights)
        if state is not None:
            self._load_backbone(state, weights)
        self.classifier[6] = nn.Linear(4096, num_classes)
        self.num_classes = num_classes
        self.freeze_backbone = freeze_backbone
        self.freeze_if_asked()

    def _load_backbone(self, state: dict[str, torch.Tensor], source: str) -> None:
        expected = self.state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        wrong = sorted(k for k in set(expected) & set(state) if state[k].shape != expected[k].shape
                       and not k.startswith(self.HEAD))
        if missing or unexpected or wrong:
            parts = []
            if missing:
                parts.append(f"missing {missing[:6]}")
            if unexpected:
                parts.append(f"unexpected {unexpected[:6]}")
            if wrong:
                parts.append("shape " + ", ".join(f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
                                                  for k in wrong[:4]))
            raise ValueError(f"AlexNet weights {source} do not match torchvision's AlexNet: {'; '.join(parts)}")
        backbone = {k: v for k, v in state.items() if not k.startswith(self.HEAD)}
        self.load_state_dict({**expected, **backbone})

    @property
    def backbone(self) -> nn.Sequential:
        """Every layer but the new head (a view: the same parameters, no copies)."""
        return nn.Sequential(self.features, self.avgpool, self.flatten, *self.classifier[:6])

    @property
    def head(self) -> nn.Module:
        """The new last layer, sized for the data's classes."""
        return self.classifier[6]

    @override
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        trains_backbone = torch.is_grad_enabled() and not self.freeze_backbone
        with torch.set_grad_enabled(trains_backbone):
            # the backbone's layers in order, called directly: building the ``backbone`` view
            # (a new nn.Sequential) on every step would cost a module construction per batch
            x = self.flatten(self.avgpool(self.features(x)))
            for i in range(6):
                x = self.classifier[i](x)
        return self.head(x)
