"""utils.tasks.normalization.DeepMLP against its definition written out here: the blocks compute
relu(h + s F(h)) or relu(F(h)), a deleted block passes its input through (Veit et al. 2016)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from utils.tasks import normalization


def _manual(net, x, skip=None):
    """The forward pass of DeepMLP written out from its layers; block `skip` is left out."""
    h = torch.relu(net.inp(x.flatten(1)))
    for i, b in enumerate(net.blocks):
        if i == skip:
            continue
        f = b.norm2(b.fc2(torch.relu(b.norm1(b.fc1(h)))))
        h = torch.relu(h + b.branch_scale * f) if b.residual else torch.relu(f)
    return net.out(h)


@pytest.mark.parametrize("residual", [False, True])
def test_forward_matches_the_written_out_definition(residual):
    torch.manual_seed(0)
    net = normalization.DeepMLP(12, 3, 8, 4, residual=residual)
    x = torch.randn(5, 3, 4)  # flattened to [5, 12]
    out = net(x)
    assert out.shape == (5, 3)
    torch.testing.assert_close(out, _manual(net, x))
    assert sum(isinstance(m, nn.Linear) for m in net.modules()) == 2 * 4 + 2
    assert all(b.branch_scale == pytest.approx(4**-0.5) for b in net.blocks)


@pytest.mark.parametrize("residual", [False, True])
def test_a_deleted_block_passes_its_input_through(residual):
    torch.manual_seed(1)
    net = normalization.DeepMLP(10, 3, 8, 4, residual=residual)
    x = torch.randn(6, 10)
    full = net(x).detach()
    net.delete_block(2)
    torch.testing.assert_close(net(x), _manual(net, x, skip=2))
    assert not torch.allclose(net(x), full)  # the lesion changes the output
    net.restore_blocks()
    assert torch.equal(net(x), full)


def test_he_init_and_zero_biases():
    torch.manual_seed(0)
    net = normalization.DeepMLP(400, 10, 400, 2, residual=True)
    w = net.blocks[0].fc1.weight.detach()
    assert float(w.std()) == pytest.approx((2 / 400) ** 0.5, rel=0.02)
    assert all(
        float(m.bias.detach().abs().max()) == 0 for m in net.modules() if isinstance(m, nn.Linear)
    )


def test_norm_and_branch_scale_options():
    torch.manual_seed(0)
    net = normalization.DeepMLP(6, 2, 4, 3, residual=True, norm="batch", branch_scale=0.5)
    assert isinstance(net.blocks[0].norm1, nn.BatchNorm1d)
    assert net.blocks[1].branch_scale == 0.5
    F.cross_entropy(net(torch.randn(8, 6)), torch.zeros(8).long()).backward()
    assert net.blocks[0].fc1.weight.grad is not None


@pytest.mark.parametrize(
    "kw,word",
    [
        ({"blocks": 0}, "blocks"),
        ({"width": True}, "width"),
        ({"in_features": 2.0}, "in_features"),
        ({"branch_scale": 0.0}, "branch_scale"),
        ({"norm": "instance"}, "norm"),
    ],
)
def test_bad_arguments_raise_naming_them(kw, word):
    args = {"in_features": 4, "out_features": 2, "width": 3, "blocks": 2, **kw}
    with pytest.raises(ValueError, match=word):
        normalization.DeepMLP(**args, residual=True)


def test_delete_block_rejects_a_block_that_does_not_exist():
    net = normalization.DeepMLP(4, 2, 3, 2, residual=False)
    for bad in (2, -1, 1.0):
        with pytest.raises(IndexError, match="block index"):
            net.delete_block(bad)
