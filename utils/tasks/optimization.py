"""Toy problems and measurements for the optimization notebook (01): points on 2-D
quadratics as stackable "models", steps to a target, usable learning-rate bands, sign flips,
sparse-feature regression, Wilson et al.'s least-squares construction, label noise, and a
guard that enforces what the train/validation/test sets may influence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn


class Point(nn.Module):
    """A "model" that is just a point ``w`` in R^d; ``forward(x)`` ignores x and returns w.

    Used with :class:`utils.sweep.StackedTrainer` and a loss ``loss_fn(w, H) = f(w)`` to run many
    optimizers/learning rates/start points on a toy function at once.
    """

    def __init__(self, start: Sequence[float]):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([float(s) for s in start], dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w


def quadratic_loss(w: torch.Tensor, hessian: torch.Tensor) -> torch.Tensor:
    """``f(w) = 0.5 w^T H w`` for a point w [d] and a symmetric Hessian H [d, d]."""
    return 0.5 * w @ hessian @ w


def rotated_hessian(curvatures: Sequence[float], angle: float) -> torch.Tensor:
    """``R diag(curvatures) R^T`` for a 2-D rotation by ``angle`` radians (float64 [2, 2])."""
    if len(curvatures) != 2:
        raise ValueError(f"curvatures must have 2 entries, got {len(curvatures)}")
    c, s = math.cos(angle), math.sin(angle)
    r = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    return r @ torch.diag(torch.tensor([float(v) for v in curvatures], dtype=torch.float64)) @ r.T


def steps_to_target(curves: np.ndarray, target: float) -> np.ndarray:
    """First step at which each curve is <= target.

    Args:
        curves: array [T, ...] of losses per step (step 0 first).
        target: threshold in loss units.

    Returns:
        float array [...]: the step index, or ``inf`` where the target is never reached.
    """
    curves = np.asarray(curves, dtype=float)
    hit = np.nan_to_num(curves, nan=np.inf) <= target
    first = hit.argmax(axis=0).astype(float)
    first[~hit.any(axis=0)] = np.inf
    return first


def usable_band_decades(
    lrs: Sequence[float], final_loss: np.ndarray, threshold: float
) -> np.ndarray:
    """Width, in decades of learning rate, of the usable band of a log-spaced lr grid.

    A grid point is usable when its final loss is <= threshold (NaN counts as unusable). The
    width is (number of grid points in the longest contiguous usable run) x (grid spacing in
    decades): each grid point stands for one cell of the log grid.

    Args:
        lrs: increasing, log-spaced learning rates [G].
        final_loss: array [..., G] of final losses.
        threshold: the loss a usable run must reach.

    Returns:
        float array [...] of widths in decades.
    """
    lrs = np.asarray(lrs, dtype=float)
    if lrs.ndim != 1 or len(lrs) < 2 or np.any(np.diff(lrs) <= 0):
        raise ValueError("lrs must be an increasing 1-D grid with >= 2 points")
    spacing = float(np.mean(np.diff(np.log10(lrs))))
    ok = np.nan_to_num(np.asarray(final_loss, dtype=float), nan=np.inf) <= threshold
    flat = ok.reshape(-1, ok.shape[-1])
    widths = []
    for row in flat:
        best = run = 0
        for v in row:
            run = run + 1 if v else 0
            best = max(best, run)
        widths.append(best * spacing)
    return np.asarray(widths).reshape(ok.shape[:-1])


def sign_flips(values: Sequence[float], *, tol: float = 0.0) -> int:
    """Number of sign changes in a sequence, ignoring entries with ``|v| <= tol``."""
    v = np.asarray(values, dtype=float)
    v = v[np.abs(v) > tol]
    return int(np.sum(np.sign(v[1:]) != np.sign(v[:-1])))


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
    ``p_rare``) features, the setting Adagrad was designed for (Duchi et al. 2011).

    Returns:
        (x [n, d_frequent + d_rare] float32, y [n] float32, w_true [d] float32), frequent
        features first.
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
    y_i = -1 (columns 4 + 5(i-1) ...). Returns (x float64 [n, 3 + 5n], y float64 [n]).
    New test points have unique features that no training point shares, so a model can only
    use columns 1-3 on them.
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


def noisy_labels(
    y: torch.Tensor, fraction: float, n_classes: int, *, seed: int = 0
) -> torch.Tensor:
    """Replace a ``fraction`` of labels by a different, uniformly drawn class (int64 [N])."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    g = torch.Generator().manual_seed(int(seed))
    flip = torch.rand(len(y), generator=g) < fraction
    shift = torch.randint(1, n_classes, (len(y),), generator=g)
    return torch.where(flip, (y + shift) % n_classes, y)


class SplitGuard:
    """The train/validation/test discipline, enforced.

    * train: may be fitted on, any number of times;
    * validation: may choose hyperparameters / the early-stopping step, as long as no test
      score has been read;
    * test: read exactly once, after :meth:`select` froze the choice.

    Raises ``RuntimeError`` on a violation (reading test before ``select``, reading test
    twice, reading validation after the test).
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
        """(x, y) of the training set."""
        return self._train

    def val(self):
        """(x, y) of the validation set; refused once the test set has been read."""
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
        """(x, y) of the test set: only after :meth:`select`, and only once."""
        if self.choice is None:
            raise RuntimeError("test set requested before select(): choose on validation first")
        if self.test_reads:
            raise RuntimeError(
                "the test set may be read once; reading it again to compare "
                "choices turns it into a validation set"
            )
        self.test_reads += 1
        return self._test


def per_example_grads(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn=None
) -> torch.Tensor:
    """Gradient of the loss of every example w.r.t. all parameters, flattened: [N, P].

    Source: ``torch.func.vmap(torch.func.grad(...))`` over examples (torch.func tutorial
    "per-sample gradients").
    """
    import torch.nn.functional as F
    from torch.func import functional_call, grad, vmap

    loss_fn = loss_fn or F.cross_entropy
    params = {k: v.detach() for k, v in model.named_parameters()}

    def one(p, xi, yi):
        return loss_fn(functional_call(model, p, (xi[None],)), yi[None])

    g = vmap(grad(one), in_dims=(None, 0, 0))(params, x, y)
    return torch.cat([v.flatten(1) for v in g.values()], dim=1)


def minibatch_gradient_variance(
    per_example: torch.Tensor, sizes: Sequence[int], *, n_draws: int = 200, seed: int = 0
) -> np.ndarray:
    """``E ||g_B - g||^2`` of mini-batch gradients (batches drawn without replacement) around
    the full-batch gradient g, for each batch size B; theory: ``tr(Sigma)/B * (N-B)/(N-1)``.

    Args:
        per_example: [N, P] per-example gradients. sizes: batch sizes in 1..N.

    Returns:
        float array [len(sizes)].
    """
    n = per_example.shape[0]
    if any(not 1 <= b <= n for b in sizes):
        raise ValueError(f"sizes must be in [1, {n}], got {list(sizes)}")
    g = torch.Generator().manual_seed(int(seed))
    full = per_example.mean(0)
    out = []
    for b in sizes:
        idx = torch.stack([torch.randperm(n, generator=g)[:b] for _ in range(n_draws)])
        gb = per_example[idx.to(per_example.device)].mean(1)
        out.append(float(((gb - full) ** 2).sum(1).mean()))
    return np.asarray(out)


def train_until(
    trainer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int,
    seeds: Sequence[int],
    target: float,
    check_every: int = 5,
    max_steps: int = 5000,
) -> np.ndarray:
    """Train stacked models (:class:`utils.sweep.StackedTrainer`) until each model's full
    training loss is <= target, then freeze that model (its lr is set to 0; use with plain
    SGD, where lr 0 means no change). The loss is checked every ``check_every`` steps.

    Returns:
        float array [M]: the step at which each model reached the target (inf if never).
    """
    from ..instruments import stacked as sweep

    lr = trainer.lr.clone()
    m = trainer.n_models
    reached = torch.full((m,), float("inf"))
    batches = sweep.batch_indices(x.shape[0], batch_size, seeds, 10**9)
    for step in range(1, max_steps + 1):
        idx = next(batches).to(x.device)
        trainer.step(x[idx], y[idx], per_model=True)
        if step % check_every == 0:
            done = (trainer.loss(x, y).cpu() <= target) & torch.isinf(reached)
            reached[done] = step
            trainer.lr = torch.where(torch.isinf(reached).to(lr.device), lr, torch.zeros_like(lr))
            if not torch.isinf(reached).any():
                break
    return reached.numpy()
