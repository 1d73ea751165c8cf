"""Data sets and toy problems of the optimization notebook (01).

* :class:`Point`: a "model" that is a point ``w`` in R^d, so that a toy function can be
  minimised by ``train.fit`` or the stacked trainer like any network;
* :func:`quadratic` with :func:`rotated_hessian`, and :func:`rosenbrock`: 2-D test functions;
* :func:`sparse_regression`: frequent and rare features (Adagrad's setting);
* :func:`wilson_data`: Wilson et al.'s least-squares construction;
* :class:`SplitGuard`: who may read the train/validation/test sets, enforced.

What the notebook measures on them (steps to a target, usable learning-rate bands, stopping
rules) is written in the notebook itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


class Point(nn.Module):
    """A "model" that is just a point ``w`` in R^d; ``forward(x)`` ignores x and returns w.

    With ``loss_fn(w, target) = f(w)`` a toy function becomes an ordinary training problem:
    ``train.fit`` (one dummy example) or :class:`utils.instruments.stacked.StackedTrainer` (many
    points, optimizers and learning rates at once) minimise it.

    Args:
        start: the initial point, d >= 1 numbers (stored as float64 parameter ``w`` [d]).

    Raises:
        ValueError: an empty ``start``.
    """

    def __init__(self, start: Sequence[float]):
        super().__init__()
        if len(start) < 1:
            raise ValueError("start must hold at least one coordinate")
        self.w = nn.Parameter(torch.tensor([float(s) for s in start], dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w


def quadratic(w: torch.Tensor, hessian: torch.Tensor) -> torch.Tensor:
    """The quadratic bowl ``f(w) = 0.5 w^T H w`` (minimum 0 at w = 0, Hessian H).

    Args:
        w: points [..., d] (one point [d], or a grid [n, n, 2] for a contour plot).
        hessian: symmetric H [d, d], same dtype as w (e.g. :func:`rotated_hessian`).

    Returns:
        tensor [...] of function values.

    Raises:
        ValueError: H not square or not matching w's last dimension.
    """
    d = w.shape[-1]
    if hessian.shape != (d, d):
        raise ValueError(
            f"hessian must be [d, d] with d = w.shape[-1] = {d}, got {tuple(hessian.shape)}"
        )
    return 0.5 * ((w @ hessian) * w).sum(-1)  # H symmetric: (w H) . w = w^T H w


def rotated_hessian(curvatures: Sequence[float], angle: float) -> torch.Tensor:
    """``R diag(curvatures) R^T`` for a 2-D rotation R by ``angle`` radians (float64 [2, 2]).

    ``angle = 0`` gives the axis-aligned ``diag(curvatures)``; the eigenvalues are the
    curvatures whatever the angle (condition number max/min).

    Raises:
        ValueError: not exactly two curvatures.
    """
    if len(curvatures) != 2:
        raise ValueError(f"curvatures must have 2 entries, got {len(curvatures)}")
    c, s = math.cos(angle), math.sin(angle)
    r = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    return r @ torch.diag(torch.tensor([float(v) for v in curvatures], dtype=torch.float64)) @ r.T


def rosenbrock(xy: torch.Tensor, a: float = 1.0, b: float = 100.0) -> torch.Tensor:
    """Rosenbrock's banana ``f(x, y) = (a - x)^2 + b (y - x^2)^2``, minimum 0 at (a, a^2).

    Args:
        xy: [..., 2] points.

    Returns:
        tensor [...] of function values.

    Raises:
        ValueError: last dimension not 2.

    Source: Rosenbrock 1960.
    """
    if xy.shape[-1] != 2:
        raise ValueError(f"xy must have last dimension 2, got shape {tuple(xy.shape)}")
    return (a - xy[..., 0]) ** 2 + b * (xy[..., 1] - xy[..., 0] ** 2) ** 2


def sparse_regression(
    n: int = 400,
    d_frequent: int = 5,
    d_rare: int = 5,
    p_rare: float = 0.05,
    *,
    seed: int = 0,
    noise: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Linear regression with frequent (always non-zero) and rare (non-zero with probability
    ``p_rare``) features, the setting Adagrad was designed for (Duchi et al. 2011, JMLR).

    Returns:
        (x [n, d_frequent + d_rare] float32, y [n] float32, w_true [d] float32), frequent
        features first; ``y = x w_true + noise * N(0, 1)``.

    Raises:
        ValueError: ``p_rare`` outside (0, 1].
    """
    if not 0 < p_rare <= 1:
        raise ValueError(f"p_rare must be in (0, 1], got {p_rare}")
    g = torch.Generator().manual_seed(int(seed))
    xf = torch.randn(n, d_frequent, generator=g)
    mask = torch.rand(n, d_rare, generator=g) < p_rare
    xr = torch.randn(n, d_rare, generator=g) * mask
    x = torch.cat([xf, xr], dim=1)
    w = torch.randn(d_frequent + d_rare, generator=g)
    y = x @ w + noise * torch.randn(n, generator=g)
    return x, y, w


def wilson_data(
    n: int, *, p_positive: float = 0.6, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Wilson et al. 2017 (arXiv:1705.08292, Sec. 3.3) binary least-squares construction.

    Point i has label y_i = +1 with probability ``p_positive`` else -1; features x_i1 = y_i,
    x_i2 = x_i3 = 1, and a block of features unique to point i: 1 feature if y_i = +1, 5 if
    y_i = -1 (columns 4 + 5(i-1) ...). New test points have unique features that no training
    point shares, so a model can only use columns 1-3 on them.

    Returns:
        (x float64 [n, 3 + 5n], y float64 [n] in {-1, +1}).

    Raises:
        ValueError: ``p_positive`` outside (0, 1).
    """
    if not 0 < p_positive < 1:
        raise ValueError(f"p_positive must be in (0, 1), got {p_positive}")
    g = torch.Generator().manual_seed(int(seed))
    y = torch.where(torch.rand(n, generator=g) < p_positive, 1.0, -1.0).double()
    x = torch.zeros(n, 3 + 5 * n, dtype=torch.float64)
    x[:, 0] = y
    x[:, 1:3] = 1.0
    for i in range(n):
        k = 1 if y[i] > 0 else 5
        x[i, 3 + 5 * i : 3 + 5 * i + k] = 1.0
    return x, y


class SplitGuard:
    """The train/validation/test discipline, enforced on the data access itself.

    * train: may be fitted on, any number of times;
    * validation: may choose hyperparameters / the early-stopping step, as long as no test
      score has been read;
    * test: read exactly once, after :meth:`select` froze the choice.

    Args:
        train, val, test: the three sets (any objects, e.g. ``(x, y)`` pairs); returned as given.

    Raises ``RuntimeError`` on a violation (reading test before ``select``, reading test
    twice, reading validation after the test, selecting twice).
    """

    RULES = {
        "train": "fit weights (any number of times)",
        "validation": "choose hyperparameters, early stopping, model selection",
        "test": "one final estimate, after the choice is frozen; never feeds back",
    }

    def __init__(self, train, val, test):
        self._train, self._val, self._test = train, val, test
        self.choice: dict | None = None
        self.test_reads = 0

    def train(self):
        """The training set."""
        return self._train

    def val(self):
        """The validation set; refused once the test set has been read."""
        if self.test_reads:
            raise RuntimeError(
                "validation is closed: the test set was already read, any "
                "further selection would leak test information"
            )
        return self._val

    def select(self, **choice) -> None:
        """Freeze the hyperparameters chosen on validation (may be called once)."""
        if self.choice is not None:
            raise RuntimeError(f"selection already frozen: {self.choice}")
        self.choice = dict(choice)

    def test(self):
        """The test set: only after :meth:`select`, and only once."""
        if self.choice is None:
            raise RuntimeError("test set requested before select(): choose on validation first")
        if self.test_reads:
            raise RuntimeError(
                "the test set may be read once; reading it again to compare "
                "choices turns it into a validation set"
            )
        self.test_reads += 1
        return self._test
