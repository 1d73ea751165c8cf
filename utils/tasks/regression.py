"""Toy regression for model selection and the bias-variance trade-off: noisy sin(2 pi x),
polynomial ridge fits batched over many training sets, and k-fold model selection.

Polynomials use Legendre features of ``2x - 1`` (well conditioned on [0, 1]); fits solve the
ridge normal equations with ``torch.linalg.solve``, batched over training sets.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.model_selection import KFold


def sine_data(
    n: int, noise: float, rng: np.random.Generator, *, reps: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """x ~ U(0, 1), y = sin(2 pi x) + N(0, noise^2).

    Returns:
        (x, y) float64 arrays of shape [n] (or [reps, n] when ``reps`` is given).
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError("rng must be a numpy.random.Generator")
    if n < 1 or noise < 0:
        raise ValueError(f"n must be >= 1 and noise >= 0, got n={n}, noise={noise}")
    shape = (n,) if reps is None else (reps, n)
    x = rng.uniform(0.0, 1.0, shape)
    return x, np.sin(2 * np.pi * x) + noise * rng.standard_normal(shape)


def features(x, degree: int) -> torch.Tensor:
    """Legendre features P_0..P_degree of 2x - 1: [..., n] -> [..., n, degree + 1] float64."""
    if isinstance(degree, bool) or not isinstance(degree, int) or degree < 0:
        raise ValueError(f"degree must be an int >= 0, got {degree!r}")
    z = 2 * torch.as_tensor(x, dtype=torch.float64) - 1
    cols = [torch.ones_like(z), z]
    for k in range(1, degree):  # Bonnet's recursion
        cols.append(((2 * k + 1) * z * cols[k] - k * cols[k - 1]) / (k + 1))
    return torch.stack(cols[: degree + 1], dim=-1)


def poly_fit(x, y, degree: int, ridge: float = 1e-8) -> torch.Tensor:
    """Least-squares (ridge) polynomial fit; batched over leading dims.

    Args:
        x, y: [..., n] inputs in [0, 1] and targets. degree: >= 0. ridge: >= 0 (a tiny default
            keeps the solve stable when n <= degree).

    Returns:
        coefficients [..., degree + 1] float64 (use :func:`poly_predict`).
    """
    phi = features(x, degree)
    yt = torch.as_tensor(y, dtype=torch.float64)
    a = phi.transpose(-1, -2) @ phi + ridge * torch.eye(degree + 1, dtype=torch.float64)
    return torch.linalg.solve(a, (phi.transpose(-1, -2) @ yt.unsqueeze(-1))).squeeze(-1)


def poly_predict(coef: torch.Tensor, x) -> torch.Tensor:
    """Evaluate fitted polynomials: coef [..., d+1], x [..., m] (broadcast) -> [..., m]."""
    return (features(x, coef.shape[-1] - 1) @ coef.unsqueeze(-1)).squeeze(-1)


def kfold_select(
    x: np.ndarray,
    y: np.ndarray,
    degrees,
    *,
    k: int = 5,
    seed: int = 0,
    ridge: float = 1e-8,
    x_test: np.ndarray,
    y_test: np.ndarray,
) -> dict[str, float]:
    """Choose a polynomial degree by k-fold CV and compare two ways of using the winner.

    For each candidate degree, ``sklearn.model_selection.KFold`` trains on the k-1 other folds
    and scores (MSE) on the held-out fold; the winner has the lowest mean CV MSE. Then
    ``refit``: the winner retrained on all training data; ``best_fold``: the winner's single
    fold model with the lowest validation MSE. Both are scored on the untouched test set.

    Returns:
        dict: ``degree`` (winner), ``cv_mse`` (winner's mean CV score), ``test_refit``,
        ``test_best_fold``, ``test_folds`` (mean test MSE of the winner's k fold models, the
        models its CV score actually measured), ``train_frac`` (fraction of the data each fold
        model trains on), and per candidate ``cv_all`` / ``test_folds_all`` (numpy arrays).
    """
    degrees = list(degrees)
    kf = KFold(n_splits=k, shuffle=True, random_state=seed)
    folds = list(kf.split(x))
    tr = np.stack([f[0] for f in folds])  # [k, n - n/k]: every fold model trains on k-1 folds
    va = np.stack([f[1] for f in folds])
    if tr.shape[1] + va.shape[1] != len(x):
        raise ValueError(f"use n divisible by k for equal folds, got n={len(x)}, k={k}")

    def test_mse(c):  # c [..., d+1] -> [...]
        return ((poly_predict(c, x_test) - torch.as_tensor(y_test)) ** 2).mean(-1)

    cv, fold_errs, fold_test, coefs = [], [], [], []
    for d in degrees:
        c = poly_fit(x[tr], y[tr], d, ridge)  # [k, d+1], the k fold models in one batched solve
        e = (
            (poly_predict(c.unsqueeze(-2), x[va][:, None, :]).squeeze(-2) - torch.as_tensor(y[va]))
            ** 2
        ).mean(-1)
        cv.append(float(e.mean()))
        fold_errs.append(e)
        fold_test.append(float(test_mse(c).mean()))
        coefs.append(c)
    w = int(np.argmin(cv))
    refit = poly_fit(x, y, degrees[w], ridge)
    best = coefs[w][int(torch.argmin(fold_errs[w]))]
    return {
        "degree": degrees[w],
        "cv_mse": cv[w],
        "test_refit": float(test_mse(refit)),
        "test_best_fold": float(test_mse(best)),
        "test_folds": fold_test[w],
        "train_frac": tr.shape[1] / len(x),
        "cv_all": np.array(cv),
        "test_folds_all": np.array(fold_test),
    }
