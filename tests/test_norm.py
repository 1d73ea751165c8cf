"""utils.scratch.norm: from-scratch BatchNorm equals nn.BatchNorm1d/2d; noisy BN; bad input."""

import pytest
import torch
from torch import nn

from utils.scratch import norm

SHAPES = {1: [(16, 5), (8, 5, 7)], 2: [(6, 5, 4, 3)]}
OURS = {1: norm.BatchNorm1d, 2: norm.BatchNorm2d}
TORCH = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}
CASES = [(d, s) for d in SHAPES for s in SHAPES[d]]


def _pair(dims, dtype, **kw):
    ours, ref = OURS[dims](5, dtype=dtype, **kw), TORCH[dims](5, dtype=dtype, **kw)
    if ref.affine:  # non-trivial gamma/beta so their gradients are tested too
        with torch.no_grad():
            g = torch.Generator().manual_seed(1)
            ref.weight.copy_(torch.rand(5, generator=g, dtype=dtype) + 0.5)
            ref.bias.copy_(torch.randn(5, generator=g, dtype=dtype))
    ours.load_state_dict(ref.state_dict())
    return ours, ref


@pytest.mark.parametrize("dims,shape", CASES)
# float64: agreement to 1e-10; float32: 1e-6 absolute, plus 1e-5 relative for sums over the
# batch, whose float32 rounding depends on the summation order (torch's kernel vs ours).
@pytest.mark.parametrize(
    "dtype,tol,rtol", [(torch.float64, 1e-10, 1e-10), (torch.float32, 1e-6, 1e-5)]
)
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("momentum", [0.1, 0.7, None])
@pytest.mark.parametrize("track", [True, False])
def test_matches_torch_over_many_steps(dims, shape, dtype, tol, rtol, affine, momentum, track):
    torch.manual_seed(0)
    ours, ref = _pair(dims, dtype, affine=affine, momentum=momentum, track_running_stats=track)
    for step in range(12):
        ours.train(step % 4 != 3)  # every 4th step in eval mode
        ref.train(step % 4 != 3)
        # shifted, scaled inputs, as a hidden layer's pre-activations would be
        x = (torch.randn(shape, dtype=dtype) * 3 + 2).requires_grad_()
        x2 = x.detach().clone().requires_grad_()
        dy = torch.randn(shape, dtype=dtype)
        y, y2 = ours(x), ref(x2)
        torch.testing.assert_close(y, y2, atol=tol, rtol=rtol)
        (y * dy).sum().backward()
        (y2 * dy).sum().backward()
        torch.testing.assert_close(x.grad, x2.grad, atol=tol, rtol=rtol)
        if affine:
            torch.testing.assert_close(ours.weight.grad, ref.weight.grad, atol=tol, rtol=rtol)
            torch.testing.assert_close(ours.bias.grad, ref.bias.grad, atol=tol, rtol=rtol)
            ours.zero_grad()
            ref.zero_grad()
        if track:
            torch.testing.assert_close(ours.running_mean, ref.running_mean, atol=tol, rtol=rtol)
            torch.testing.assert_close(ours.running_var, ref.running_var, atol=tol, rtol=rtol)
            assert int(ours.num_batches_tracked) == int(ref.num_batches_tracked)
    assert ours.state_dict().keys() == ref.state_dict().keys()


def test_running_variance_is_unbiased():
    bn = norm.BatchNorm1d(3, momentum=1.0)
    x = torch.randn(4, 3, dtype=torch.float64)
    bn.double()(x)
    torch.testing.assert_close(bn.running_var, x.var(0, unbiased=True))
    torch.testing.assert_close(bn.running_mean, x.mean(0))


def test_double_backward_matches_gradgradcheck():
    x = torch.randn(6, 3, 2, dtype=torch.float64, requires_grad=True)
    w = (torch.rand(3, dtype=torch.float64) + 0.5).requires_grad_()
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)

    def f(x, w, b):
        return norm.batch_norm(x, w, b)[0]

    assert torch.autograd.gradcheck(f, (x, w, b))
    assert torch.autograd.gradgradcheck(f, (x, w, b))


def test_plugs_into_models():
    from utils.core.models import MLP, ResNet

    mlp = MLP(8, [6], 3, norm=norm.BatchNorm1d)
    assert any(isinstance(m, norm.BatchNorm1d) for m in mlp.modules())
    net = ResNet(1, 3, widths=(4,), norm=norm.NoisyBatchNorm2d)
    assert net(torch.randn(2, 1, 6, 6)).shape == (2, 3)


@pytest.mark.parametrize(
    "cls,bad",
    [
        (norm.BatchNorm1d, (4,)),
        (norm.BatchNorm1d, (2, 3, 4, 5)),
        (norm.BatchNorm2d, (2, 3, 4)),
        (norm.NoisyBatchNorm2d, (2, 3)),
    ],
)
def test_bad_shape_raises_with_shape(cls, bad):
    with pytest.raises(ValueError, match=str(tuple(bad)).replace("(", r"\(").replace(")", r"\)")):
        cls(3)(torch.randn(bad))


@pytest.mark.parametrize(
    "cls,shape",
    [(norm.BatchNorm1d, (4, 5)), (norm.BatchNorm2d, (2, 5, 3, 3)), (norm.NoisyBatchNorm1d, (4, 5))],
)
def test_num_features_mismatch_raises(cls, shape):
    with pytest.raises(ValueError, match=r"num_features=3.*|5 features"):
        cls(3)(torch.randn(shape))


@pytest.mark.parametrize(
    "kw", [{"num_features": 0}, {"num_features": 2.5}, {"eps": 0}, {"momentum": 1.5}]
)
def test_bad_arguments(kw):
    args = {"num_features": 3, **kw}
    with pytest.raises(ValueError, match=next(iter(kw))):
        norm.BatchNorm1d(**args)


@pytest.mark.parametrize(
    "kw", [{"mean_range": -1}, {"scale_range": (0, 1)}, {"scale_range": (2, 1)}, {"jitter": -0.1}]
)
def test_noisy_bad_arguments(kw):
    with pytest.raises(ValueError, match=next(iter(kw))):
        norm.NoisyBatchNorm1d(3, **kw)


def test_single_value_per_channel_in_training_raises():
    with pytest.raises(ValueError, match="more than 1 value"):
        norm.BatchNorm1d(3)(torch.randn(1, 3))


def test_noisy_bn_shifts_every_step_and_is_plain_bn_in_eval():
    torch.manual_seed(0)
    noisy, plain = norm.NoisyBatchNorm1d(4), norm.BatchNorm1d(4)
    x = torch.randn(512, 4) * 2 + 1
    outs = [noisy(x) for _ in range(50)]
    means = torch.stack([o.mean(0) for o in outs])  # [steps, C]
    stds = torch.stack([o.std(0) for o in outs])
    # the per-channel mean moves across steps (non-zero mean, resampled), std is non-unit
    assert means.std(0).min() > 0.3
    assert stds.min() < 0.85 and stds.max() > 1.35
    assert stds.min() > 0.65 and stds.max() < 1.7  # within scale_range (0.75, 1.5) up to jitter
    # running statistics and eval mode are those of plain BN
    for _ in range(50):
        plain(x)
    torch.testing.assert_close(noisy.running_mean, plain.running_mean)
    noisy.eval()
    plain.eval()
    torch.testing.assert_close(noisy(x), plain(x))


def test_noisy_bn_generator_reproducible():
    x = torch.randn(8, 3)
    a = norm.NoisyBatchNorm1d(3, generator=torch.Generator().manual_seed(5))(x)
    b = norm.NoisyBatchNorm1d(3, generator=torch.Generator().manual_seed(5))(x)
    torch.testing.assert_close(a, b)
