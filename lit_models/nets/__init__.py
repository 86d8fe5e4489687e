"""Plain ``nn.Module`` nets. They know nothing of Lightning and return raw outputs (logits)."""

from lit_models.nets.lenet import LeNet5
from lit_models.nets.mlp import DenseLayer, Feedforward

__all__ = ["DenseLayer", "Feedforward", "LeNet5"]
