"""Data sets and toy problems of notebook 02 (regularization and model selection).

* :func:`sine_data`: noisy samples of sin(2 pi x) on [0, 1], the regression toy of R1-R3.
* :func:`legendre_features`: the design matrix of a polynomial of a given degree (R1, R2); the
  notebook fits it by least squares.
* :func:`digits_task`: a seeded, standardised train/validation split of scikit-learn's 8x8
  digits plus the fixed test set, the task that R10's searches tune.
* :data:`SPACE` and :data:`DEFAULT`: R10's search space (learning rate, L2 coefficient, hidden
  width) and the starting point of a person's search.

No training procedure lives here: the fold loop, the stopping rule, the probes and the searches
are written in the notebook.
"""

from __future__ import annotations

import numpy as np
import torch

# R10: (low, high) of each knob. lr and wd are searched on a log scale, width on a log2 scale.
SPACE = {"lr": (1e-3, 1.0), "wd": (1e-6, 1e-1), "width": (8, 128)}
# R10: where a person starts (a common first guess for SGD with momentum on a small MLP).
DEFAULT = {"lr": 0.01, "wd": 1e-4, "width": 32}


def sine_data(
    n: int, noise: float, rng: np.random.Generator, *, reps: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Noisy sine: ``x ~ U(0, 1)``, ``y = sin(2 pi x) + N(0, noise^2)``.

    Args:
        n: points per training set, int >= 1.
        noise: standard deviation of the additive Gaussian noise (y units), >= 0.
        rng: ``numpy.random.Generator`` that draws x and the noise.
        reps: optional number of independent training sets drawn at once.

    Returns:
        ``(x, y)``: float64 arrays of shape [n], or [reps, n] when ``reps`` is given.

    Raises:
        TypeError: ``rng`` not a numpy Generator.
        ValueError: ``n < 1``, ``noise < 0`` or ``reps < 1``.

    Source: the running example of Bishop, *Pattern Recognition and Machine Learning* (2006),
    Section 1.1.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0, got {noise!r}")
    if reps is not None and (isinstance(reps, bool) or not isinstance(reps, int) or reps < 1):
        raise ValueError(f"reps must be None or an int >= 1, got {reps!r}")
    shape = (n,) if reps is None else (reps, n)
    x = rng.uniform(0.0, 1.0, shape)
    return x, np.sin(2 * np.pi * x) + noise * rng.standard_normal(shape)


def legendre_features(x, degree: int) -> torch.Tensor:
    """Polynomial design matrix: Legendre polynomials ``P_0 .. P_degree`` of ``2x - 1``.

    On [0, 1] these columns are far better conditioned than ``1, x, x^2, ...``, so a least-squares
    fit of degree 10 on 30 points stays accurate in float64. Any polynomial of degree <= ``degree``
    is a linear combination of them.

    Args:
        x: inputs in [0, 1], array-like of shape [..., n] (numpy or torch).
        degree: int >= 0.

    Returns:
        float64 tensor [..., n, degree + 1].

    Raises:
        ValueError: ``degree`` not an int >= 0.

    Source: Bonnet's recursion ``(k + 1) P_{k+1} = (2k + 1) z P_k - k P_{k-1}``; equal to
    ``numpy.polynomial.legendre.legvander(2 * x - 1, degree)``.
    """
    if isinstance(degree, bool) or not isinstance(degree, int) or degree < 0:
        raise ValueError(f"degree must be an int >= 0, got {degree!r}")
    z = 2 * torch.as_tensor(x, dtype=torch.float64) - 1
    cols = [torch.ones_like(z), z]
    for k in range(1, degree):
        cols.append(((2 * k + 1) * z * cols[k] - k * cols[k - 1]) / (k + 1))
    return torch.stack(cols[: degree + 1], dim=-1)


def digits_task(seed: int, val_fraction: float = 0.3) -> dict[str, torch.Tensor]:
    """R10's task: 8x8 digits split into train / validation (stratified, seeded) and the fixed
    test set, standardised with the training part's per-pixel mean and std.

    Args:
        seed: seed of the train/validation split (one per search seed).
        val_fraction: fraction of the 1,400 training images held out for validation, in (0, 1).

    Returns:
        dict of float32 ``x_train``, ``x_val``, ``x_test`` [n, 64] and int64 ``y_*`` [n]
        (980 / 420 / 397 images with the default fraction).

    Raises:
        ValueError: ``val_fraction`` outside (0, 1).
    """
    from ..core import data

    d = data.digits(scale="unit")
    xtr, ytr, xva, yva = data.train_val_split(d.x_train, d.y_train, val_fraction, seed=seed)
    mu, sd = xtr.mean(0), xtr.std(0, correction=0) + 1e-3
    return {
        "x_train": (xtr - mu) / sd,
        "y_train": ytr,
        "x_val": (xva - mu) / sd,
        "y_val": yva,
        "x_test": (d.x_test - mu) / sd,
        "y_test": d.y_test,
    }


def sine_test_mse(predict, noise: float, *, nodes: int = 40) -> torch.Tensor:
    """Expected squared error of a predictor on fresh :func:`sine_data`: an infinite test set.

    ``E[(y - f(x))^2] = noise^2 + integral over [0, 1] of (sin(2 pi x) - f(x))^2 dx`` for
    ``x ~ U(0, 1)`` and noise independent of the predictor ``f``. The integral is computed by
    Gauss-Legendre quadrature with ``nodes`` points, which is exact for a polynomial ``f`` of
    degree < ``nodes`` up to the (float64-rounding-level) error on the sine part.

    Args:
        predict: callable mapping the quadrature points, a float64 tensor [nodes] in (0, 1), to
            predictions [..., nodes] (a batch of fitted models is fine).
        noise: standard deviation of the label noise (as in :func:`sine_data`), >= 0.
        nodes: number of quadrature points, int >= 2.

    Returns:
        float64 tensor [...]: one expected test MSE per model (y units squared).

    Raises:
        ValueError: ``noise < 0``, ``nodes < 2``, or predictions whose last axis is not ``nodes``.

    Source: ``numpy.polynomial.legendre.leggauss`` (nodes and weights on [-1, 1], mapped to
    [0, 1]).
    """
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0, got {noise!r}")
    if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 2:
        raise ValueError(f"nodes must be an int >= 2, got {nodes!r}")
    t, w = np.polynomial.legendre.leggauss(nodes)
    x, w = torch.tensor((t + 1) / 2), torch.tensor(w / 2)
    pred = torch.as_tensor(predict(x), dtype=torch.float64)
    if pred.shape[-1:] != (nodes,):
        raise ValueError(f"predict must return [..., {nodes}] values, got {tuple(pred.shape)}")
    return noise**2 + ((torch.sin(2 * np.pi * x) - pred) ** 2 * w).sum(-1)
