"""Tests of utils.instruments.augment: shapes/dtypes, MixUp/CutMix label algebra, label smoothing
vs torch, and soft targets / batch transforms through train.fit (the one training loop)."""

import pytest
import torch
import torch.nn.functional as F

from utils.core import models, train
from utils.instruments import augment


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("max_shift", [0, 1, 3])
def test_random_shift_keeps_shape_dtype_and_moves_content(dtype, max_shift):
    x = torch.rand(16, 1, 28, 28, generator=gen(1), dtype=dtype)
    out = augment.random_shift(x, max_shift, gen(2))
    assert out.shape == x.shape and out.dtype == dtype
    # every output is a zero-filled translate of its input by at most max_shift pixels
    for i in range(4):
        found = False
        for dy in range(-max_shift, max_shift + 1):
            for dx in range(-max_shift, max_shift + 1):
                p = F.pad(x[i], (max_shift,) * 4)
                win = p[
                    :, max_shift - dy : max_shift - dy + 28, max_shift - dx : max_shift - dx + 28
                ]
                found |= torch.equal(win, out[i])
        assert found


def test_random_shift_is_seeded_and_batched_independently():
    x = torch.rand(64, 1, 28, 28, generator=gen(3))
    a, b = augment.random_shift(x, 2, gen(5)), augment.random_shift(x, 2, gen(5))
    assert torch.equal(a, b)
    assert not torch.equal(a, augment.random_shift(x, 2, gen(6)))


@pytest.mark.parametrize("bad", [-1, 28, 2.0])
def test_random_shift_rejects_bad_shift(bad):
    with pytest.raises((ValueError, TypeError), match="max_shift"):
        augment.random_shift(torch.zeros(2, 1, 28, 28), bad, gen())


def test_gaussian_noise_std_and_clip():
    x = torch.zeros(200, 1, 28, 28)
    out = augment.gaussian_noise(x, 0.5, gen())
    assert out.shape == x.shape and abs(float(out.std()) - 0.5) < 0.01
    assert float(augment.gaussian_noise(x, 0.5, gen(), clip=(0, 1)).min()) >= 0
    with pytest.raises(ValueError, match="std"):
        augment.gaussian_noise(x, -1.0, gen())


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_label_smoothing_matches_torch_cross_entropy(eps):
    logits = torch.randn(32, 10, generator=gen(1), dtype=torch.float64)
    y = torch.randint(0, 10, (32,), generator=gen(2))
    soft = augment.smooth_labels(y, 10, eps).double()
    assert torch.allclose(soft.sum(1), torch.ones(32, dtype=torch.float64))
    ours = augment.soft_cross_entropy(logits, soft)
    ref = F.cross_entropy(logits, y, label_smoothing=eps)
    assert torch.allclose(ours, ref, atol=1e-12)


def test_label_smoothing_rejects_bad_eps():
    with pytest.raises(ValueError, match="eps"):
        augment.smooth_labels(torch.tensor([0, 1]), 10, 1.5)


@pytest.mark.parametrize("fn", [augment.mixup, augment.cutmix])
@pytest.mark.parametrize("alpha", [0.2, 1.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mix_keeps_shapes_dtypes_and_label_sums(fn, alpha, dtype):
    x = torch.rand(16, 1, 28, 28, generator=gen(1), dtype=dtype)
    y = augment.one_hot(torch.randint(0, 10, (16,), generator=gen(2)), 10, dtype)
    xm, ym, lam = fn(x, y, alpha, gen(3))
    assert xm.shape == x.shape and xm.dtype == dtype and ym.shape == y.shape and ym.dtype == dtype
    assert 0.0 <= lam <= 1.0
    assert torch.allclose(ym.sum(1), torch.ones(16, dtype=dtype))


def test_mixup_is_the_convex_combination():
    x = torch.arange(8.0).view(8, 1, 1, 1).expand(8, 1, 4, 4).clone()
    y = augment.one_hot(torch.arange(8) % 4, 4)
    xm, ym, lam = augment.mixup(x, y, 0.4, gen(7))
    # recover the partner index from the mixed constant value of each image
    partner = ((xm[:, 0, 0, 0] - lam * torch.arange(8.0)) / (1 - lam)).round().long()
    assert torch.allclose(ym, lam * y + (1 - lam) * y[partner], atol=1e-6)


@pytest.mark.parametrize("seed", range(6))
def test_cutmix_label_weight_equals_pasted_area(seed):
    n, h, w = 8, 28, 28
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, h, w).clone()
    y = augment.one_hot(torch.arange(n), n)
    xm, ym, lam = augment.cutmix(x, y, 1.0, gen(seed))
    own = (xm == x).sum(dim=(1, 2, 3))  # pixels of each image left untouched (exact count)
    assert lam * h * w == pytest.approx(round(lam * h * w), abs=1e-9)  # lam is a pixel fraction
    assert 0 <= lam < 1  # these seeds paste a box of non-zero area
    pasted = own < h * w  # images whose partner is another image
    assert pasted.sum() >= n // 2  # a random permutation of 8 leaves most images a partner
    for i in torch.nonzero(pasted).flatten().tolist():  # the pasted area is exactly (1 - lam) H W
        assert int(own[i]) == round(lam * h * w)
        assert float(ym[i, i]) == pytest.approx(lam, abs=1e-6)


@pytest.mark.parametrize("fn", [augment.mixup, augment.cutmix])
@pytest.mark.parametrize("alpha", [0.0, -1.0, float("nan"), float("inf")])
def test_invalid_alpha_raises(fn, alpha):
    x, y = torch.zeros(4, 1, 8, 8), augment.one_hot(torch.arange(4), 4)
    with pytest.raises(ValueError, match="alpha"):
        fn(x, y, alpha, gen())


@pytest.mark.parametrize("fn", [augment.mixup, augment.cutmix])
def test_mix_rejects_wrong_types(fn):
    x, y = torch.zeros(4, 1, 8, 8), augment.one_hot(torch.arange(4), 4)
    with pytest.raises(TypeError, match="alpha"):
        fn(x, y, "1", gen())
    with pytest.raises(TypeError, match="generator"):
        fn(x, y, 1.0, 0)
    with pytest.raises(ValueError, match="y must"):
        fn(x, torch.arange(4), 1.0, gen())


def _toy(seed=0):
    g = gen(seed)
    x = torch.randn(64, 1, 4, 4, generator=g)
    y = (x.flatten(1)[:, 0] > 0).long()
    return x, y


def _fit(x, y, **kw):
    torch.manual_seed(0)
    net = models.MLP(16, [16], 2)
    hist = train.fit(
        net,
        x,
        y,
        optimizer=torch.optim.Adam(net.parameters(), 0.05),
        epochs=20,
        batch_size=16,
        epoch_evals=False,
        progress=False,
        **kw,
    )
    return net, hist


def test_soft_one_hot_targets_through_fit_equal_hard_labels():
    """soft_cross_entropy on one-hot targets is F.cross_entropy: train.fit gives the same run."""
    x, y = _toy()
    _, hard = _fit(x, y)
    _, soft = _fit(x, augment.one_hot(y, 2), loss_fn=augment.soft_cross_entropy)
    assert torch.allclose(
        torch.tensor(hard["step_loss"]), torch.tensor(soft["step_loss"]), atol=1e-6
    )
    assert hard["step_loss"][-1] < 0.5 * hard["step_loss"][0]


@pytest.mark.parametrize("mix", [augment.mixup, augment.cutmix])
def test_mixing_transform_through_fit_trains_on_mixed_batches(mix):
    x, y = _toy(1)
    seen = []

    def transform(xb, tb, g):
        out = mix(xb, tb, 1.0, g)
        seen.append(out[1])
        return out

    net, hist = _fit(
        x, augment.one_hot(y, 2), loss_fn=augment.soft_cross_entropy, transform=transform
    )
    assert len(seen) == len(hist["step_loss"]) == 20 * 4  # every batch of every epoch was mixed
    assert any(((t > 0) & (t < 1)).any() for t in seen)  # soft (mixed) targets reached the loss
    assert train.evaluate(net, x, y)["acc"] > 0.8
