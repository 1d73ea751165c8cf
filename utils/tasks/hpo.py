"""Hyperparameter search strategies on one tiny task, at an equal trial budget.

The task: a one-hidden-layer MLP (64 -> width -> 10, ReLU) on scikit-learn's 8x8 digits,
trained with mini-batch SGD + momentum 0.9 and an L2 penalty, written in numpy so a trial
costs milliseconds and a Ray worker imports nothing heavy. Three knobs: learning rate ``lr``,
L2 coefficient ``wd`` and hidden ``width``. The searches:

* :func:`person_search`: a person-style, coarse-to-fine search, one knob at a time (lr first,
  the knob a practitioner knows matters most), then a finer lr grid around the best.
* :func:`random_search`: configurations drawn at random from :data:`SPACE`
  (Bergstra & Bengio 2012, JMLR 13).
* Ray Tune with ASHA: see :func:`ray_trainable` and :func:`ray_space`, run through
  :mod:`utils.tune`.
"""

from __future__ import annotations

import math

import numpy as np

# (low, high) of each knob; lr and wd are searched on a log scale, width on a log2 scale.
SPACE = {"lr": (1e-3, 1.0), "wd": (1e-6, 1e-1), "width": (8, 128)}
DEFAULT = {"lr": 0.01, "wd": 1e-4, "width": 32}


def digits_task(seed: int, val_fraction: float = 0.3) -> dict[str, np.ndarray]:
    """Digits split into train/val (stratified, ``seed``) and the fixed test set, standardised.

    Returns:
        dict of float32 ``x_train, x_val, x_test`` [n, 64] and int64 ``y_*`` [n].
    """
    from sklearn.model_selection import train_test_split

    from ..core import data

    d = data.digits(scale="unit")
    xtr, ytr = d.x_train.numpy(), d.y_train.numpy()
    xtr, xva, ytr, yva = train_test_split(
        xtr, ytr, test_size=val_fraction, stratify=ytr, random_state=seed
    )
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-3
    return {
        "x_train": (xtr - mu) / sd,
        "y_train": ytr,
        "x_val": (xva - mu) / sd,
        "y_val": yva,
        "x_test": (d.x_test.numpy() - mu) / sd,
        "y_test": d.y_test.numpy(),
    }


def _check_config(config: dict) -> tuple[float, float, int]:
    lr, wd, width = float(config["lr"]), float(config["wd"]), int(round(config["width"]))
    if not (lr > 0 and wd >= 0 and width >= 1):
        raise ValueError(f"config needs lr > 0, wd >= 0, width >= 1, got {config}")
    return lr, wd, width


def _error(params: list, x: np.ndarray, y: np.ndarray, diverged: bool) -> float:
    if diverged:
        return 1.0
    w1, b1, w2, b2 = params
    with np.errstate(all="ignore"):
        return float(np.mean((np.maximum(x @ w1 + b1, 0) @ w2 + b2).argmax(1) != y))


def train_curve(config: dict, task: dict, epochs: int, seed: int, batch_size: int = 64):
    """Train the MLP; yield ``(epoch, val_error, test_error)`` after every epoch.

    A diverged run (non-finite weights) yields error 1.0 from then on.
    """
    lr, wd, width = _check_config(config)
    rng = np.random.default_rng(seed)
    x, y = task["x_train"], task["y_train"]
    n, d = x.shape
    w1 = rng.standard_normal((d, width)) * math.sqrt(2 / d)
    w2 = rng.standard_normal((width, 10)) * math.sqrt(1 / width)
    b1, b2 = np.zeros(width), np.zeros(10)
    params = [w1, b1, w2, b2]
    vel = [np.zeros_like(p) for p in params]
    onehot = np.eye(10)[y]
    diverged = False
    for epoch in range(1, epochs + 1):
        order = rng.permutation(n)
        with np.errstate(all="ignore"):
            for i in range(0, n, batch_size):
                idx = order[i : i + batch_size]
                xb = x[idx]
                h = np.maximum(xb @ w1 + b1, 0)
                z = h @ w2 + b2
                z -= z.max(1, keepdims=True)
                p = np.exp(z)
                p /= p.sum(1, keepdims=True)
                gz = (p - onehot[idx]) / len(idx)
                gh = (gz @ w2.T) * (h > 0)
                grads = [xb.T @ gh + wd * w1, gh.sum(0), h.T @ gz + wd * w2, gz.sum(0)]
                for p_, v, g in zip(params, vel, grads, strict=True):
                    v *= 0.9
                    v += g
                    p_ -= lr * v
        diverged = diverged or not all(np.isfinite(p_).all() for p_ in params)

        yield (
            epoch,
            _error(params, task["x_val"], task["y_val"], diverged),
            _error(params, task["x_test"], task["y_test"], diverged),
        )


def evaluate(config: dict, task: dict, epochs: int, seed: int) -> tuple[float, float]:
    """(val error, test error) after ``epochs`` epochs of training ``config``."""
    last = (1.0, 1.0)
    for _, val_err, test_err in train_curve(config, task, epochs, seed):
        last = (val_err, test_err)
    return last


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def sample(rng: np.random.Generator) -> dict:
    """One random configuration from :data:`SPACE` (log-uniform lr, wd and width)."""
    return {
        "lr": _log_uniform(rng, *SPACE["lr"]),
        "wd": _log_uniform(rng, *SPACE["wd"]),
        "width": int(round(_log_uniform(rng, *SPACE["width"]))),
    }


def random_search(task: dict, budget: int, epochs: int, seed: int, train_seed: int) -> list[dict]:
    """``budget`` random configurations, each trained ``epochs`` epochs.

    Returns:
        trials as dicts ``config``, ``val``, ``test``, ``epochs``.
    """
    rng = np.random.default_rng(seed)
    trials = []
    for _ in range(budget):
        c = sample(rng)
        v, t = evaluate(c, task, epochs, train_seed)
        trials.append({"config": c, "val": v, "test": t, "epochs": epochs})
    return trials


def person_search(task: dict, budget: int, epochs: int, train_seed: int) -> list[dict]:
    """Coarse-to-fine manual-style search with ``budget`` trials (>= 12).

    Stage 1: lr on a coarse log grid (5 points over SPACE) at default wd and width.
    Stage 2: wd on a coarse log grid (4 points) at the best lr. Stage 3: width in
    {16, 32, 64} at the best lr and wd. Stage 4: the remaining trials on a finer lr grid
    around the best lr (factors 2^(+-1/2), 2^(+-1), ...). Ties keep the earlier trial.

    Returns:
        trials as in :func:`random_search`.
    """
    if budget < 12:
        raise ValueError(f"budget must be >= 12 for the four stages, got {budget}")
    trials: list[dict] = []
    best = dict(DEFAULT)

    def run(c: dict) -> None:
        v, t = evaluate(c, task, epochs, train_seed)
        trials.append({"config": dict(c), "val": v, "test": t, "epochs": epochs})

    def pick() -> dict:
        return dict(min(trials, key=lambda r: r["val"])["config"])

    for lr in np.geomspace(*SPACE["lr"], 5):
        run({**best, "lr": float(lr)})
    best = pick()
    for wd in np.geomspace(*SPACE["wd"], 4):
        run({**best, "wd": float(wd)})
    best = pick()
    for width in (16, 64, 128):
        run({**best, "width": width})
    best = pick()
    left = budget - len(trials)
    factors = [2.0 ** ((-1) ** i * (i // 2 + 1) / 2) for i in range(left)]
    for f in factors:
        run({**best, "lr": float(np.clip(best["lr"] * f, *SPACE["lr"]))})
    return trials


def choose(trials: list[dict]) -> dict:
    """The trial with the lowest validation error (first one on ties)."""
    return min(trials, key=lambda r: r["val"])


def ray_space() -> dict:
    """:data:`SPACE` as a Ray Tune search space (same distributions as :func:`sample`)."""
    from ray import tune

    return {
        "lr": tune.loguniform(*SPACE["lr"]),
        "wd": tune.loguniform(*SPACE["wd"]),
        "width": tune.lograndint(SPACE["width"][0], SPACE["width"][1] + 1),
    }


def ray_trainable(
    config: dict, task: dict | None = None, epochs: int = 20, train_seed: int = 0
) -> None:
    """Ray Tune function trainable: reports ``val_error`` (and ``test_error``) every epoch."""
    from ray import tune

    for epoch, v, t in train_curve(config, task, epochs, train_seed):
        tune.report({"val_error": v, "test_error": t, "epoch": epoch})
