"""Loss-landscape tools: Hessian-vector products, the top Hessian eigenvalue, filter-normalized
random directions, 1-D/2-D loss slices, per-example gradients, and contour plots of 2-D functions
with optimizer paths (the 2-D toy functions themselves live in ``utils.tasks.optimization``; the
paths are computed by ``train.fit`` in the notebook).

Conventions: ``params`` is a list of tensors that require grad (e.g.
``[p for p in model.parameters() if p.requires_grad]``); a *direction* is a list of tensors of
the same shapes; ``closure`` is a zero-argument callable returning the scalar loss computed from
the current parameter values (build it with :func:`loss_closure`). Nothing here changes a
model's train/eval mode: call ``model.eval()`` first if BatchNorm/dropout should be frozen.

Sources: Pearlmutter 1994 (exact Hessian-vector products by double backprop); power iteration
for the top eigenvalue (as in Yao et al. 2020, PyHessian, arXiv:1912.07145); filter
normalization from Li et al. 2018, "Visualizing the Loss Landscape of Neural Nets",
arXiv:1712.09913.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

Closure = Callable[[], torch.Tensor]
IGNORE = ("biasbn", "none")


def _params(params) -> list[torch.Tensor]:
    if isinstance(params, nn.Module):
        params = [p for p in params.parameters() if p.requires_grad]
    params = list(params)
    if not params or not all(isinstance(p, torch.Tensor) for p in params):
        raise TypeError("params must be an nn.Module or a non-empty sequence of tensors")
    return params


def _check_direction(
    direction: Sequence[torch.Tensor], params: list[torch.Tensor], name: str = "direction"
) -> list[torch.Tensor]:
    direction = list(direction)
    if len(direction) != len(params):
        raise ValueError(
            f"{name} must have one tensor per parameter ({len(params)}), got {len(direction)}"
        )
    for i, (d, p) in enumerate(zip(direction, params, strict=True)):
        if d.shape != p.shape:
            raise ValueError(
                f"{name}[{i}] has shape {tuple(d.shape)}, parameter has {tuple(p.shape)}"
            )
    return direction


def loss_closure(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
) -> Closure:
    """Return ``closure()`` = ``loss_fn(model(x), y)``, the full-batch loss at the current weights.

    Args:
        model: the network (its current mode is used). x: inputs [N, ...]. y: targets [N].
        loss_fn: mean-reduced loss (default cross-entropy on logits).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must have the same length, got {x.shape[0]} and {y.shape[0]}")
    return lambda: loss_fn(model(x), y)


def dot(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> torch.Tensor:
    """Inner product of two directions (lists of same-shaped tensors); a 0-d tensor."""
    return sum((u * v).sum() for u, v in zip(a, b, strict=True))


def norm(a: Sequence[torch.Tensor]) -> torch.Tensor:
    """Euclidean norm of a direction over all its tensors; a 0-d tensor."""
    return torch.sqrt(dot(a, a))


def hvp(closure: Closure, params, vec: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Hessian-vector product ``H v`` of the loss at the current parameters.

    Args:
        closure: returns the scalar loss (see module doc).
        params: an ``nn.Module`` or a list of tensors requiring grad (the Hessian is taken
            w.r.t. these).
        vec: direction v, one tensor per parameter with the same shape.

    Returns:
        list of tensors ``H v``, shapes as ``params`` (detached).

    Raises:
        TypeError/ValueError: bad params, or ``vec`` of wrong length/shapes.

    Source: Pearlmutter 1994, double backprop: ``H v = d/dθ (∇L(θ) · v)``.
    """
    params = _params(params)
    vec = _check_direction(vec, params, "vec")
    grads = torch.autograd.grad(closure(), params, create_graph=True)
    out = torch.autograd.grad(grads, params, grad_outputs=vec, allow_unused=True)
    return [
        torch.zeros_like(p) if h is None else h.detach() for h, p in zip(out, params, strict=True)
    ]


def top_hessian_eigenvalue(
    closure: Closure, params, *, iters: int = 100, tol: float = 1e-4, seed: int = 0
) -> tuple[float, list[torch.Tensor]]:
    """Largest-magnitude eigenvalue of the loss Hessian by power iteration on Hessian-vector
    products (the usual "sharpness"; at a minimum it is the top, positive eigenvalue).

    The gradient graph is built once and reused for every product.

    Args:
        closure: returns the scalar loss. params: module or tensors (see :func:`hvp`).
        iters: maximum power-iteration steps (>= 1).
        tol: stop when the Rayleigh quotient changes by less than ``tol`` relative (>= 0).
        seed: seed of the random start vector.

    Returns:
        (eigenvalue as float, unit eigenvector as a list of tensors shaped like ``params``).

    Raises:
        ValueError: ``iters < 1`` or ``tol < 0``.

    Source: power iteration as in PyHessian (Yao et al. 2020, arXiv:1912.07145).
    """
    if not isinstance(iters, int) or iters < 1:
        raise ValueError(f"iters must be an int >= 1, got {iters!r}")
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol!r}")
    params = _params(params)
    g = torch.Generator().manual_seed(int(seed))
    v = [torch.randn(p.shape, generator=g, dtype=p.dtype).to(p.device) for p in params]
    n = norm(v)
    v = [u / n for u in v]
    grads = torch.autograd.grad(closure(), params, create_graph=True)
    eig = math.nan
    for _ in range(iters):
        hv = torch.autograd.grad(
            grads, params, grad_outputs=v, retain_graph=True, allow_unused=True
        )
        hv = [
            torch.zeros_like(p) if h is None else h.detach()
            for h, p in zip(hv, params, strict=True)
        ]
        new = float(dot(hv, v))  # Rayleigh quotient v^T H v with |v| = 1
        n = float(norm(hv))
        if n == 0.0:
            return 0.0, v
        v = [h / n for h in hv]
        if math.isfinite(eig) and abs(new - eig) <= tol * max(abs(new), 1e-12):
            eig = new
            break
        eig = new
    return eig, v


def filter_normalized_direction(
    model: nn.Module, *, seed: int = 0, ignore: str = "biasbn"
) -> list[torch.Tensor]:
    """A random Gaussian direction, rescaled filter by filter to the norm of the weights.

    For every parameter with ``dim() >= 2`` (a conv or linear weight), each filter ``d[i]``
    (slice along the output dimension 0: a conv filter, or a linear layer's row = one
    neuron's incoming weights) is rescaled to ``||d[i]|| = ||w[i]||``. One-dimensional
    parameters (biases, BatchNorm/LayerNorm weights and biases) are set to zero with
    ``ignore="biasbn"`` (the paper's setting) or copied from the weights with ``"none"`` (the
    authors' code for not-ignored 1-D parameters).

    Args:
        model: the network; directions follow ``model.parameters()`` with requires_grad.
        seed: seed of the Gaussian draw.
        ignore: ``"biasbn"`` or ``"none"``.

    Returns:
        list of tensors shaped like the parameters (no grad).

    Raises:
        ValueError: unknown ``ignore``.

    Source: Li et al. 2018, arXiv:1712.09913, Sec. 4 (``normalize_directions_for_weights`` in
    their code).
    """
    if ignore not in IGNORE:
        raise ValueError(f"ignore must be one of {IGNORE}, got {ignore!r}")
    params = _params(model)
    g = torch.Generator().manual_seed(int(seed))
    out = []
    with torch.no_grad():
        for p in params:
            if p.dim() <= 1:
                out.append(torch.zeros_like(p) if ignore == "biasbn" else p.detach().clone())
                continue
            d = torch.randn(p.shape, generator=g, dtype=p.dtype).to(p.device)
            dn = d.flatten(1).norm(dim=1).clamp_min(1e-10)
            wn = p.detach().flatten(1).norm(dim=1)
            out.append(d * (wn / dn).view(-1, *([1] * (p.dim() - 1))))
    return out


class _Shifted:
    """Context manager: parameters temporarily set to ``θ0 + Σ a_k d_k``; restored on exit."""

    def __init__(self, params: list[torch.Tensor]):
        self.params = params
        self.origin = [p.detach().clone() for p in params]

    def set(self, coeffs: Sequence[float], directions: Sequence[Sequence[torch.Tensor]]) -> None:
        with torch.no_grad():
            for i, p in enumerate(self.params):
                new = self.origin[i].clone()
                for a, d in zip(coeffs, directions, strict=True):
                    new.add_(d[i], alpha=float(a))
                p.copy_(new)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        with torch.no_grad():
            for p, o in zip(self.params, self.origin, strict=True):
                p.copy_(o)
        return False


def loss_slice_1d(
    closure: Closure, params, direction: Sequence[torch.Tensor], alphas: Sequence[float]
) -> np.ndarray:
    """Loss along a line, ``L(θ + α d)`` for each α; the parameters are restored afterwards.

    Args:
        closure: returns the scalar loss. params: module or tensors. direction: d.
        alphas: step lengths (units of d), 1-D sequence.

    Returns:
        float64 numpy array [len(alphas)].
    """
    params = _params(params)
    direction = _check_direction(direction, params)
    out = np.empty(len(alphas))
    with _Shifted(params) as s, torch.no_grad():
        for k, a in enumerate(alphas):
            s.set([a], [direction])
            out[k] = float(closure())
    return out


def loss_slice_2d(
    closure: Closure,
    params,
    d1: Sequence[torch.Tensor],
    d2: Sequence[torch.Tensor],
    alphas: Sequence[float],
    betas: Sequence[float],
) -> np.ndarray:
    """Loss on a plane, ``L(θ + α d1 + β d2)``; parameters restored afterwards.

    Returns:
        float64 numpy array [len(betas), len(alphas)] (rows: β, columns: α, as
        ``plt.contour(alphas, betas, Z)`` expects).
    """
    params = _params(params)
    d1 = _check_direction(d1, params, "d1")
    d2 = _check_direction(d2, params, "d2")
    out = np.empty((len(betas), len(alphas)))
    with _Shifted(params) as s, torch.no_grad():
        for j, b in enumerate(betas):
            for k, a in enumerate(alphas):
                s.set([a, b], [d1, d2])
                out[j, k] = float(closure())
    return out


def perturbation_loss_rise(
    closure: Closure,
    model: nn.Module,
    *,
    radius: float = 0.5,
    n_directions: int = 10,
    seed: int = 0,
    ignore: str = "biasbn",
) -> float:
    """Mean loss increase ``L(θ + r d) - L(θ)`` over random filter-normalized directions d
    (both signs ±r are used, so the linear term cancels): a flatness measure that, unlike the
    raw Hessian, is insensitive to the rescaling symmetries of ReLU nets.

    Args:
        closure: returns the scalar loss. model: the network.
        radius: r, the perturbation size relative to each filter's norm (> 0).
        n_directions: number of random directions (>= 1).
        seed: seed of the first direction (direction k uses ``seed + k``).

    Returns:
        float, mean over 2 * n_directions perturbations.

    Source: Li et al. 2018, arXiv:1712.09913 (filter normalization); Keskar et al. 2017,
    arXiv:1609.04836 (sharpness as the loss rise in a neighbourhood).
    """
    if not radius > 0:
        raise ValueError(f"radius must be > 0, got {radius!r}")
    if not isinstance(n_directions, int) or n_directions < 1:
        raise ValueError(f"n_directions must be an int >= 1, got {n_directions!r}")
    params = _params(model)
    with torch.no_grad():
        base = float(closure())
    rises = []
    for k in range(n_directions):
        d = filter_normalized_direction(model, seed=seed + k, ignore=ignore)
        rises.extend(loss_slice_1d(closure, params, d, [radius, -radius]) - base)
    return float(np.mean(rises))


# ---------------------------------------------------------------- gradients per example


def per_example_grads(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
) -> torch.Tensor:
    """Gradient of the loss of every example w.r.t. all parameters, flattened: [N, P].

    Row i is the gradient of ``loss_fn(model(x[i:i+1]), y[i:i+1])`` at the current weights,
    parameters in ``model.named_parameters()`` order; the mean of the rows is the full-batch
    gradient. Use it to measure gradient noise (the variance of a mini-batch mean).

    Args:
        model: the network (no buffers that the forward pass updates, e.g. BatchNorm in
            training mode). x: inputs [N, ...]. y: targets [N, ...].
        loss_fn: mean-reduced loss (default cross-entropy on logits).

    Returns:
        tensor [N, P] (P = number of parameters), detached, on the parameters' device.

    Raises:
        TypeError: ``model`` not an nn.Module. ValueError: x and y of different lengths.

    Source: ``torch.func.vmap(torch.func.grad(...))`` over examples (torch.func tutorial
    "per-sample gradients").
    """
    from torch.func import functional_call, grad, vmap

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must have the same length, got {x.shape[0]} and {y.shape[0]}")
    params = {k: v.detach() for k, v in model.named_parameters()}

    def one(p, xi, yi):
        return loss_fn(functional_call(model, p, (xi[None],)), yi[None])

    g = vmap(grad(one), in_dims=(None, 0, 0))(params, x, y)
    return torch.cat([v.flatten(1) for v in g.values()], dim=1)


# ---------------------------------------------------------------- pictures of 2-D functions


def contour_grid(
    fn: Callable[[torch.Tensor], torch.Tensor],
    xlim: tuple[float, float],
    ylim: tuple[float, float],
    n: int = 100,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Evaluate a 2-D function on a grid for ``ax.contour``.

    Args:
        fn: maps points [..., 2] (float64) to values [...].
        xlim, ylim: (low, high) ranges. n: grid points per axis (>= 2).

    Returns:
        (X, Y, Z), float64 arrays [n, n].

    Raises:
        ValueError: ``n < 2``.
    """
    if not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an int >= 2, got {n!r}")
    xs = torch.linspace(*xlim, n, dtype=torch.float64)
    ys = torch.linspace(*ylim, n, dtype=torch.float64)
    X, Y = torch.meshgrid(xs, ys, indexing="xy")
    with torch.no_grad():
        Z = fn(torch.stack([X, Y], dim=-1))
    return X.numpy(), Y.numpy(), Z.numpy()


def plot_trajectories(
    ax,
    fn: Callable[[torch.Tensor], torch.Tensor],
    paths: dict[str, np.ndarray],
    xlim: tuple[float, float],
    ylim: tuple[float, float],
    *,
    log_levels: bool = True,
) -> None:
    """Contour plot of ``fn`` with one labelled trajectory per entry of ``paths``.

    Args:
        ax: matplotlib axes. fn: maps points [..., 2] to values [...].
        paths: label -> array [T, 2] of iterates.
        xlim, ylim: the plotted ranges.
        log_levels: geometric contour levels (good for Rosenbrock and quadratics).
    """
    X, Y, Z = contour_grid(fn, xlim, ylim)
    if log_levels:
        lo = max(float(Z.min()), 1e-3)
        levels = np.geomspace(lo, float(Z.max()), 15)
    else:
        levels = 15
    ax.contour(X, Y, Z, levels=levels, colors="0.75", linewidths=0.7)
    for label, p in paths.items():
        ax.plot(p[:, 0], p[:, 1], ".-", ms=2, lw=1, label=label)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.legend(fontsize=8)
