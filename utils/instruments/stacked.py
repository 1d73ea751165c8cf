"""Train many models at once: stacked parameters, ``torch.func.vmap`` over ``functional_call``.

M copies of one architecture (different seeds, learning rates or data orders) are stored as
one dict of stacked tensors ``{name: [M, *shape]}``; the loss gradient of all M models is one
vectorised call, and the optimizer update is written functionally on the stacked tensors with
a per-model learning rate ``lr: [M]``. On a CPU, small models are dominated by per-call Python
and dispatch overhead, so this is many times faster than a loop over M models (see
``utils/bench/sweep.py``). The updates follow torch.optim's formulas exactly (SGD with
momentum/dampening/Nesterov/weight decay, Adam, AdamW, RMSprop), so a stacked run equals M
separate ``torch.optim`` runs with the same initialisation and data order (tests/test_sweep.py).

Typical use::

    base, params = sweep.init_stack(lambda: models.MLP(64, [32], 10), seeds)
    tr = sweep.StackedTrainer(base, params, optimizer="sgd", lr=torch.logspace(-3, 0, M))
    hist = sweep.fit_stacked(tr, x, y, epochs=5, batch_size=64, seeds=seeds)

Models with buffers (BatchNorm running statistics) are not supported: their in-place buffer
updates cannot be vmapped. Source: ``torch.func.stack_module_state`` / ``vmap`` /
``functional_call`` ("model ensembling" tutorial of torch.func).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value, stack_module_state, vmap

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def stack_models(models: Sequence[nn.Module]) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """Stack the parameters of same-architecture models.

    Args:
        models: M >= 1 modules with identical parameter names/shapes and no buffers.

    Returns:
        (base, params): ``base`` is a copy of ``models[0]`` on the meta device (architecture
        only); ``params`` maps name -> tensor [M, *shape] (detached copies, same dtype/device).

    Raises:
        ValueError: empty list, models with buffers, or mismatching parameter shapes.
    """
    models = list(models)
    if not models:
        raise ValueError("models must be a non-empty sequence of nn.Module")
    if any(not isinstance(m, nn.Module) for m in models):
        raise TypeError("models must all be nn.Module instances")
    if any(True for _ in models[0].buffers()):
        raise ValueError("models with buffers (e.g. BatchNorm running stats) are not supported")
    shapes = [[(n, p.shape) for n, p in m.named_parameters()] for m in models]
    if any(s != shapes[0] for s in shapes):
        raise ValueError("all models must have the same parameter names and shapes")
    params, _ = stack_module_state(models)
    params = {k: v.detach().clone() for k, v in params.items()}
    base = copy.deepcopy(models[0]).to("meta")
    return base, params


def init_stack(
    make_model: Callable[[], nn.Module], seeds: Sequence[int]
) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """Build ``len(seeds)`` models, model i after ``torch.manual_seed(seeds[i])``, and stack
    them (see :func:`stack_models`). Model i equals ``make_model()`` built under that seed."""
    if len(seeds) < 1:
        raise ValueError("seeds must be a non-empty sequence of ints")
    models = []
    for s in seeds:
        torch.manual_seed(int(s))
        models.append(make_model())
    return stack_models(models)


def unstack(params: dict[str, torch.Tensor], i: int) -> dict[str, torch.Tensor]:
    """Parameters of model ``i`` as a state dict (views into the stack)."""
    return {k: v[i] for k, v in params.items()}


def to_module(
    base: nn.Module, params: dict[str, torch.Tensor], i: int, *, like: nn.Module | None = None
) -> nn.Module:
    """A real ``nn.Module`` holding a copy of model ``i`` (e.g. for Hessian tools).

    Args:
        base: architecture from :func:`stack_models` (meta device) or any instance.
        like: optional instance to load into (otherwise ``base`` is copied to the params'
            device with ``to_empty``).
    """
    n = next(iter(params.values())).shape[0]
    if not 0 <= i < n:
        raise ValueError(f"i must be in [0, {n}), got {i}")
    dev = next(iter(params.values())).device
    model = like if like is not None else copy.deepcopy(base).to_empty(device=dev)
    model.load_state_dict({k: v.detach().clone() for k, v in unstack(params, i).items()})
    return model


def batch_indices(
    n: int, batch_size: int, seeds: Sequence[int], epochs: int
) -> Iterator[torch.Tensor]:
    """Per-model mini-batch indices, each model shuffling with its own seed.

    Model i's order in every epoch is ``torch.randperm(n, generator=g_i)`` with ``g_i`` seeded
    once with ``seeds[i]``: the same order :func:`utils.train.fit` uses with ``seed=seeds[i]``.
    The last batch of an epoch may be smaller (not dropped), as in ``fit``.

    Yields:
        int64 tensors [M, b] (b = batch_size except possibly the last batch of an epoch).
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an int >= 1, got {epochs!r}")
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    for _ in range(epochs):
        orders = torch.stack([torch.randperm(n, generator=g) for g in gens])
        for i in range(0, n, batch_size):
            yield orders[:, i : i + batch_size]


class StackedTrainer:
    """M models trained in lock-step by one vmapped gradient call and a functional optimizer.

    Args:
        base: architecture (from :func:`stack_models`).
        params: stacked parameters {name: [M, ...]}; updated in place (``self.params``).
        optimizer: ``"sgd"``, ``"adam"``, ``"adamw"`` or ``"rmsprop"``.
        lr: learning rate per model: float or tensor/sequence [M] (>= 0). May be changed
            between steps (``trainer.lr = ...``), e.g. for schedules or to freeze a model (0).
        momentum, dampening, nesterov: as ``torch.optim.SGD`` (momentum also for RMSprop).
        betas, eps: as ``torch.optim.Adam``/``AdamW``; ``alpha``, ``eps``: as ``RMSprop``.
        weight_decay: L2 added to the gradient (SGD, Adam, RMSprop) or decoupled (AdamW).
        loss_fn: mean-reduced ``loss_fn(output, target)``.

    Raises:
        ValueError/TypeError: unknown optimizer, negative hyperparameters, wrong lr length.

    Source: update rules of torch.optim.SGD/Adam/AdamW/RMSprop (single-tensor path).
    """

    def __init__(
        self,
        base: nn.Module,
        params: dict[str, torch.Tensor],
        *,
        optimizer: str = "sgd",
        lr: float | Sequence[float] | torch.Tensor = 0.01,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        alpha: float = 0.99,
        weight_decay: float | None = None,
        loss_fn: LossFn = F.cross_entropy,
    ):
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
        if not params:
            raise ValueError("params must be a non-empty dict of stacked tensors")
        for name, val in (
            ("momentum", momentum),
            ("dampening", dampening),
            ("eps", eps),
            ("alpha", alpha),
        ):
            if not val >= 0:
                raise ValueError(f"{name} must be >= 0, got {val!r}")
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"betas must be in [0, 1), got {betas!r}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov requires momentum > 0 and dampening = 0")
        if weight_decay is None:
            weight_decay = 0.01 if optimizer == "adamw" else 0.0
        if not weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
        self.base, self.params = base, params
        self.n_models = next(iter(params.values())).shape[0]
        self.optimizer = optimizer
        self.momentum, self.dampening, self.nesterov = momentum, dampening, nesterov
        self.betas, self.eps, self.alpha, self.weight_decay = betas, eps, alpha, weight_decay
        self.loss_fn = loss_fn
        self.lr = lr
        self.t = 0
        self.state: dict[str, dict[str, torch.Tensor]] = {k: {} for k in params}

        def loss_one(p, x, y):
            return self.loss_fn(functional_call(self.base, p, (x,)), y)

        self._loss_one = loss_one
        self._grad_shared = vmap(grad_and_value(loss_one), in_dims=(0, None, None))
        self._grad_per_model = vmap(grad_and_value(loss_one), in_dims=(0, 0, 0))

    @property
    def lr(self) -> torch.Tensor:
        """Per-model learning rates, tensor [M]."""
        return self._lr

    @lr.setter
    def lr(self, value) -> None:
        ref = next(iter(self.params.values()))
        lr = torch.as_tensor(value, dtype=ref.dtype).to(ref.device).flatten()
        if lr.numel() == 1:
            lr = lr.expand(self.n_models).clone()
        if lr.numel() != self.n_models:
            raise ValueError(
                f"lr must be a float or have {self.n_models} entries (one per "
                f"model), got {lr.numel()}"
            )
        if not bool((lr >= 0).all()):
            raise ValueError("lr must be >= 0")
        self._lr = lr

    def _per_model(self, v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return v.view(-1, *([1] * (like.dim() - 1)))

    def grads(
        self, x: torch.Tensor, y: torch.Tensor, *, per_model: bool = False
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Gradients {name: [M, ...]} and losses [M] on a batch (shared, or [M, B, ...] per
        model with ``per_model=True``)."""
        fn = self._grad_per_model if per_model else self._grad_shared
        g, loss = fn(self.params, x, y)
        return g, loss.detach()

    @torch.no_grad()
    def apply(self, grads: dict[str, torch.Tensor]) -> None:
        """One optimizer update of every model from the stacked gradients."""
        self.t += 1
        t = self.t
        b1, b2 = self.betas
        for name, p in self.params.items():
            g = grads[name]
            lr = self._per_model(self._lr, p)
            st = self.state[name]
            if self.optimizer == "adamw":
                p.mul_(1 - lr * self.weight_decay)
            elif self.weight_decay:
                g = g + self.weight_decay * p
            if self.optimizer == "sgd":
                if self.momentum:
                    if "buf" not in st:
                        st["buf"] = g.clone()  # torch.optim.SGD: first buffer = gradient
                    else:
                        st["buf"].mul_(self.momentum).add_(g, alpha=1 - self.dampening)
                    g = g + self.momentum * st["buf"] if self.nesterov else st["buf"]
                p.sub_(lr * g)
            elif self.optimizer in ("adam", "adamw"):
                if "m" not in st:
                    st["m"], st["v"] = torch.zeros_like(p), torch.zeros_like(p)
                st["m"].lerp_(g, 1 - b1)
                st["v"].mul_(b2).addcmul_(g, g, value=1 - b2)
                denom = (st["v"].sqrt() / (1 - b2**t) ** 0.5).add_(self.eps)
                p.sub_(lr / (1 - b1**t) * st["m"] / denom)
            else:  # rmsprop
                if "v" not in st:
                    st["v"] = torch.zeros_like(p)
                st["v"].mul_(self.alpha).addcmul_(g, g, value=1 - self.alpha)
                step = g / (st["v"].sqrt() + self.eps)
                if self.momentum:
                    st["buf"] = (
                        st["buf"].mul_(self.momentum).add_(step) if "buf" in st else step.clone()
                    )
                    step = st["buf"]
                p.sub_(lr * step)

    def step(self, x: torch.Tensor, y: torch.Tensor, *, per_model: bool = False) -> torch.Tensor:
        """Gradient step of all models on a batch; returns the pre-step losses [M].

        Args:
            x, y: one batch shared by all models ([B, ...], [B]) or, with ``per_model=True``,
                one batch per model ([M, B, ...], [M, B]).
        """
        g, loss = self.grads(x, y, per_model=per_model)
        self.apply(g)
        return loss

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs of all models on shared inputs: [M, N, ...]."""
        return vmap(lambda p: functional_call(self.base, p, (x,)))(self.params)

    @torch.no_grad()
    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Loss of every model on shared (x, y): tensor [M]."""
        return vmap(self._loss_one, in_dims=(0, None, None))(self.params, x, y)

    @torch.no_grad()
    def accuracy(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Classification accuracy of every model on shared (x, y): tensor [M] in [0, 1]."""
        return (self.predict(x).argmax(-1) == y).float().mean(-1)


def fit_stacked(
    trainer: StackedTrainer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    seeds: Sequence[int],
    lr_schedule: Callable[[int], torch.Tensor | float] | None = None,
    eval_every: int = 0,
) -> dict[str, np.ndarray]:
    """Mini-batch training of all stacked models, model i shuffling with ``seeds[i]``.

    Args:
        trainer: the :class:`StackedTrainer`.
        x, y: the training set, shared by all models ([N, ...], [N]); use
            ``batch_size=N`` for full-batch gradient descent.
        epochs, batch_size: as in :func:`utils.train.fit`.
        seeds: one data-order seed per model (length M).
        lr_schedule: optional ``step -> lr`` (float or [M]) called before every step
            (step counts from 0).
        eval_every: if > 0, record the full training loss every this many steps.

    Returns:
        dict with ``step_loss`` float array [steps, M] (mini-batch loss before each step) and,
        if ``eval_every``, ``eval_step`` [K] and ``train_loss`` [K, M].
    """
    if len(seeds) != trainer.n_models:
        raise ValueError(
            f"seeds must have one entry per model ({trainer.n_models}), got {len(seeds)}"
        )
    x_dev = next(iter(trainer.params.values())).device
    x, y = x.to(x_dev), y.to(x_dev)
    losses, ev_steps, ev_loss = [], [], []
    per_model = trainer.n_models > 1 and batch_size < x.shape[0]
    for step, idx in enumerate(batch_indices(x.shape[0], batch_size, seeds, epochs)):
        if lr_schedule is not None:
            trainer.lr = lr_schedule(step)
        if per_model:
            losses.append(trainer.step(x[idx], y[idx], per_model=True))
        else:
            losses.append(trainer.step(x[idx[0]], y[idx[0]]))
        if eval_every and (step + 1) % eval_every == 0:
            ev_steps.append(step + 1)
            ev_loss.append(trainer.loss(x, y))
    out = {"step_loss": torch.stack(losses).cpu().numpy()}
    if eval_every:
        out["eval_step"] = np.asarray(ev_steps)
        out["train_loss"] = torch.stack(ev_loss).cpu().numpy() if ev_loss else np.empty((0,))
    return out
