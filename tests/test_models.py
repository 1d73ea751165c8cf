import pytest
import torch
from torch import nn

from utils.core import models


def test_mlp_shapes_norm_positions_and_dropout():
    x = torch.randn(8, 20)
    assert models.MLP(20, [16, 16], 3)(x).shape == (8, 3)
    before = models.MLP(20, [16], 3, norm="batch")
    after = models.MLP(20, [16], 3, norm="batch", norm_position="after")
    assert isinstance(before.net[1], nn.BatchNorm1d) and isinstance(before.net[2], nn.ReLU)
    assert isinstance(after.net[1], nn.ReLU) and isinstance(after.net[2], nn.BatchNorm1d)
    assert any(isinstance(m, nn.Dropout) for m in models.MLP(20, [16], 3, dropout=0.5).modules())
    assert models.MLP(20, [], 3)(x).shape == (8, 3)  # linear model
    custom = models.MLP(20, [16], 3, norm=lambda c: nn.LayerNorm(c))
    assert isinstance(custom.net[1], nn.LayerNorm)


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"norm": "instance"}, "norm"),
        ({"activation": "swish"}, "activation"),
        ({"dropout": 1.0}, "dropout"),
        ({"norm_position": "middle"}, "norm_position"),
    ],
)
def test_mlp_rejects_bad_arguments(kwargs, word):
    with pytest.raises(ValueError, match=word):
        models.MLP(4, [4], 2, **kwargs)


@pytest.mark.parametrize("norm", [None, "batch", "layer", "group"])
def test_cnn_and_resnet_shapes(norm):
    x = torch.randn(4, 1, 28, 28)
    assert models.SmallCNN(norm=norm)(x).shape == (4, 10)
    net = models.ResNet(widths=(8, 16), blocks=(2, 1), norm=norm)
    assert net(x).shape == (4, 10) and net.features(x).shape == (4, 16)
    assert [n for n, _ in net.named_children()] == ["stem", "stage1", "stage2", "head"]


def test_resnet_plain_has_no_shortcuts_and_residual_adds_input():
    plain = models.ResNet(widths=(8,), residual=False)
    assert all(not b.residual for b in plain.stage1)
    block = models.BasicBlock(8, 8, norm=None)
    x = torch.randn(2, 8, 5, 5)
    assert torch.allclose(block(x), torch.relu(block.branch(x) + x))
    with pytest.raises(ValueError, match="blocks"):
        models.ResNet(widths=(8, 16), blocks=(1, 1, 1))
    with pytest.raises(ValueError, match="N, C, H, W"):
        models.ResNet()(torch.randn(2, 784))


def test_init_weights_schemes():
    torch.manual_seed(0)
    lin = nn.Linear(1000, 1000)
    models.init_weights(lin, "kaiming")
    weight, bias = lin.weight.detach(), lin.bias.detach()
    assert abs(float(weight.var()) - 2 / 1000) < 2e-4 and float(bias.abs().sum()) == 0
    models.init_weights(lin, "xavier")
    assert abs(float(lin.weight.detach().var()) - 2 / 2000) < 1e-4
    models.init_weights(lin, "default")
    assert abs(float(lin.weight.detach().var()) - 1 / 3000) < 5e-5  # kaiming_uniform(a=sqrt(5))
    with pytest.raises(ValueError, match="scheme"):
        models.init_weights(lin, "orthogonal")


def test_count_parameters_respects_requires_grad():
    net = models.MLP(10, [5], 2)
    assert models.count_parameters(net) == 10 * 5 + 5 + 5 * 2 + 2
    net.net[0].weight.requires_grad_(False)
    assert models.count_parameters(net, trainable_only=True) == 5 + 5 * 2 + 2
