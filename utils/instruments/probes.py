"""Loss-landscape smoothness along the training trajectory (Santurkar et al. 2018).

Santurkar, Tsipras, Ilyas & Madry 2018, "How Does Batch Normalization Help Optimization?",
arXiv:1805.11604, Sec. 3.1 / Fig. 4 measure, at points w visited by training, what happens when
one moves along the gradient g = grad L(w) by steps eta in a range:

* **loss variation** ("Lipschitzness of the loss"): the range max - min over eta of
  L(w - eta g);
* **gradient predictiveness**: the l2 distances ||grad L(w - eta g) - grad L(w)|| (small and
  stable = the gradient at w predicts the gradient where the step lands);
* **effective beta-smoothness**: max over eta of
  ||grad L(w - eta g) - grad L(w)|| / ||eta g||, a local, along-the-trajectory estimate of the
  gradient's Lipschitz constant (for a quadratic it is ||H g|| / ||g|| <= top Hessian eigenvalue).

:func:`gradient_direction_probe` measures these at one point without changing the model (its
parameters AND buffers, e.g. BatchNorm running statistics, are left untouched);
:func:`train_with_probes` trains with SGD and probes every few steps. Hessian-based measures
(top eigenvalue, slices) live in ``utils.landscape``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

__all__ = ["gradient_direction_probe", "train_with_probes"]


def _check_steps(step_sizes: Sequence[float]) -> list[float]:
    steps = [float(s) for s in step_sizes]
    if not steps or any(not (s > 0 and math.isfinite(s)) for s in steps):
        raise ValueError(
            f"step_sizes must be a non-empty sequence of finite numbers > 0, got {step_sizes!r}"
        )
    return steps


def _loss_and_grad(model, params, buffers, loss_fn, x, y):
    """L and dL/dparams at ``params``; buffers are fresh clones so running stats stay put."""
    bufs = {k: v.clone() for k, v in buffers.items()}
    ps = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    loss = loss_fn(functional_call(model, (ps, bufs), (x,)), y)
    grads = torch.autograd.grad(loss, list(ps.values()))
    return float(loss.detach()), {k: g.detach() for k, g in zip(ps, grads, strict=True)}


def _norm(tensors) -> float:
    return float(torch.sqrt(sum((t.double() ** 2).sum() for t in tensors)))


def gradient_direction_probe(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    step_sizes: Sequence[float],
    *,
    loss_fn: LossFn = F.cross_entropy,
) -> dict:
    """Move from the current weights w along -grad L(w) by each step size; measure L and grad.

    The model is evaluated in its current mode (call ``model.train()`` to probe with batch
    statistics, as training sees the loss). Only parameters with ``requires_grad`` move.
    Stochastic layers (dropout, noisy BatchNorm) make the probe noisy: probe deterministic nets.

    Args:
        model: the network; not modified (parameters and buffers are restored/cloned).
        x: inputs [B, ...] on the model's device; y: targets [B] (int64 class labels for the
            default cross-entropy).
        step_sizes: K step lengths eta > 0 (units of the learning rate: w' = w - eta * g).
        loss_fn: mean-reduced loss ``loss_fn(logits, y)``.

    Returns:
        dict with ``loss`` L(w), ``grad_norm`` ||g||, per step size (lists of K floats)
        ``losses`` L(w - eta g), ``grad_dist`` ||grad L(w - eta g) - g|| and ``beta`` =
        grad_dist / (eta ||g||); and the summaries ``loss_range`` (max - min of ``losses`` with
        L(w) included), ``grad_range`` (max - min of ``grad_dist``) and ``beta_max`` (the
        effective beta-smoothness, max of ``beta``). NaN where the loss overflowed.

    Raises:
        ValueError: empty or non-positive ``step_sizes``; x and y of different lengths.

    Source: Santurkar et al. 2018, arXiv:1805.11604, Sec. 3.1 and Fig. 4.
    """
    steps = _check_steps(step_sizes)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must have the same length, got {x.shape[0]} and {y.shape[0]}")
    params = {k: p for k, p in model.named_parameters() if p.requires_grad}
    frozen = {k: p for k, p in model.named_parameters() if not p.requires_grad}
    buffers = {**dict(model.named_buffers()), **{k: p.detach() for k, p in frozen.items()}}
    loss0, g = _loss_and_grad(model, params, buffers, loss_fn, x, y)
    gnorm = _norm(g.values())
    losses, dists, betas = [], [], []
    for eta in steps:
        moved = {k: p.detach() - eta * g[k] for k, p in params.items()}
        loss, g2 = _loss_and_grad(model, moved, buffers, loss_fn, x, y)
        dist = _norm(g2[k] - g[k] for k in g)
        ok = math.isfinite(loss) and math.isfinite(dist)
        losses.append(loss if ok else math.nan)
        dists.append(dist if ok else math.nan)
        betas.append(dist / (eta * gnorm) if ok and gnorm > 0 else math.nan)
    finite = [v for v in losses if math.isfinite(v)]
    return {
        "loss": loss0,
        "grad_norm": gnorm,
        "step_sizes": steps,
        "losses": losses,
        "grad_dist": dists,
        "beta": betas,
        "loss_range": (
            max([loss0, *finite]) - min([loss0, *finite])
            if len(finite) == len(losses)
            else math.nan
        ),
        "grad_range": (max(dists) - min(dists) if all(map(math.isfinite, dists)) else math.nan),
        "beta_max": max(betas) if all(map(math.isfinite, betas)) else math.nan,
    }


def train_with_probes(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    lr: float,
    steps: int,
    batch_size: int = 128,
    probe_every: int = 10,
    probe_multipliers: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0),
    seed: int = 0,
    loss_fn: LossFn = F.cross_entropy,
    watch: nn.Module | None = None,
) -> dict[str, list]:
    """Plain SGD on shuffled mini-batches, probing the landscape along the gradient as it goes.

    Every ``probe_every`` steps (and at step 0), before the update, the current mini-batch is
    probed with :func:`gradient_direction_probe` at step sizes ``lr * probe_multipliers``.
    If ``watch`` is given, the per-unit batch mean of its output (the next layer's input) is
    recorded at every step: how much it drifts from step to step is a simple measure of the
    input-distribution shift that layer sees (internal covariate shift, Ioffe & Szegedy 2015).

    Args:
        model: trained in place, in train mode. x [N, ...], y [N]: training data on its device.
        lr: SGD learning rate (> 0). steps: optimizer steps (>= 1). batch_size: >= 1.
        probe_every: probe period in steps (>= 1). probe_multipliers: step sizes in units of lr.
        seed: seeds the mini-batch order. loss_fn: mean-reduced loss. watch: optional submodule.

    Returns:
        dict of lists: ``step_loss`` (per step), ``probe_step``, ``loss_range``, ``grad_range``,
        ``beta_max``, ``grad_norm`` (per probe); with ``watch``: ``unit_means`` (per step, a
        [units] tensor). ``diverged``: True if the loss became non-finite (training stops).

    Raises:
        ValueError: non-positive lr, steps, batch_size or probe_every.
    """
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    for name, v in (("steps", steps), ("batch_size", batch_size), ("probe_every", probe_every)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    multipliers = _check_steps(probe_multipliers)
    g = torch.Generator().manual_seed(int(seed))
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    hist: dict[str, list] = {
        "step_loss": [],
        "probe_step": [],
        "loss_range": [],
        "grad_range": [],
        "beta_max": [],
        "grad_norm": [],
    }
    seen: list[torch.Tensor] = []
    probing = [False]  # the probe's forward passes are not training steps: do not record them

    def record(_module, _inputs, out):
        if not probing[0]:
            seen.append(
                out.detach().flatten(2).mean(dim=(0, 2)) if out.dim() > 2 else out.detach().mean(0)
            )

    handle = watch.register_forward_hook(record) if watch is not None else None
    if watch is not None:
        hist["unit_means"] = seen
    diverged = False
    model.train()
    n, step = x.shape[0], 0
    try:
        while step < steps and not diverged:
            order = torch.randperm(n, generator=g).to(x.device)
            for i in range(0, max(n - batch_size, 0) + 1, batch_size):
                idx = order[i : i + batch_size]
                xb, yb = x[idx], y[idx]
                if step % probe_every == 0:
                    probing[0] = True
                    p = gradient_direction_probe(
                        model, xb, yb, [lr * m for m in multipliers], loss_fn=loss_fn
                    )
                    probing[0] = False
                    hist["probe_step"].append(step)
                    for k in ("loss_range", "grad_range", "beta_max", "grad_norm"):
                        hist[k].append(p[k])
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(xb), yb)
                loss.backward()
                opt.step()
                step += 1
                hist["step_loss"].append(float(loss.detach()))
                if not math.isfinite(hist["step_loss"][-1]):
                    diverged = True
                    break
                if step >= steps:
                    break
    finally:
        if handle is not None:
            handle.remove()
    hist["diverged"] = diverged  # type: ignore[assignment]
    return hist
