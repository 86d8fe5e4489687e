"""The recipe's fully connected net, used for the sin(1/x) regression and the MNIST MLP."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from typing_extensions import override

Activation = Literal["relu", "sigmoid", "tanh", "linear"]

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "linear": nn.Identity,
}


class DenseLayer(nn.Module):
    """Linear map + activation with the recipe's init (Xavier-uniform weight, zero bias).

    ``batch_norm`` puts a BatchNorm1d between the map and the activation and ``dropout`` drops
    activations after it; both are off by default (the recipe has neither) and, off, leave the
    parameter names of a saved recipe net unchanged.
    """

    def __init__(
        self, in_features: int, out_features: int, activation: Activation = "relu", batch_norm: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"activation={activation!r} is not supported; choose one of {sorted(_ACTIVATIONS)}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.linear = nn.Linear(in_features, out_features)
        self.norm = nn.BatchNorm1d(out_features) if batch_norm else nn.Identity()
        self.activation = _ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        nn.init.xavier_uniform_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    @override
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.activation(self.norm(self.linear(x))))


class Feedforward(nn.Module):
    """``depth`` dense layers: ``len(hidden_sizes)`` hidden ones and a linear output layer.

    Inputs with more than two dimensions (images) are flattened, so the same net serves the
    regression (N, 1) and MNIST (N, 1, 28, 28). The output is raw: no softmax, since the
    classification loss applies log-softmax itself (the recipe's double softmax is a known defect).
    ``batch_norm`` and ``dropout`` apply to the hidden layers only (see :class:`DenseLayer`).

    Args:
        in_features: input size (flattened: 784 for a 28x28 image).
        out_features: output size (1 for the regression, the class count for a classifier).
        hidden_sizes: width of each hidden layer.
        depth: layer count including the output layer, checked against len(hidden_sizes) + 1 (optional).
        activation: relu, sigmoid, tanh or linear after each hidden layer.
        batch_norm: BatchNorm1d after each hidden linear map.
        dropout: dropout probability after each hidden activation.
    """

    def __init__(
        self,
        in_features: int = 1,
        out_features: int = 1,
        hidden_sizes: list[int] = [64, 64, 64],  # noqa: B006  (read-only; jsonargparse needs a literal)
        depth: int | None = None,
        activation: Activation = "relu",
        batch_norm: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        hidden_sizes = list(hidden_sizes)
        if depth is not None and depth != len(hidden_sizes) + 1:
            raise ValueError(
                f"Feedforward: depth={depth} does not match hidden_sizes={hidden_sizes} "
                f"(depth must be len(hidden_sizes) + 1 = {len(hidden_sizes) + 1}); "
                "fix --model.net.init_args.depth or drop it"
            )
        if in_features < 1 or out_features < 1 or any(h < 1 for h in hidden_sizes):
            raise ValueError(
                f"Feedforward: sizes must be positive, got in_features={in_features}, "
                f"hidden_sizes={hidden_sizes}, out_features={out_features}"
            )
        self.in_features = in_features
        self.out_features = out_features
        sizes = [in_features, *hidden_sizes]
        layers = [DenseLayer(a, b, activation, batch_norm, dropout) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
        layers.append(DenseLayer(sizes[-1], out_features, "linear"))
        self.layers = nn.Sequential(*layers)

    @property
    def depth(self) -> int:
        """The number of hidden layers."""
        return len(self.layers)

    @override
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() > 2:
            x = x.flatten(1)
        return self.layers(x)
