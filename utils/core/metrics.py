"""Evaluation metrics: accuracy, calibration (ECE, reliability bins) and the bias-variance
decomposition of squared error estimated from repeated fits.
"""

from __future__ import annotations

import numpy as np
import torch


def _np(a, name: str) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    if not isinstance(a, (np.ndarray, list, tuple)):
        raise TypeError(f"{name} must be a tensor or array, got {type(a).__name__}")
    return np.asarray(a)


def accuracy(scores, y) -> float:
    """Fraction of correct predictions.

    Args:
        scores: [N, K] logits or probabilities (argmax is the prediction) or [N] predicted labels.
        y: [N] integer labels.

    Returns:
        float in [0, 1].

    Raises:
        ValueError: shapes that do not match or an empty batch.
    """
    s, t = _np(scores, "scores"), _np(y, "y")
    pred = s.argmax(axis=1) if s.ndim == 2 else s
    if pred.shape != t.shape or t.ndim != 1 or t.size == 0:
        raise ValueError(f"scores [N, K] or [N] and y [N] must match, got {s.shape} and {t.shape}")
    return float(np.mean(pred == t))


def reliability_bins(probs, y, n_bins: int = 15) -> dict[str, np.ndarray]:
    """Reliability-diagram bins (Guo et al. 2017, arXiv:1706.04599, section 2).

    The confidence of a prediction is its top class probability. Bin ``m`` holds the predictions
    with confidence in ``((m-1)/M, m/M]`` (equal-width bins; confidence 0 goes to the first bin).

    Args:
        probs: [N, K] class probabilities (rows sum to 1), tensor or array.
        y: [N] integer labels. n_bins: M >= 1.

    Returns:
        dict of numpy arrays of length M: ``lower``/``upper`` bin edges, ``count`` (int),
        ``confidence`` (mean confidence in the bin) and ``accuracy`` (NaN for empty bins).

    Raises:
        ValueError: probs not [N, K], probabilities outside [0, 1], labels shape, n_bins < 1.
    """
    p, t = _np(probs, "probs").astype(float), _np(y, "y")
    if p.ndim != 2 or t.shape != (p.shape[0],) or p.shape[0] == 0:
        raise ValueError(f"probs must be [N, K] and y [N], got {p.shape} and {t.shape}")
    if np.any(p < 0) or np.any(p > 1 + 1e-6):
        raise ValueError("probs must be probabilities in [0, 1] (apply softmax to logits first)")
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be an int >= 1, got {n_bins!r}")
    conf, correct = p.max(axis=1), (p.argmax(axis=1) == t).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # right-closed bins ((m-1)/M, m/M]: searchsorted(side="left") on the upper edges
    idx = np.clip(np.searchsorted(edges[1:], conf, side="left"), 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(idx, weights=conf, minlength=n_bins) / count
        acc = np.bincount(idx, weights=correct, minlength=n_bins) / count
    return {
        "lower": edges[:-1],
        "upper": edges[1:],
        "count": count,
        "confidence": mean_conf,
        "accuracy": acc,
    }


def expected_calibration_error(probs, y, n_bins: int = 15) -> float:
    """Expected calibration error (Guo et al. 2017, arXiv:1706.04599, eq. 3).

    ``ECE = sum_m |B_m| / N * |acc(B_m) - conf(B_m)|`` over the bins of
    :func:`reliability_bins`. 0 is perfect calibration; 15 bins is the paper's default.

    Returns:
        float in [0, 1]. Raises as :func:`reliability_bins`.
    """
    b = reliability_bins(probs, y, n_bins)
    full = b["count"] > 0
    gap = np.abs(b["accuracy"][full] - b["confidence"][full])
    return float(np.sum(b["count"][full] / b["count"].sum() * gap))


def bias_variance(
    preds, f_true, *, y_noisy=None, noise_var: float | None = None
) -> dict[str, float]:
    """Bias^2 / variance / noise decomposition of the expected squared error from repeated fits.

    With predictions ``f_r(x)`` of R models fitted on R independent training sets,
    ``fbar(x) = mean_r f_r(x)`` and ``y = f(x) + e`` with noise variance s^2:
    ``E[(y - f_r(x))^2] = (fbar - f)^2 + E[(f_r - fbar)^2] + s^2`` (bias^2 + variance + noise),
    averaged over the test inputs x. (Geman, Bienenstock & Doursat 1992; Hastie et al., ESL
    section 7.3.)

    Args:
        preds: [R, M] predictions of R fitted models at M test inputs (R >= 2).
        f_true: [M] noise-free target f(x) at the test inputs.
        y_noisy: optional [R, M] fresh noisy targets, one independent draw per model; then the
            noise term is estimated as mean((y - f)^2) and the measured ``mse`` is returned.
        noise_var: known noise variance s^2 (used when ``y_noisy`` is not given).

    Returns:
        dict with ``bias2``, ``variance``, ``noise``, ``total`` (their sum) and, with
        ``y_noisy``, ``mse`` = mean over r and x of (y - f_r(x))^2.

    Raises:
        ValueError: shapes that do not match, R < 2, or neither/both of y_noisy and noise_var.
    """
    p, f = _np(preds, "preds").astype(float), _np(f_true, "f_true").astype(float)
    if p.ndim != 2 or p.shape[0] < 2 or f.shape != (p.shape[1],):
        raise ValueError(f"preds must be [R>=2, M] and f_true [M], got {p.shape} and {f.shape}")
    if (y_noisy is None) == (noise_var is None):
        raise ValueError("give exactly one of y_noisy ([R, M] noisy targets) or noise_var")
    fbar = p.mean(axis=0)
    out = {"bias2": float(np.mean((fbar - f) ** 2)), "variance": float(np.mean(p.var(axis=0)))}
    if y_noisy is not None:
        yn = _np(y_noisy, "y_noisy").astype(float)
        if yn.shape != p.shape:
            raise ValueError(f"y_noisy must have the shape of preds {p.shape}, got {yn.shape}")
        out["noise"] = float(np.mean((yn - f) ** 2))
        out["mse"] = float(np.mean((yn - p) ** 2))
    else:
        if not noise_var >= 0:
            raise ValueError(f"noise_var must be >= 0, got {noise_var}")
        out["noise"] = float(noise_var)
    out["total"] = out["bias2"] + out["variance"] + out["noise"]
    return out
