"""Plain ``nn.Module`` nets. They know nothing of Lightning and return raw outputs (logits)."""

from lit_models.nets.alexnet import AlexNetClassifier
from lit_models.nets.cnn import CifarCNN
from lit_models.nets.lenet import LeNet5
from lit_models.nets.mlp import DenseLayer, Feedforward
from lit_models.nets.resnet import BasicBlock, CifarResNet, resnet18
from lit_models.nets.torchvision_net import TorchvisionClassifier

__all__ = [
    "AlexNetClassifier", "BasicBlock", "CifarCNN", "CifarResNet", "DenseLayer", "Feedforward", "LeNet5",
    "TorchvisionClassifier", "resnet18",
]
