import pytest
import torch

from lit_models.nets import DenseLayer, Feedforward


def test_shapes_for_regression_and_images():
    net = Feedforward(1, 1, [64, 64, 64])
    assert net(torch.randn(5, 1)).shape == (5, 1)
    assert net.depth == 4
    mnist = Feedforward(784, 10, [256, 128])
    assert mnist(torch.randn(3, 1, 28, 28)).shape == (3, 10)


def test_outputs_are_raw_not_softmax():
    net = Feedforward(784, 10, [32])
    out = net(torch.randn(16, 784) * 10)
    assert not torch.allclose(out.sum(1), torch.ones(16))
    assert (out < 0).any()


def test_depth_check_names_the_fix():
    expected = r"depth=3 does not match hidden_sizes=\[64, 64, 64\].*len\(hidden_sizes\) \+ 1 = 4"
    with pytest.raises(ValueError, match=expected):
        Feedforward(1, 1, [64, 64, 64], depth=3)
    assert Feedforward(1, 1, [64, 64, 64], depth=4).depth == 4


def test_recipe_init_xavier_weight_zero_bias():
    layer = DenseLayer(100, 50)
    assert torch.all(layer.linear.bias == 0)
    bound = (6 / (100 + 50)) ** 0.5
    assert layer.linear.weight.abs().max() <= bound
    assert layer.linear.weight.std() > bound / 3  # not all zeros either


def test_bad_activation():
    with pytest.raises(ValueError, match="activation='gelu'"):
        DenseLayer(2, 2, "gelu")


def test_gradients_reach_every_parameter():
    net = Feedforward(1, 1, [8, 8], activation="tanh")
    net(torch.randn(32, 1)).pow(2).mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
