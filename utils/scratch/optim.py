"""Optimizers written from scratch, the way the study group's lecture notes derive them (O1-O12 in
docs/questions.md).

Every class is a :class:`torch.optim.Optimizer` subclass with the same argument names, defaults,
argument validation (``ValueError`` with torch's message, e.g. ``"Invalid learning rate: -1"``)
and per-parameter state keys as its reference, so a ``state_dict`` saved by the reference loads
into ours and vice versa. ``tests/test_optim.py`` runs each one side by side with its reference
for >= 100 steps and requires equal parameter trajectories.

=================  ====================================  ===========================================
ours               reference                             source
=================  ====================================  ===========================================
:class:`SGD`       ``torch.optim.SGD``                   Robbins & Monro 1951; Polyak 1964 (heavy
                                                         ball); Nesterov 1983; Sutskever et al.
                                                         2013
:class:`Adagrad`   ``torch.optim.Adagrad``               Duchi, Hazan & Singer 2011 (JMLR)
:class:`Adadelta`  ``torch.optim.Adadelta``              Zeiler 2012, arXiv:1212.5701
:class:`RMSprop`   ``torch.optim.RMSprop``               Tieleman & Hinton 2012 (lecture 6e);
                                                         centered: Graves 2013, arXiv:1308.0850
:class:`Adam`      ``torch.optim.Adam``                  Kingma & Ba 2015, arXiv:1412.6980; AMSGrad:
                                                         Reddi, Kale & Kumar 2018, arXiv:1904.09237
:class:`AdamW`     ``torch.optim.AdamW``                 Loshchilov & Hutter 2019, arXiv:1711.05101
:class:`RAdam`     ``torch.optim.RAdam``                 Liu et al. 2020, arXiv:1908.03265
:class:`AdamP`     ``adamp.AdamP`` (clovaai, v0.3.0)     Heo et al. 2021, arXiv:2006.08217
=================  ====================================  ===========================================

Only torch's single-tensor path is implemented: a Python loop over the parameters with in-place
tensor operations (``mul_``, ``addcmul_``, ``addcdiv_``). The torch-only switches ``foreach``,
``fused``, ``capturable`` and ``differentiable`` are accepted for drop-in compatibility but must
stay off (``None``/``False``); asking for them raises ``ValueError``. Sparse gradients raise
``RuntimeError`` and complex parameters raise ``TypeError`` (torch supports both).

Notation (as in the notes): ``W`` parameters, ``g`` gradient, ``eta`` = ``lr``, ``t`` the step
count starting at 1. ``maximize=True`` replaces ``g`` by ``-g``. Coupled ``weight_decay`` (L2
penalty) replaces ``g`` by ``g + weight_decay * W`` before anything else; decoupled weight decay
(AdamW) shrinks ``W <- W (1 - lr * weight_decay)`` instead.

Per-tensor updates, one function per rule: :func:`sgd_update_`, :func:`adagrad_update_`,
:func:`adadelta_update_`, :func:`rmsprop_update_`, :func:`adam_update_` (Adam and AdamW) and
:func:`radam_update_` update one tensor ``w`` in place from its gradient ``g`` and its state dict.
Each class's ``step`` calls its function for every parameter, and the stacked trainer
(:mod:`utils.instruments.stacked`) calls the same functions on parameters stacked over M models
with a per-model learning rate: ``lr`` may be a float or a tensor that broadcasts to ``w`` (e.g.
``[M, 1, ...]``). With a float ``lr`` the final step is torch's in-place form (``w.add_(d,
alpha=-lr)``, ``w.addcdiv_(...)``), so the classes stay bit-identical to torch's single-tensor
path; with a tensor ``lr`` it is ``w.sub_(lr * d)`` (the same maths, rounded differently).
AdamP's step stays inside its class: its projection looks at each weight's own channels, so it
does not apply to weights stacked over models.

Pure helpers for notebooks: :func:`adam_step_size` (the scalar that multiplies ``m`` in each Adam
form), :func:`adam_update` (the update ``W_t - W_{t+1}`` of either form from given moments) and
:func:`adamp_projection` (AdamP's radial projection).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.optim import Optimizer

__all__ = [
    "SGD",
    "Adagrad",
    "Adadelta",
    "RMSprop",
    "Adam",
    "AdamW",
    "RAdam",
    "AdamP",
    "ADAM_FORMS",
    "sgd_update_",
    "adagrad_update_",
    "adadelta_update_",
    "rmsprop_update_",
    "adam_update_",
    "radam_update_",
    "adam_step_size",
    "adam_update",
    "adamp_projection",
]

ADAM_FORMS = ("pytorch", "notes")


# ----------------------------------------------------------------------------------------------
# shared machinery
# ----------------------------------------------------------------------------------------------
def _scalar(x: float | Tensor) -> float:
    """A hyperparameter as a Python float (torch allows 1-element tensors for lr)."""
    return x.item() if isinstance(x, Tensor) else x


def _new_step() -> Tensor:
    # torch keeps the step count as a 0-d float tensor on the CPU (float64 only when the default
    # dtype is float64); we do the same so that state_dicts are interchangeable.
    dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
    return torch.tensor(0.0, dtype=dtype)


def _check_lr(lr: float | Tensor) -> None:
    if isinstance(lr, Tensor) and lr.numel() != 1:
        raise ValueError("Tensor lr must be 1-element")
    if not 0.0 <= lr:
        raise ValueError(f"Invalid learning rate: {lr}")


def _check_nonneg(name: str, value: float, label: str | None = None) -> None:
    if not 0.0 <= value:
        raise ValueError(f"Invalid {label or name} value: {value}")


def _check_beta_range(betas: tuple[float, float]) -> None:
    """Each beta in [0, 1), with torch.optim's message."""
    for i in (0, 1):
        if not 0.0 <= betas[i] < 1.0:
            raise ValueError(f"Invalid beta parameter at index {i}: {betas[i]}")


def _check_betas(betas: tuple[float, float]) -> tuple[float, float]:
    if len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    _check_beta_range(betas)
    if not (all(isinstance(b, float) for b in betas) or all(isinstance(b, Tensor) for b in betas)):
        # torch.optim.Adam's rule, mirrored: ints such as (0, 0.9) are rejected too.
        raise ValueError("betas must be either both floats or both Tensors")
    return (_scalar(betas[0]), _scalar(betas[1]))


def _check_single_tensor_only(**flags: bool | None) -> None:
    for name, value in flags.items():
        if value:
            raise ValueError(
                f"Invalid {name} value: {value} (the from-scratch optimizers implement only "
                f"torch's single-tensor path; leave {name} at None/False or use torch.optim)"
            )


def _check_update(w: Tensor, g: Tensor, state: dict, lr: float | Tensor) -> None:
    """Arguments every ``*_update_`` function shares (cheap: they run per tensor and step).

    A tensor ``lr`` is not checked for negative entries (that would synchronise a GPU); the
    stacked trainer checks its learning rates when they are set.
    """
    if not isinstance(w, Tensor) or not isinstance(g, Tensor):
        raise TypeError(f"w and g must be tensors, got {type(w).__name__} and {type(g).__name__}")
    if g.shape != w.shape:
        raise ValueError(f"g must have the shape of w {tuple(w.shape)}, got {tuple(g.shape)}")
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict (w's optimizer state), got {type(state).__name__}")
    if isinstance(lr, Tensor):
        # broadcastable to w without growing it: trailing sizes of lr are 1 or w's own
        ok = lr.dim() <= w.dim() and all(
            a == 1 or a == b for a, b in zip(reversed(lr.shape), reversed(w.shape), strict=False)
        )
        if not ok:
            raise ValueError(
                f"lr tensor of shape {tuple(lr.shape)} must broadcast to w's shape {tuple(w.shape)}"
            )
    elif isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not lr >= 0:
        raise ValueError(f"Invalid learning rate: {lr}")


class _FromScratch(Optimizer):
    """Common ``step``: closure, no-grad, collect (param, grad) per group, then ``_group_step``.

    Subclasses implement ``_group_step(group, params, grads)`` where ``grads`` already carry the
    sign of ``maximize``.
    """

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Perform one optimization step.

        Args:
            closure: optional callable that re-evaluates the model and returns the loss (it is
                run with gradients enabled, as in torch.optim).

        Returns:
            the closure's loss, or None.

        Raises:
            RuntimeError: on sparse gradients. TypeError: on complex parameters.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            maximize = group.get("maximize", False)
            params, grads = [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
                if torch.is_complex(p):
                    raise TypeError(f"{type(self).__name__} does not support complex parameters")
                params.append(p)
                grads.append(-p.grad if maximize else p.grad)
            if params:
                self._group_step(group, params, grads)
        return loss

    def _group_step(self, group: dict, params: list[Tensor], grads: list[Tensor]) -> None:
        raise NotImplementedError

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            for key, value in self._group_fallbacks().items():
                group.setdefault(key, value)

    def _group_fallbacks(self) -> dict:
        """Keys a loaded param group may lack (e.g. a state_dict from another version)."""
        return {"maximize": False, "foreach": None, "differentiable": False}


# ----------------------------------------------------------------------------------------------
# SGD with heavy-ball / Nesterov momentum
# ----------------------------------------------------------------------------------------------
def sgd_update_(
    w: Tensor,
    g: Tensor,
    state: dict,
    *,
    lr: float | Tensor,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
) -> None:
    r"""One SGD step of one tensor, in place: the maths of :class:`SGD` (see its docstring).

    ``g <- g + lambda W``;  ``a <- beta a + (1 - d) g`` (``a_1 = g_1``);  ``W <- W - eta a``
    (heavy ball) or ``W <- W - eta (g + beta a)`` (torch's Nesterov).

    Args:
        w: the parameter, any shape, floating dtype; updated in place.
        g: its gradient (same shape; already negated for ``maximize``); not modified.
        state: w's state dict; holds ``momentum_buffer`` once momentum != 0.
        lr: eta, a float >= 0 or a tensor broadcastable to ``w`` (e.g. one lr per stacked model,
            shape ``[M, 1, ...]``).
        momentum, dampening, weight_decay, nesterov: as :class:`SGD`.

    Raises:
        TypeError/ValueError: non-tensor w/g, shape mismatch, a state that is not a dict, an lr
            that is negative or does not broadcast, negative momentum/weight_decay, or Nesterov
            without momentum or with dampening.

    Source: ``torch.optim.sgd._single_tensor_sgd``.
    """
    _check_update(w, g, state, lr)
    _check_nonneg("momentum", momentum)
    _check_nonneg("weight_decay", weight_decay)
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError("Nesterov momentum requires a momentum and zero dampening")
    if weight_decay != 0:
        g = g.add(w, alpha=weight_decay)  # L2 penalty: g <- g + lambda W
    if momentum != 0:
        a = state.get("momentum_buffer")
        if a is None:
            a = state["momentum_buffer"] = torch.clone(g).detach()  # a_1 = g_1
        else:
            a.mul_(momentum).add_(g, alpha=1 - dampening)  # a <- beta a + (1 - d) g
        # heavy ball steps along a; torch's Nesterov steps along g + beta a (see SGD)
        g = g.add(a, alpha=momentum) if nesterov else a
    if isinstance(lr, Tensor):
        w.sub_(lr * g)  # one lr per stacked model
    else:
        w.add_(g, alpha=-lr)  # W <- W - eta a


class SGD(_FromScratch):
    r"""Stochastic gradient descent with heavy-ball or Nesterov momentum.

    The notes (O-questions in docs/questions.md) write, with ``beta`` = ``momentum``:

    * plain SGD:   ``W_{t+1} = W_t - eta g_t``
    * heavy ball:  ``a_{t+1} = beta a_t + g_t``;  ``W_{t+1} = W_t - eta a_{t+1}``  (Polyak 1964)
    * Nesterov:    ``a_{t+1} = beta a_t + grad L(W_t - eta beta a_t)``;  ``W_{t+1} = W_t - eta
      a_{t+1}`` (Nesterov 1983, in the form of Sutskever et al. 2013, ICML)

    We implement exactly ``torch.optim.SGD`` (``_single_tensor_sgd``):

    * ``dampening`` d scales the new gradient, ``a <- beta a + (1 - d) g``; torch starts the
      buffer at ``a_1 = g_1`` (no dampening on the first step), so do we.
    * Nesterov is torch's reformulation (Bengio et al. 2013, arXiv:1212.0901): the parameters
      it stores are the notes' look-ahead points ``W' = W - eta beta a``, and then the update
      reads ``a <- beta a + g(W')``; ``W' <- W' - eta (g + beta a)``. Same trajectory, shifted
      by ``eta beta a`` (tested in ``tests/test_optim.py``), no second gradient evaluation.

    Args:
        params: iterable of tensors or param-group dicts.
        lr: learning rate ``eta`` >= 0 (default 1e-3, as torch).
        momentum: ``beta`` >= 0 (default 0: plain SGD).
        dampening: d (default 0).
        weight_decay: L2 coefficient >= 0 added to the gradient (default 0).
        nesterov: Nesterov momentum (needs momentum > 0 and dampening 0).
        maximize: ascend instead of descend.
        foreach, differentiable, fused: accepted for compatibility; must stay off.

    State per parameter: ``momentum_buffer`` (same shape/dtype as the parameter; only when
    momentum != 0).

    Raises:
        ValueError: negative lr / momentum / weight_decay, Nesterov without momentum or with
            dampening, or a torch-only switch turned on.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float | Tensor = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        _check_lr(lr)
        _check_nonneg("momentum", momentum)
        _check_nonneg("weight_decay", weight_decay)
        _check_single_tensor_only(foreach=foreach, differentiable=differentiable, fused=fused)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            maximize=maximize,
            foreach=foreach,
            differentiable=differentiable,
            fused=fused,
        )
        super().__init__(params, defaults)

    def _group_fallbacks(self) -> dict:
        return {**super()._group_fallbacks(), "nesterov": False, "fused": None}

    def _group_step(self, group, params, grads):
        hyper = {k: group[k] for k in ("momentum", "dampening", "weight_decay", "nesterov")}
        for w, g in zip(params, grads, strict=True):
            # torch keeps no state for momentum-free SGD; neither do we (state_dicts match)
            state = self.state[w] if hyper["momentum"] != 0 else {}
            sgd_update_(w, g, state, lr=_scalar(group["lr"]), **hyper)


# ----------------------------------------------------------------------------------------------
# Adagrad
# ----------------------------------------------------------------------------------------------
def adagrad_update_(
    w: Tensor,
    g: Tensor,
    state: dict,
    *,
    lr: float | Tensor,
    lr_decay: float = 0.0,
    weight_decay: float = 0.0,
    initial_accumulator_value: float = 0.0,
    eps: float = 1e-10,
) -> None:
    r"""One Adagrad step of one tensor, in place: the maths of :class:`Adagrad`.

    ``G <- G + g^2``;  ``W <- W - eta_t g / (sqrt(G) + eps)`` with
    ``eta_t = lr / (1 + (t - 1) lr_decay)``.

    Args:
        w, g, state, lr: as :func:`sgd_update_`; ``state`` gets ``step`` (0-d float tensor) and
            ``sum`` = G (filled with ``initial_accumulator_value``) on first use.
        lr_decay, weight_decay, initial_accumulator_value, eps: as :class:`Adagrad`.

    Raises:
        TypeError/ValueError: as :func:`sgd_update_`; negative lr_decay, weight_decay,
            initial_accumulator_value or eps.

    Source: ``torch.optim.adagrad._single_tensor_adagrad``.
    """
    _check_update(w, g, state, lr)
    _check_nonneg("lr_decay", lr_decay)
    _check_nonneg("weight_decay", weight_decay)
    _check_nonneg("initial_accumulator_value", initial_accumulator_value)
    _check_nonneg("eps", eps, "epsilon")
    if not state:
        state["step"] = _new_step()
        state["sum"] = torch.full_like(
            w, initial_accumulator_value, memory_format=torch.preserve_format
        )
    state["step"] += 1
    t = state["step"].item()
    if weight_decay != 0:
        g = g.add(w, alpha=weight_decay)
    eta_t = lr / (1 + (t - 1) * lr_decay)
    G = state["sum"]
    G.addcmul_(g, g, value=1)  # G_t = G_{t-1} + g_t^2
    denom = G.sqrt().add_(eps)  # torch: sqrt(G) + eps   (notes: sqrt(G + eps))
    if isinstance(lr, Tensor):
        w.sub_(eta_t * (g / denom))  # one lr per stacked model
    else:
        w.addcdiv_(g, denom, value=-eta_t)  # W <- W - eta_t g / (sqrt(G) + eps)


class Adagrad(_FromScratch):
    r"""Adagrad: per-coordinate steps shrink with the sum of squared past gradients.

    Notes (O7 in docs/questions.md):  ``G_t = G_{t-1} + g_t^2``;
    ``W_{t+1} = W_t - eta / sqrt(G_t + eps) g_t``.

    Torch (``torch.optim.Adagrad``, ``_single_tensor_adagrad``), which we implement, differs in
    two places: eps is added OUTSIDE the square root, ``eta / (sqrt(G_t) + eps)`` (as the study
    group's O7 question writes it), and ``lr_decay`` shrinks the global rate,
    ``eta_t = lr / (1 + (t - 1) lr_decay)``. The per-coordinate effective step is
    ``eta_t / (sqrt(G_t) + eps)``: coordinates that rarely saw a gradient keep a small ``G`` and
    therefore a large step; since ``G`` only grows, every step decays (like ``1/sqrt(t)`` for
    steady gradients), which is why learning can stall (Duchi, Hazan & Singer 2011, JMLR 12).

    Args:
        params: iterable of tensors or param-group dicts.
        lr: eta >= 0 (default 1e-2). lr_decay: >= 0 (default 0).
        weight_decay: L2 coefficient >= 0 (default 0).
        initial_accumulator_value: G_0 >= 0 (default 0). eps: >= 0 (default 1e-10).
        foreach, differentiable, fused: accepted for compatibility; must stay off.
        maximize: ascend instead of descend.

    State per parameter (created in ``__init__``, as torch): ``step`` (0-d float tensor),
    ``sum`` = G (same shape/dtype as the parameter).

    Raises:
        ValueError: a negative lr, lr_decay, weight_decay, initial_accumulator_value or eps.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float | Tensor = 1e-2,
        lr_decay: float = 0,
        weight_decay: float = 0,
        initial_accumulator_value: float = 0,
        eps: float = 1e-10,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        _check_lr(lr)
        _check_nonneg("lr_decay", lr_decay)
        _check_nonneg("weight_decay", weight_decay)
        _check_nonneg("initial_accumulator_value", initial_accumulator_value)
        _check_nonneg("eps", eps, "epsilon")
        _check_single_tensor_only(foreach=foreach, differentiable=differentiable, fused=fused)
        defaults = dict(
            lr=lr,
            lr_decay=lr_decay,
            eps=eps,
            weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value,
            foreach=foreach,
            maximize=maximize,
            differentiable=differentiable,
            fused=fused,
        )
        super().__init__(params, defaults)
        for group in self.param_groups:
            for w in group["params"]:
                self._init_state(w, group)

    def _init_state(self, w: Tensor, group: dict) -> dict:
        state = self.state[w]
        if not state:
            state["step"] = _new_step()
            state["sum"] = torch.full_like(
                w, group["initial_accumulator_value"], memory_format=torch.preserve_format
            )
        return state

    def _group_fallbacks(self) -> dict:
        return {**super()._group_fallbacks(), "fused": None}

    def _group_step(self, group, params, grads):
        keys = ("lr_decay", "weight_decay", "initial_accumulator_value", "eps")
        hyper = {k: group[k] for k in keys}
        for w, g in zip(params, grads, strict=True):
            state = self._init_state(w, group)
            adagrad_update_(w, g, state, lr=_scalar(group["lr"]), **hyper)


# ----------------------------------------------------------------------------------------------
# Adadelta
# ----------------------------------------------------------------------------------------------
def adadelta_update_(
    w: Tensor,
    g: Tensor,
    state: dict,
    *,
    lr: float | Tensor,
    rho: float = 0.9,
    eps: float = 1e-6,
    weight_decay: float = 0.0,
) -> None:
    r"""One Adadelta step of one tensor, in place: the maths of :class:`Adadelta`.

    ``G <- rho G + (1 - rho) g^2``;  ``dW = sqrt(H + eps) / sqrt(G + eps) g``;
    ``H <- rho H + (1 - rho) dW^2``;  ``W <- W - lr dW``.

    Args:
        w, g, state, lr: as :func:`sgd_update_`; ``state`` gets ``step``, ``square_avg`` = G and
            ``acc_delta`` = H on first use.
        rho, eps, weight_decay: as :class:`Adadelta`.

    Raises:
        TypeError/ValueError: as :func:`sgd_update_`; rho outside [0, 1], negative eps or
            weight_decay.

    Source: ``torch.optim.adadelta._single_tensor_adadelta``.
    """
    _check_update(w, g, state, lr)
    if not 0.0 <= rho <= 1.0:
        raise ValueError(f"Invalid rho value: {rho}")
    _check_nonneg("eps", eps, "epsilon")
    _check_nonneg("weight_decay", weight_decay)
    if not state:
        state["step"] = _new_step()
        state["square_avg"] = torch.zeros_like(w, memory_format=torch.preserve_format)
        state["acc_delta"] = torch.zeros_like(w, memory_format=torch.preserve_format)
    state["step"] += 1
    if weight_decay != 0:
        g = g.add(w, alpha=weight_decay)
    G, H = state["square_avg"], state["acc_delta"]
    G.mul_(rho).addcmul_(g, g, value=1 - rho)  # G_t = gamma G + (1 - gamma) g^2
    dw = H.add(eps).sqrt_().div_(G.add(eps).sqrt_()).mul_(g)  # sqrt(H+eps)/sqrt(G+eps) g
    H.mul_(rho).addcmul_(dw, dw, value=1 - rho)  # H_t = gamma H + (1 - gamma) dW^2
    if isinstance(lr, Tensor):
        w.sub_(lr * dw)  # one lr per stacked model
    else:
        w.add_(dw, alpha=-lr)


class Adadelta(_FromScratch):
    r"""Adadelta: Adagrad with a leaky accumulator and "units-correct" steps.

    Notes (O-questions in docs/questions.md), with ``gamma`` = ``rho``:

    * ``G_t = gamma G_{t-1} + (1 - gamma) g_t^2``          (EMA of squared gradients)
    * ``dW_t = sqrt(H_{t-1} + eps) / sqrt(G_t + eps) g_t``
    * ``H_t = gamma H_{t-1} + (1 - gamma) dW_t^2``          (EMA of squared updates)
    * ``W_{t+1} = W_t - lr dW_t``

    The numerator ``sqrt(H + eps)`` has the units of W, so the step needs no learning rate (Zeiler
    2012, arXiv:1212.5701); torch (``torch.optim.Adadelta``, ``_single_tensor_adadelta``) still
    multiplies by ``lr`` (default 1.0, which is the paper's method). Both put eps inside the root.

    Args:
        params: iterable of tensors or param-group dicts.
        lr: >= 0 (default 1.0). rho: gamma in [0, 1] (default 0.9). eps: >= 0 (default 1e-6).
        weight_decay: L2 coefficient >= 0 (default 0).
        foreach, capturable, differentiable: accepted for compatibility; must stay off.
        maximize: ascend instead of descend.

    State per parameter: ``step`` (0-d float tensor), ``square_avg`` = G, ``acc_delta`` = H.

    Raises:
        ValueError: lr < 0, rho outside [0, 1], eps < 0, weight_decay < 0.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float | Tensor = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0,
        foreach: bool | None = None,
        *,
        capturable: bool = False,
        maximize: bool = False,
        differentiable: bool = False,
    ) -> None:
        _check_lr(lr)
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"Invalid rho value: {rho}")
        _check_nonneg("eps", eps, "epsilon")
        _check_nonneg("weight_decay", weight_decay)
        _check_single_tensor_only(
            foreach=foreach, capturable=capturable, differentiable=differentiable
        )
        defaults = dict(
            lr=lr,
            rho=rho,
            eps=eps,
            weight_decay=weight_decay,
            maximize=maximize,
            capturable=capturable,
            foreach=foreach,
            differentiable=differentiable,
        )
        super().__init__(params, defaults)

    def _group_fallbacks(self) -> dict:
        return {**super()._group_fallbacks(), "capturable": False}

    def _group_step(self, group, params, grads):
        hyper = {k: group[k] for k in ("rho", "eps", "weight_decay")}
        for w, g in zip(params, grads, strict=True):
            adadelta_update_(w, g, self.state[w], lr=_scalar(group["lr"]), **hyper)


# ----------------------------------------------------------------------------------------------
# RMSprop
# ----------------------------------------------------------------------------------------------
def rmsprop_update_(
    w: Tensor,
    g: Tensor,
    state: dict,
    *,
    lr: float | Tensor,
    alpha: float = 0.99,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    centered: bool = False,
) -> None:
    r"""One RMSprop step of one tensor, in place: the maths of :class:`RMSprop`.

    ``G <- alpha G + (1 - alpha) g^2``;  ``W <- W - eta g / (sqrt(G) + eps)``; centered:
    ``sqrt(G - gbar^2)``; momentum mu > 0: ``b <- mu b + g / (sqrt(G) + eps)``, ``W <- W - eta b``.

    Args:
        w, g, state, lr: as :func:`sgd_update_`; ``state`` gets ``step``, ``square_avg`` = G,
            ``momentum_buffer`` (momentum > 0) and ``grad_avg`` = gbar (centered) on first use.
        alpha, eps, weight_decay, momentum, centered: as :class:`RMSprop`.

    Raises:
        TypeError/ValueError: as :func:`sgd_update_`; negative alpha, eps, weight_decay or
            momentum.

    Source: ``torch.optim.rmsprop._single_tensor_rmsprop``.
    """
    _check_update(w, g, state, lr)
    _check_nonneg("eps", eps, "epsilon")
    _check_nonneg("momentum", momentum)
    _check_nonneg("weight_decay", weight_decay)
    _check_nonneg("alpha", alpha)
    if not state:
        state["step"] = _new_step()
        state["square_avg"] = torch.zeros_like(w, memory_format=torch.preserve_format)
        if momentum > 0:
            state["momentum_buffer"] = torch.zeros_like(w, memory_format=torch.preserve_format)
        if centered:
            state["grad_avg"] = torch.zeros_like(w, memory_format=torch.preserve_format)
    state["step"] += 1
    if weight_decay != 0:
        g = g.add(w, alpha=weight_decay)
    G = state["square_avg"]
    G.mul_(alpha).addcmul_(g, g, value=1 - alpha)  # G_t = gamma G + (1 - gamma) g^2
    if centered:
        gbar = state["grad_avg"]
        gbar.mul_(alpha).add_(g, alpha=1 - alpha)  # gbar_t = gamma gbar + (1 - gamma) g
        denom = G.addcmul(gbar, gbar, value=-1).sqrt_()  # sqrt(G - gbar^2)
    else:
        denom = G.sqrt()
    denom.add_(eps)  # torch: sqrt(G) + eps   (notes: sqrt(G + eps))
    if momentum > 0:
        b = state["momentum_buffer"]
        b.mul_(momentum).addcdiv_(g, denom)  # b <- mu b + g / (sqrt(G) + eps)
        if isinstance(lr, Tensor):
            w.sub_(lr * b)  # one lr per stacked model
        else:
            w.add_(b, alpha=-lr)
    elif isinstance(lr, Tensor):
        w.sub_(lr * (g / denom))
    else:
        w.addcdiv_(g, denom, value=-lr)  # W <- W - eta g / (sqrt(G) + eps)


class RMSprop(_FromScratch):
    r"""RMSprop: divide the gradient by a running RMS of recent gradients.

    Notes (O-questions in docs/questions.md):  ``G_t = gamma G_{t-1} + (1 - gamma) g_t^2``;
    ``W_{t+1} = W_t - eta / sqrt(G_t + eps) g_t``  (Tieleman & Hinton 2012, Coursera lecture 6e).

    Torch (``torch.optim.RMSprop``, ``_single_tensor_rmsprop``), which we implement, calls gamma
    ``alpha`` and adds eps OUTSIDE the root, ``eta g / (sqrt(G) + eps)``. Options:

    * ``centered``: subtract the squared running mean ``gbar_t = alpha gbar + (1 - alpha) g``, i.e.
      divide by an estimate of the gradient's standard deviation, ``sqrt(G - gbar^2) + eps``
      (Graves 2013, arXiv:1308.0850, eq. 38-41).
    * ``momentum`` > 0: heavy ball on the normalised gradient, ``b <- mu b + g / (sqrt(G) +
      eps)``; ``W <- W - eta b``.

    Args:
        params: iterable of tensors or param-group dicts.
        lr: eta >= 0 (default 1e-2). alpha: gamma >= 0 (default 0.99). eps: >= 0 (default 1e-8).
        weight_decay: L2 coefficient >= 0 (default 0). momentum: mu >= 0 (default 0).
        centered: see above (default False).
        capturable, foreach, differentiable: accepted for compatibility; must stay off.
        maximize: ascend instead of descend.

    State per parameter: ``step``, ``square_avg`` = G, ``momentum_buffer`` (momentum > 0),
    ``grad_avg`` = gbar (centered).

    Raises:
        ValueError: a negative lr, eps, momentum, weight_decay or alpha.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float | Tensor = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
    ) -> None:
        _check_lr(lr)
        _check_nonneg("eps", eps, "epsilon")
        _check_nonneg("momentum", momentum)
        _check_nonneg("weight_decay", weight_decay)
        _check_nonneg("alpha", alpha)
        _check_single_tensor_only(
            capturable=capturable, foreach=foreach, differentiable=differentiable
        )
        defaults = dict(
            lr=lr,
            momentum=momentum,
            alpha=alpha,
            eps=eps,
            centered=centered,
            weight_decay=weight_decay,
            capturable=capturable,
            foreach=foreach,
            maximize=maximize,
            differentiable=differentiable,
        )
        super().__init__(params, defaults)

    def _group_fallbacks(self) -> dict:
        return {**super()._group_fallbacks(), "momentum": 0, "centered": False, "capturable": False}

    def _group_step(self, group, params, grads):
        keys = ("alpha", "eps", "weight_decay", "momentum", "centered")
        hyper = {k: group[k] for k in keys}
        for w, g in zip(params, grads, strict=True):
            rmsprop_update_(w, g, self.state[w], lr=_scalar(group["lr"]), **hyper)


# ----------------------------------------------------------------------------------------------
# Adam / AdamW
# ----------------------------------------------------------------------------------------------
def adam_step_size(
    lr: float, betas: tuple[float, float], step: int, form: str = "pytorch"
) -> float:
    r"""The scalar that multiplies ``m_t`` in Adam's update at step ``t`` (pure function).

    * ``form="notes"``:  ``lr sqrt(1 - beta2^t) / (1 - beta1^t)`` -- the notes fold BOTH bias
      corrections into the step size and divide ``m_t`` by ``sqrt(v_t + eps)``.
    * ``form="pytorch"``: ``lr / (1 - beta1^t)`` -- torch folds only the first-moment correction
      into the step size and divides ``m_t`` by ``sqrt(v_t) / sqrt(1 - beta2^t) + eps``.

    Args:
        lr: learning rate >= 0. betas: (beta1, beta2) in [0, 1). step: t >= 1 (int).
        form: ``"pytorch"`` or ``"notes"``.

    Returns:
        Python float.

    Raises:
        ValueError: step < 1, bad form, lr or betas out of range.

    Source: Kingma & Ba 2015, arXiv:1412.6980, Algorithm 1 and the "efficient version" in
    Section 2 (which is the notes' form, with eps-hat placed differently).
    """
    _check_lr(lr)
    b1, b2 = _check_betas(tuple(float(b) for b in betas))
    if form not in ADAM_FORMS:
        raise ValueError(f"Invalid form value: {form!r} (expected one of {ADAM_FORMS})")
    if not isinstance(step, int) or step < 1:
        raise ValueError(f"Invalid step value: {step} (expected an int >= 1)")
    bc1 = 1 - b1**step
    return lr * math.sqrt(1 - b2**step) / bc1 if form == "notes" else lr / bc1


def adam_update(
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    step: int,
    *,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    form: str = "pytorch",
) -> Tensor:
    r"""Adam's update ``W_t - W_{t+1}`` from given moments, in either form (pure function).

    * ``"pytorch"``: ``lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``
      (= ``lr m_hat / (sqrt(v_hat) + eps)``)
    * ``"notes"``:   ``lr sqrt(1 - b2^t) / (1 - b1^t) * m / sqrt(v + eps)``

    Rewriting the pytorch form as ``lr sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps sqrt(1-b2^t))``
    shows the only difference: where eps enters. The two agree when ``eps << v`` (notes) and
    ``eps << sqrt(v_hat)`` (pytorch), and differ once ``sqrt(v)`` is comparable to ``sqrt(eps)``
    (notes) or ``eps`` (pytorch). When eps dominates, both become momentum SGD: the pytorch form
    with rate ``lr / eps`` on ``m_hat``, the notes form with ``lr sqrt(1-b2^t) / sqrt(eps)``.

    Args:
        exp_avg: m_t, any shape, floating dtype. exp_avg_sq: v_t, same shape, >= 0.
        step: t >= 1 (int). lr, betas, eps, form: as :class:`Adam`.

    Returns:
        tensor of m's shape and dtype (a new tensor; inputs are not modified).

    Raises:
        ValueError: shape mismatch, eps < 0, bad form/step/lr/betas.
    """
    if exp_avg.shape != exp_avg_sq.shape:
        raise ValueError(
            f"exp_avg and exp_avg_sq must have the same shape, got "
            f"{tuple(exp_avg.shape)} and {tuple(exp_avg_sq.shape)}"
        )
    _check_nonneg("eps", eps, "epsilon")
    size = adam_step_size(lr, betas, step, form)
    if form == "notes":
        return size * exp_avg / (exp_avg_sq + eps).sqrt()
    bc2 = 1 - float(betas[1]) ** step
    return size * exp_avg / (exp_avg_sq.sqrt() / math.sqrt(bc2) + eps)


def adam_update_(
    w: Tensor,
    g: Tensor,
    state: dict,
    *,
    lr: float | Tensor,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    amsgrad: bool = False,
    decoupled_weight_decay: bool = False,
    form: str = "pytorch",
) -> None:
    r"""One Adam (or AdamW) step of one tensor, in place: the maths of :class:`Adam`.

    ``m <- b1 m + (1 - b1) g``;  ``v <- b2 v + (1 - b2) g^2``;  then the update of ``form`` (see
    :func:`adam_update`). ``decoupled_weight_decay=True`` is AdamW: ``W <- W (1 - eta lambda)``
    first, instead of adding ``lambda W`` to g.

    Args:
        w, g, state, lr: as :func:`sgd_update_`; ``state`` gets ``step`` (0-d float tensor, the
            shared step count t), ``exp_avg`` = m, ``exp_avg_sq`` = v and ``max_exp_avg_sq``
            (amsgrad) on first use.
        betas, eps, weight_decay, amsgrad, decoupled_weight_decay, form: as :class:`Adam`
            (betas a pair of floats).

    Raises:
        TypeError/ValueError: as :func:`sgd_update_`; a beta outside [0, 1), negative eps or
            weight_decay, an unknown form.

    Source: ``torch.optim.adam._single_tensor_adam`` (Kingma & Ba 2015, arXiv:1412.6980;
    AdamW: Loshchilov & Hutter 2019, arXiv:1711.05101).
    """
    _check_update(w, g, state, lr)
    _check_beta_range(betas)
    _check_nonneg("eps", eps, "epsilon")
    _check_nonneg("weight_decay", weight_decay)
    if form not in ADAM_FORMS:
        raise ValueError(f"Invalid form value: {form!r} (expected one of {ADAM_FORMS})")
    b1, b2 = betas
    if not state:
        state["step"] = _new_step()
        state["exp_avg"] = torch.zeros_like(w, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(w, memory_format=torch.preserve_format)
        if amsgrad:
            state["max_exp_avg_sq"] = torch.zeros_like(w, memory_format=torch.preserve_format)
    state["step"] += 1
    t = state["step"].item()
    if weight_decay != 0:
        if decoupled_weight_decay:
            w.mul_(1 - lr * weight_decay)  # AdamW: W <- W (1 - eta lambda)
        else:
            g = g.add(w, alpha=weight_decay)  # L2 penalty inside the moments
    m, v = state["exp_avg"], state["exp_avg_sq"]
    m.mul_(b1).add_(g, alpha=1 - b1)  # m_t = beta1 m + (1 - beta1) g
    v.mul_(b2).addcmul_(g, g, value=1 - b2)  # v_t = beta2 v + (1 - beta2) g^2
    if amsgrad:
        v = torch.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
    bc1, bc2 = 1 - b1**t, 1 - b2**t
    if form == "notes":
        # W <- W - eta sqrt(1 - b2^t)/(1 - b1^t) * m / sqrt(v + eps)
        denom = v.add(eps).sqrt_()
        if isinstance(lr, Tensor):
            w.sub_(lr * (math.sqrt(bc2) / bc1) * (m / denom))  # one lr per stacked model
        else:
            w.addcdiv_(m, denom, value=-lr * math.sqrt(bc2) / bc1)
    else:
        # W <- W - eta/(1 - b1^t) * m / (sqrt(v)/sqrt(1 - b2^t) + eps)
        denom = v.sqrt().div_(math.sqrt(bc2)).add_(eps)
        if isinstance(lr, Tensor):
            w.sub_(lr / bc1 * (m / denom))  # one lr per stacked model
        else:
            w.addcdiv_(m, denom, value=-lr / bc1)


class Adam(_FromScratch):
    r"""Adam (with AMSGrad and decoupled weight decay options) and the notes' own form.

    Notes (O-questions in docs/questions.md):

    * ``m_t = beta1 m_{t-1} + (1 - beta1) g_t``        (momentum)
    * ``v_t = beta2 v_{t-1} + (1 - beta2) g_t^2``      (EMA of squared gradients)
    * ``W_{t+1} = W_t - eta / sqrt(v_t + eps) * sqrt(1 - beta2^t) / (1 - beta1^t) * m_t``

    ``form="notes"`` runs exactly that. ``form="pytorch"`` (default) runs
    ``torch.optim.Adam`` (``_single_tensor_adam``): ``W <- W - eta m_hat / (sqrt(v_hat) + eps)``
    with ``m_hat = m / (1 - beta1^t)``, ``v_hat = v / (1 - beta2^t)`` -- eps OUTSIDE the root and
    applied after the bias correction (Kingma & Ba 2015, arXiv:1412.6980, Algorithm 1). See
    :func:`adam_update` for when the two differ.

    * ``amsgrad``: normalise by the running maximum ``v_max = max(v_max, v_t)`` instead of v_t
      (Reddi, Kale & Kumar 2018, arXiv:1904.09237); applies to both forms.
    * ``decoupled_weight_decay``: ``W <- W (1 - eta lambda)`` before the step instead of the L2
      gradient term; this is AdamW (Loshchilov & Hutter 2019, arXiv:1711.05101).

    Args:
        params: iterable of tensors or param-group dicts.
        lr: eta >= 0 (default 1e-3).
        betas: (beta1, beta2), each in [0, 1), both floats or both 1-element tensors
            (default (0.9, 0.999)).
        eps: >= 0 (default 1e-8).
        weight_decay: lambda >= 0 (default 0). amsgrad: default False.
        foreach, capturable, differentiable, fused: accepted for compatibility; must stay off.
        maximize: ascend instead of descend. decoupled_weight_decay: default False.
        form: ``"pytorch"`` (default) or ``"notes"`` (keyword only; not in torch).

    State per parameter: ``step`` (0-d float tensor), ``exp_avg`` = m, ``exp_avg_sq`` = v,
    ``max_exp_avg_sq`` (amsgrad).

    Raises:
        ValueError: lr < 0, eps < 0, a beta outside [0, 1), weight_decay < 0, unknown form, or a
            torch-only switch turned on.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        decoupled_weight_decay: bool = False,
        form: str = "pytorch",
    ) -> None:
        _check_lr(lr)
        _check_nonneg("eps", eps, "epsilon")
        _check_beta_range(betas)  # before weight_decay, in torch's order of checks
        _check_nonneg("weight_decay", weight_decay)
        betas = _check_betas(betas)
        if form not in ADAM_FORMS:
            raise ValueError(f"Invalid form value: {form!r} (expected one of {ADAM_FORMS})")
        _check_single_tensor_only(
            foreach=foreach, capturable=capturable, differentiable=differentiable, fused=fused
        )
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
            foreach=foreach,
            capturable=capturable,
            differentiable=differentiable,
            fused=fused,
            decoupled_weight_decay=decoupled_weight_decay,
            form=form,
        )
        super().__init__(params, defaults)

    def _group_fallbacks(self) -> dict:
        return {
            **super()._group_fallbacks(),
            "amsgrad": False,
            "capturable": False,
            "fused": None,
            "decoupled_weight_decay": False,
            "form": "pytorch",
        }

    def _group_step(self, group, params, grads):
        keys = ("betas", "eps", "weight_decay", "amsgrad", "decoupled_weight_decay", "form")
        hyper = {k: group[k] for k in keys}
        for w, g in zip(params, grads, strict=True):
            adam_update_(w, g, self.state[w], lr=_scalar(group["lr"]), **hyper)


class AdamW(Adam):
    r"""AdamW: Adam with decoupled weight decay (Loshchilov & Hutter 2019, arXiv:1711.05101).

    ``W <- W (1 - eta lambda)``, then the Adam step of :class:`Adam` on the raw gradient (the
    decay never enters m or v, so it is not rescaled by the adaptive denominator). Reference:
    ``torch.optim.AdamW`` (= ``torch.optim.Adam(decoupled_weight_decay=True)``). Same arguments
    as :class:`Adam` except the default ``weight_decay=1e-2`` and no ``decoupled_weight_decay``
    (always True); ``form`` works as in Adam.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        form: str = "pytorch",
    ) -> None:
        super().__init__(
            params,
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
            foreach=foreach,
            maximize=maximize,
            capturable=capturable,
            differentiable=differentiable,
            fused=fused,
            decoupled_weight_decay=True,
            form=form,
        )

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        for group in self.param_groups:  # as torch: loading never turns AdamW into Adam
            group["decoupled_weight_decay"] = True


# ----------------------------------------------------------------------------------------------
# RAdam
# ----------------------------------------------------------------------------------------------
def radam_update_(
    w: Tensor,
    g: Tensor,
    state: dict,
    *,
    lr: float | Tensor,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
) -> None:
    r"""One RAdam step of one tensor, in place: the maths of :class:`RAdam`.

    Adam's moments; while ``rho_t <= 5`` the un-adapted momentum step ``W <- W - eta m_hat``,
    afterwards Adam's step times the rectification ``r_t`` (see :class:`RAdam`).

    Args:
        w, g, state, lr: as :func:`sgd_update_`; ``state`` gets ``step``, ``exp_avg`` = m and
            ``exp_avg_sq`` = v on first use.
        betas, eps, weight_decay, decoupled_weight_decay: as :class:`RAdam`.

    Raises:
        TypeError/ValueError: as :func:`sgd_update_`; a beta outside [0, 1), negative eps or
            weight_decay.

    Source: ``torch.optim.radam._single_tensor_radam`` (Liu et al. 2020, arXiv:1908.03265).
    """
    _check_update(w, g, state, lr)
    _check_beta_range(betas)
    _check_nonneg("eps", eps, "epsilon")
    _check_nonneg("weight_decay", weight_decay)
    b1, b2 = betas
    rho_inf = 2 / (1 - b2) - 1
    if not state:
        state["step"] = _new_step()
        state["exp_avg"] = torch.zeros_like(w, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(w, memory_format=torch.preserve_format)
    state["step"] += 1
    t = state["step"].item()
    if weight_decay != 0:
        if decoupled_weight_decay:
            w.mul_(1 - lr * weight_decay)
        else:
            g = g.add(w, alpha=weight_decay)
    m, v = state["exp_avg"], state["exp_avg_sq"]
    m.mul_(b1).add_(g, alpha=1 - b1)  # m_t = beta1 m + (1 - beta1) g
    v.mul_(b2).addcmul_(g, g, value=1 - b2)  # v_t = beta2 v + (1 - beta2) g^2
    bc1, bc2 = 1 - b1**t, 1 - b2**t
    rho_t = rho_inf - 2 * t * b2**t / bc2  # length of the approximated SMA
    if rho_t > 5.0:
        r_t = math.sqrt(
            (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
        )
        denom = v.sqrt().add_(eps)
        # W <- W - eta r_t (m / (1 - b1^t)) sqrt(1 - b2^t) / (sqrt(v) + eps)
        if isinstance(lr, Tensor):
            w.sub_(lr * (r_t * math.sqrt(bc2) / bc1) * (m / denom))  # one lr per stacked model
        else:
            w.addcdiv_(m, denom, value=-lr * r_t * math.sqrt(bc2) / bc1)
    elif isinstance(lr, Tensor):
        w.sub_(lr / bc1 * m)
    else:
        w.add_(m, alpha=-lr / bc1)  # un-adapted momentum step: W <- W - eta m_hat


class RAdam(_FromScratch):
    r"""Rectified Adam (Liu et al. 2020, "On the Variance of the Adaptive Learning Rate and
    Beyond", arXiv:1908.03265, Algorithm 2).

    In the first steps ``v_t`` averages few squared gradients, so the adaptive rate
    ``1/sqrt(v_hat)`` has a large (even unbounded) variance. RAdam tracks the length of the
    approximated simple moving average

    * ``rho_inf = 2 / (1 - beta2) - 1``;   ``rho_t = rho_inf - 2 t beta2^t / (1 - beta2^t)``

    and, while ``rho_t <= 5``, takes a plain momentum step ``W <- W - eta m_hat``; afterwards it
    multiplies Adam's step by the variance rectification term

    * ``r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))``
    * ``W <- W - eta r_t m_hat sqrt(1 - beta2^t) / (sqrt(v_t) + eps)``.

    The paper's threshold is ``rho_t > 4``; torch (``torch.optim.RAdam``, ``_single_tensor_radam``)
    and the authors' code use 5, and so do we. eps is added to ``sqrt(v_t)`` before the bias
    correction ``sqrt(1 - beta2^t)`` multiplies (torch's placement; Adam adds it after).
    ``decoupled_weight_decay`` as in :class:`Adam`.

    Args:
        params: iterable of tensors or param-group dicts.
        lr: eta >= 0 (default 1e-3). betas: each in [0, 1) (default (0.9, 0.999)).
        eps: >= 0 (default 1e-8). weight_decay: >= 0 (default 0).
        decoupled_weight_decay: default False.
        foreach, capturable, differentiable: accepted for compatibility; must stay off.
        maximize: ascend instead of descend.

    State per parameter: ``step``, ``exp_avg`` = m, ``exp_avg_sq`` = v.

    Raises:
        ValueError: lr < 0, eps < 0, a beta outside [0, 1), weight_decay < 0.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        decoupled_weight_decay: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
    ) -> None:
        _check_lr(lr)
        _check_nonneg("eps", eps, "epsilon")
        _check_beta_range(betas)
        _check_nonneg("weight_decay", weight_decay)
        _check_single_tensor_only(
            foreach=foreach, capturable=capturable, differentiable=differentiable
        )
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            maximize=maximize,
            foreach=foreach,
            capturable=capturable,
            decoupled_weight_decay=decoupled_weight_decay,
            differentiable=differentiable,
        )
        super().__init__(params, defaults)

    def _group_fallbacks(self) -> dict:
        return {**super()._group_fallbacks(), "decoupled_weight_decay": False, "capturable": False}

    def _group_step(self, group, params, grads):
        hyper = {k: group[k] for k in ("betas", "eps", "weight_decay", "decoupled_weight_decay")}
        for w, g in zip(params, grads, strict=True):
            radam_update_(w, g, self.state[w], lr=_scalar(group["lr"]), **hyper)


# ----------------------------------------------------------------------------------------------
# AdamP
# ----------------------------------------------------------------------------------------------
def adamp_projection(
    weight: Tensor, grad: Tensor, update: Tensor, delta: float, wd_ratio: float, eps: float
) -> tuple[Tensor, float]:
    r"""AdamP's projection: drop the radial component of ``update`` for scale-invariant weights.

    A weight followed by a normalisation layer is scale-invariant, ``L(c W) = L(W)``, so its
    gradient is orthogonal to W. AdamP detects this when the gradient is nearly orthogonal to W,
    ``max |cos(g_i, W_i)| < delta / sqrt(dim W_i)``, first per output channel (``i`` indexes
    ``W.shape[0]``; rows flattened), then for the whole tensor; if so it removes the component
    of the update along ``W_i / (||W_i|| + eps)`` and scales the weight decay by ``wd_ratio``
    (Heo et al. 2021, arXiv:2006.08217, Algorithm 1 and eq. 12; code: ``adamp.AdamP._projection``,
    which uses ``F.cosine_similarity`` with the same eps, as we do).

    Args:
        weight: W, at least 2-D, floating dtype. grad: g, same shape. update: the Adam direction
            (same shape); not modified.
        delta: cosine threshold (> 0, default in AdamP 0.1). wd_ratio: decay factor if projected.
        eps: numerical guard (AdamP passes its Adam eps).

    Returns:
        (projected update or the same ``update`` object, the weight-decay factor: ``wd_ratio`` if
        projected else 1.0).

    Raises:
        ValueError: if ``weight`` has fewer than 2 dimensions or shapes differ.
    """
    if weight.dim() < 2:
        raise ValueError(f"weight must have >= 2 dimensions, got shape {tuple(weight.shape)}")
    if grad.shape != weight.shape or update.shape != weight.shape:
        raise ValueError("weight, grad and update must have the same shape")
    expand = [-1] + [1] * (weight.dim() - 1)
    for rows in (weight.shape[0], 1):  # channel view, then layer view
        w2, g2 = weight.reshape(rows, -1), grad.reshape(rows, -1)
        cos = F.cosine_similarity(g2, w2, dim=1, eps=eps).abs_()
        if cos.max() < delta / math.sqrt(w2.shape[1]):
            w_unit = weight / w2.norm(dim=1).view(expand).add_(eps)
            radial = (w_unit * update).reshape(rows, -1).sum(dim=1).view(expand)
            return update - w_unit * radial, wd_ratio
    return update, 1.0


class AdamP(_FromScratch):
    r"""AdamP: Adam whose updates of scale-invariant weights stay tangent to the weight sphere
    (Heo et al. 2021, "AdamP: Slowing Down the Slowdown for Momentum Optimizers on
    Scale-invariant Weights", ICLR, arXiv:2006.08217).

    With momentum, updates of a scale-invariant weight (one followed by BatchNorm/LayerNorm)
    carry a radial component that inflates ``||W||`` quickly and thereby shrinks the effective
    step ``eta / ||W||^2``. AdamP takes the Adam direction

    * ``m_t``, ``v_t`` as :class:`Adam`;  ``p_t = m_t / (sqrt(v_t)/sqrt(1 - b2^t) + eps)``
      (Nesterov: ``p_t = (b1 m_t + (1 - b1) g_t) / (...)``)

    and, for parameters with >= 2 dims that look scale-invariant, removes its radial part with
    :func:`adamp_projection` and multiplies the decoupled weight decay by ``wd_ratio``:

    * ``W <- W (1 - eta lambda wd_ratio)``;  ``W <- W - eta / (1 - b1^t) p_t``.

    Reference: ``adamp.AdamP`` 0.3.0 (clovaai), same arguments and defaults and state keys
    (``step`` is a Python int there and here). The reference validates no argument; we raise
    ``ValueError`` like ``torch.optim.Adam`` (and for delta < 0, wd_ratio < 0). AdamP has no
    ``maximize``.

    Args:
        params: iterable of tensors or param-group dicts.
        lr: eta >= 0 (default 1e-3). betas: each in [0, 1) (default (0.9, 0.999)).
        eps: >= 0 (default 1e-8). weight_decay: lambda >= 0, decoupled (default 0).
        delta: cosine threshold >= 0 (default 0.1). wd_ratio: >= 0 (default 0.1).
        nesterov: default False.

    State per parameter: ``step`` (int), ``exp_avg``, ``exp_avg_sq``.

    Raises:
        ValueError: lr < 0, eps < 0, a beta outside [0, 1), weight_decay/delta/wd_ratio < 0.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        delta: float = 0.1,
        wd_ratio: float = 0.1,
        nesterov: bool = False,
    ) -> None:
        _check_lr(lr)
        _check_nonneg("eps", eps, "epsilon")
        _check_beta_range(betas)
        _check_nonneg("weight_decay", weight_decay)
        _check_nonneg("delta", delta)
        _check_nonneg("wd_ratio", wd_ratio)
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            delta=delta,
            wd_ratio=wd_ratio,
            nesterov=nesterov,
        )
        super().__init__(params, defaults)

    def _group_fallbacks(self) -> dict:
        return {}

    def _group_step(self, group, params, grads):
        lr, (b1, b2), eps = _scalar(group["lr"]), group["betas"], group["eps"]
        wd, nesterov = group["weight_decay"], group["nesterov"]
        for w, g in zip(params, grads, strict=True):
            state = self.state[w]
            if not state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(w)
                state["exp_avg_sq"] = torch.zeros_like(w)
            state["step"] += 1
            t = state["step"]
            m, v = state["exp_avg"], state["exp_avg_sq"]
            m.mul_(b1).add_(g, alpha=1 - b1)  # m_t = beta1 m + (1 - beta1) g
            v.mul_(b2).addcmul_(g, g, value=1 - b2)  # v_t = beta2 v + (1 - beta2) g^2
            bc1, bc2 = 1 - b1**t, 1 - b2**t
            denom = v.sqrt().div_(math.sqrt(bc2)).add_(eps)  # sqrt(v_hat) + eps
            if nesterov:
                update = (m * b1).add_(g, alpha=1 - b1).div_(denom)
            else:
                update = m / denom
            ratio = 1.0
            if w.dim() > 1:  # the projection uses W before the decay below
                update, ratio = adamp_projection(
                    w, g, update, group["delta"], group["wd_ratio"], eps
                )
            if wd > 0:
                w.mul_(1 - lr * wd * ratio)  # decoupled decay, weakened on projected weights
            w.add_(update, alpha=-lr / bc1)
