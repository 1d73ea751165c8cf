"""Batch normalisation from scratch, and the "noisy" BatchNorm of Santurkar et al.

* :class:`BatchNorm1d` / :class:`BatchNorm2d` mirror ``torch.nn.BatchNorm1d/2d`` (same argument
  names, buffers, state-dict keys and numbers): Ioffe & Szegedy 2015, "Batch Normalization:
  Accelerating Deep Network Training by Reducing Internal Covariate Shift", arXiv:1502.03167.
  The forward pass and the backward pass (the paper's chain-rule formulas, Sec. 3) are written
  out by hand in :class:`BatchNormFunction`.
* :class:`NoisyBatchNorm1d` / :class:`NoisyBatchNorm2d`: BatchNorm followed by freshly
  resampled noise with a non-zero mean and a non-unit variance at every training step, to inject
  internal covariate shift on purpose (Santurkar et al. 2018, "How Does Batch Normalization Help
  Optimization?", arXiv:1805.11604, Sec. 2.1).

Shapes: ``BatchNorm1d`` takes [N, C] or [N, C, L]; ``BatchNorm2d`` takes [N, C, H, W]. Statistics
are per channel C over all other axes. float32 or float64.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "BatchNormFunction",
    "BatchNorm1d",
    "BatchNorm2d",
    "NoisyBatchNorm1d",
    "NoisyBatchNorm2d",
    "batch_norm",
]


def _reduce_dims(x: torch.Tensor) -> tuple[int, ...]:
    """Every axis except the channel axis 1."""
    return (0,) + tuple(range(2, x.dim()))


def _per_channel(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape a [C] vector so it broadcasts against x of shape [N, C, ...]."""
    return t.reshape((1, -1) + (1,) * (x.dim() - 2))


class BatchNormFunction(torch.autograd.Function):
    """y = gamma * (x - mean_B) / sqrt(var_B + eps) + beta with the backward pass by hand.

    ``mean_B`` / ``var_B`` are the batch mean and the BIASED batch variance per channel (what
    the forward pass normalises with, as in the paper and in torch). The backward pass is
    Ioffe & Szegedy (2015) Sec. 3, written per channel with m = N * spatial size:

        dxhat = dy * gamma
        dx    = invstd / m * (m * dxhat - sum(dxhat) - xhat * sum(dxhat * xhat))
        dgamma = sum(dy * xhat),   dbeta = sum(dy)

    The backward pass recomputes xhat from the saved input with differentiable torch ops, so
    double backward (Hessian-vector products, ``torch.autograd.gradgradcheck``) works too.

    Inputs: x [N, C, ...]; weight, bias [C] or None; eps float. Returns y (shape of x), and the
    batch mean and biased variance [C] (non-differentiable, for the running statistics).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        dims = _reduce_dims(x)
        mean = x.mean(dim=dims)
        var = x.var(dim=dims, unbiased=False)
        invstd = torch.rsqrt(var + eps)
        xhat = (x - _per_channel(mean, x)) * _per_channel(invstd, x)
        y = xhat
        if weight is not None:
            y = y * _per_channel(weight, x) + _per_channel(bias, x)
        ctx.eps = eps
        ctx.save_for_backward(x, weight)
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var

    @staticmethod
    def backward(ctx, dy, _dmean, _dvar):
        x, weight = ctx.saved_tensors
        dims = _reduce_dims(x)
        m = x.numel() // x.shape[1]
        # Recompute (cheap) instead of saving intermediates: keeps double backward exact.
        mean = x.mean(dim=dims)
        invstd = torch.rsqrt(x.var(dim=dims, unbiased=False) + ctx.eps)
        xhat = (x - _per_channel(mean, x)) * _per_channel(invstd, x)
        dxhat = dy * _per_channel(weight, dy) if weight is not None else dy
        sum_dxhat = dxhat.sum(dim=dims)
        sum_dxhat_xhat = (dxhat * xhat).sum(dim=dims)
        dx = None
        if ctx.needs_input_grad[0]:
            dx = (_per_channel(invstd, dy) / m) * (
                m * dxhat - _per_channel(sum_dxhat, dy) - xhat * _per_channel(sum_dxhat_xhat, dy)
            )
        dweight = dbias = None
        if weight is not None:
            if ctx.needs_input_grad[1]:
                dweight = (dy * xhat).sum(dim=dims)
            if ctx.needs_input_grad[2]:
                dbias = dy.sum(dim=dims)
        return dx, dweight, dbias, None


def batch_norm(
    x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float = 1e-5
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Normalise x [N, C, ...] with its own batch statistics (training-mode BatchNorm).

    Returns (y, batch_mean [C], biased batch_var [C]). Mirrors
    ``torch.nn.functional.batch_norm(training=True)`` without the running-statistics update.
    """
    if (weight is None) != (bias is None):
        raise ValueError("weight and bias must both be tensors or both be None")
    return BatchNormFunction.apply(x, weight, bias, eps)


class _BatchNorm(nn.Module):
    """Shared machinery of the from-scratch BatchNorm layers (see :class:`BatchNorm1d`)."""

    _allowed_dims: tuple[int, ...] = ()
    _layout = ""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device=None,
        dtype=None,
    ):
        super().__init__()
        if not isinstance(num_features, int) or isinstance(num_features, bool) or num_features < 1:
            raise ValueError(f"num_features must be an int >= 1, got {num_features!r}")
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps!r}")
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be None or in [0, 1], got {momentum!r}")
        self.num_features, self.eps, self.momentum = num_features, float(eps), momentum
        self.affine, self.track_running_stats = bool(affine), bool(track_running_stats)
        kw = {"device": device, "dtype": dtype}
        if self.affine:
            self.weight = nn.Parameter(torch.ones(num_features, **kw))
            self.bias = nn.Parameter(torch.zeros(num_features, **kw))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if self.track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features, **kw))
            self.register_buffer("running_var", torch.ones(num_features, **kw))
            self.register_buffer(
                "num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device)
            )
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}, track_running_stats={self.track_running_stats}"
        )

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"input must be a tensor, got {type(x).__name__}")
        if x.dim() not in self._allowed_dims:
            raise ValueError(
                f"{type(self).__name__} expects input of shape {self._layout}, got {tuple(x.shape)}"
            )
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"{type(self).__name__}({self.num_features}) got input of shape "
                f"{tuple(x.shape)}: channel axis 1 has {x.shape[1]} features, "
                f"expected num_features={self.num_features}"
            )

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        use_batch_stats = self.training or not self.track_running_stats
        if not use_batch_stats:
            # Evaluation: a fixed affine map with the running estimates (population statistics).
            invstd = torch.rsqrt(self.running_var + self.eps)
            y = (x - _per_channel(self.running_mean, x)) * _per_channel(invstd, x)
            if self.affine:
                y = y * _per_channel(self.weight, x) + _per_channel(self.bias, x)
            return y
        m = x.numel() // x.shape[1]
        if m <= 1:
            # torch raises the same: the variance of a single value per channel is undefined.
            raise ValueError(
                f"Expected more than 1 value per channel when training, got input "
                f"of shape {tuple(x.shape)}"
            )
        y, mean, var = batch_norm(x, self.weight, self.bias, self.eps)
        if self.training and self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                # momentum=None: cumulative moving average (factor 1/t), as in torch.
                factor = (
                    1.0 / float(self.num_batches_tracked)
                    if self.momentum is None
                    else self.momentum
                )
                # The running variance uses the UNBIASED batch variance (Bessel's m/(m-1)),
                # the paper's Alg. 2 and torch's convention; the forward pass used the biased one.
                unbiased = var * (m / (m - 1))
                self.running_mean.mul_(1 - factor).add_(
                    mean.to(self.running_mean.dtype), alpha=factor
                )
                self.running_var.mul_(1 - factor).add_(
                    unbiased.to(self.running_var.dtype), alpha=factor
                )
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._normalise(x)


class BatchNorm1d(_BatchNorm):
    """BatchNorm over [N, C] or [N, C, L] (statistics per feature C), from scratch.

    Same arguments, parameters (``weight`` = gamma, ``bias`` = beta), buffers
    (``running_mean``, ``running_var``, ``num_batches_tracked``) and numbers as
    ``torch.nn.BatchNorm1d``:

    * training mode: normalise with the batch mean and biased batch variance; update
      ``running_mean <- (1 - momentum) running_mean + momentum * batch_mean`` and the same for
      ``running_var`` with the UNBIASED batch variance; ``momentum=None`` uses the cumulative
      average (factor 1 / num_batches_tracked).
    * evaluation mode: normalise with the running estimates (if ``track_running_stats``; else
      batch statistics are used in both modes and no buffers exist).

    Args:
        num_features: C (int >= 1). eps: added to the variance (> 0). momentum: in [0, 1] or
        None. affine: learn gamma (init 1) and beta (init 0). track_running_stats: keep running
        estimates. device, dtype: of parameters and buffers.

    Raises:
        ValueError: bad arguments; input not 2-D/3-D; input channel count != num_features;
            a training batch with a single value per channel.

    Source: Ioffe & Szegedy 2015, arXiv:1502.03167 (Alg. 1 and 2); mirrors torch.nn.BatchNorm1d.
    """

    _allowed_dims = (2, 3)
    _layout = "[N, C] or [N, C, L]"


class BatchNorm2d(_BatchNorm):
    """BatchNorm over [N, C, H, W] (statistics per channel over N, H, W), from scratch.

    Everything else as :class:`BatchNorm1d`; mirrors ``torch.nn.BatchNorm2d``.
    Source: Ioffe & Szegedy 2015, arXiv:1502.03167 (Sec. 3.2, convolutional networks).
    """

    _allowed_dims = (4,)
    _layout = "[N, C, H, W]"


class _NoisyBatchNorm(_BatchNorm):
    """BatchNorm, then per-step resampled non-zero-mean, non-unit-variance noise (training only).

    Santurkar et al. 2018 (arXiv:1805.11604, Sec. 2.1) inject "noise sampled from a non-zero mean
    and non-unit variance distribution", with the distribution changing at every time step, after
    each BatchNorm layer, so that the next layer's input distribution shifts MORE than without
    BatchNorm (severe internal covariate shift), and find such networks still train like BatchNorm
    ones. Here, at every training forward pass and for every channel c:

        mu_c    ~ U(-mean_range, mean_range)          the step's shift of the mean
        s_c     ~ U(scale_range[0], scale_range[1])   the step's scale of the std (variance s_c^2)
        y'_{i,c} = s_c * m_{i,c} * y_{i,c} + mu_c + a_{i,c}
        m ~ N(1, jitter^2), a ~ N(0, jitter^2)        i.i.d. per activation (sample and position)

    so each channel's output has mean ~ mu_c and std ~ s_c (plus jitter), re-drawn every step.
    Evaluation mode adds no noise (a plain BatchNorm with running statistics).

    Args (besides BatchNorm's): mean_range >= 0 (default 1.0), scale_range (lo, hi) with
    0 < lo <= hi (default (0.75, 1.5)), jitter >= 0 (default 0.1). Noise comes from torch's global
    RNG (seed it with ``utils.repro.set_seed``) or from ``generator`` if given.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        *,
        mean_range: float = 1.0,
        scale_range: tuple[float, float] = (0.75, 1.5),
        jitter: float = 0.1,
        generator: torch.Generator | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)
        if not mean_range >= 0:
            raise ValueError(f"mean_range must be >= 0, got {mean_range!r}")
        lo, hi = scale_range
        if not 0 < lo <= hi:
            raise ValueError(f"scale_range must be (lo, hi) with 0 < lo <= hi, got {scale_range!r}")
        if not jitter >= 0:
            raise ValueError(f"jitter must be >= 0, got {jitter!r}")
        self.mean_range, self.scale_range, self.jitter = float(mean_range), (lo, hi), float(jitter)
        self.generator = generator

    def extra_repr(self) -> str:
        return (
            super().extra_repr() + f", mean_range={self.mean_range}, "
            f"scale_range={self.scale_range}, jitter={self.jitter}"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._normalise(x)
        if not self.training:
            return y
        c, kw = self.num_features, {"device": y.device, "dtype": y.dtype}
        g = self.generator
        mu = (torch.rand(c, generator=g, **kw) * 2 - 1) * self.mean_range
        lo, hi = self.scale_range
        s = lo + (hi - lo) * torch.rand(c, generator=g, **kw)
        m = 1 + self.jitter * torch.randn(y.shape, generator=g, **kw)
        a = self.jitter * torch.randn(y.shape, generator=g, **kw)
        return _per_channel(s, y) * m * y + _per_channel(mu, y) + a


class NoisyBatchNorm1d(_NoisyBatchNorm):
    """Noisy BatchNorm over [N, C] or [N, C, L]; see :class:`_NoisyBatchNorm` for the noise."""

    _allowed_dims = (2, 3)
    _layout = "[N, C] or [N, C, L]"


class NoisyBatchNorm2d(_NoisyBatchNorm):
    """Noisy BatchNorm over [N, C, H, W]; see :class:`_NoisyBatchNorm` for the noise."""

    _allowed_dims = (4,)
    _layout = "[N, C, H, W]"
