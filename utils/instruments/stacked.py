"""Train many models at once: stacked parameters, ``torch.func.vmap`` over ``functional_call``.

M copies of one architecture (different seeds, learning rates or data orders) are stored as
one dict of stacked tensors ``{name: [M, *shape]}``; the loss gradient of all M models is one
vectorised call, and the optimizer update is the from-scratch update function of
:mod:`utils.scratch.optim` (``sgd_update_``, ``adam_update_``, ...) applied to each stacked
tensor with a per-model learning rate ``lr: [M]`` (broadcast as ``[M, 1, ...]``). So a sweep runs
the very code of ``utils.scratch.optim`` that the notebooks read, and a stacked run equals M
separate runs of the from-scratch class (and of ``torch.optim``) with the same initialisation
and data order, up to floating-point rounding (``tests/test_stacked.py``). On a CPU, small
models are dominated by per-call Python and dispatch overhead, so this is many times faster than
a loop over M models (``utils/tooling/bench/sweep.py``).

Typical use::

    base, params = stacked.init_stack(lambda: models.MLP(64, [32], 10), seeds)
    tr = stacked.StackedTrainer(base, params, optimizer="sgd", lr=torch.logspace(-3, 0, M))
    hist = stacked.fit_stacked(tr, x, y, epochs=5, batch_size=64, seeds=seeds)

:func:`fit_stacked` is the stacked twin of :func:`utils.core.train.fit` (same data order per
seed, same step/epoch budgets, ``evals`` every k steps, ``on_step`` stopping); it is the one
training loop besides ``train.fit``.

Models with buffers (BatchNorm running statistics) are not supported: their in-place buffer
updates cannot be vmapped. Source: ``torch.func.stack_module_state`` / ``vmap`` /
``functional_call`` ("model ensembling" tutorial of torch.func).
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value, stack_module_state, vmap

from ..scratch import optim

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# optimizer name -> (from-scratch class, its per-tensor update function, the hyperparameters
# the function takes). The class validates the hyperparameters and supplies their defaults.
_ADAM_KEYS = ("betas", "eps", "weight_decay", "amsgrad", "decoupled_weight_decay", "form")
UPDATES = {
    "sgd": (optim.SGD, optim.sgd_update_, ("momentum", "dampening", "weight_decay", "nesterov")),
    "adagrad": (
        optim.Adagrad,
        optim.adagrad_update_,
        ("lr_decay", "weight_decay", "initial_accumulator_value", "eps"),
    ),
    "adadelta": (optim.Adadelta, optim.adadelta_update_, ("rho", "eps", "weight_decay")),
    "rmsprop": (
        optim.RMSprop,
        optim.rmsprop_update_,
        ("alpha", "eps", "weight_decay", "momentum", "centered"),
    ),
    "adam": (optim.Adam, optim.adam_update_, _ADAM_KEYS),
    "adamw": (optim.AdamW, optim.adam_update_, _ADAM_KEYS),
    "radam": (
        optim.RAdam,
        optim.radam_update_,
        ("betas", "eps", "weight_decay", "decoupled_weight_decay"),
    ),
}
OPTIMIZERS = tuple(UPDATES)
GRAD_MODES = ("vmap", "sum")


def stack_models(models: Sequence[nn.Module]) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """Stack the parameters of same-architecture models.

    Args:
        models: M >= 1 modules with identical parameter names/shapes and no buffers.

    Returns:
        (base, params): ``base`` is a copy of ``models[0]`` on the meta device (architecture
        only); ``params`` maps name -> tensor [M, *shape] (detached copies, same dtype/device).

    Raises:
        ValueError: empty list, models with buffers, or mismatching parameter shapes.
        TypeError: an element that is not an ``nn.Module``.
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
    them (see :func:`stack_models`). Model i equals ``make_model()`` built under that seed.

    Raises:
        ValueError: empty ``seeds``.
    """
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
        params: the stacked parameters. i: model index in ``[0, M)``.
        like: optional instance to load into (otherwise ``base`` is copied to the params'
            device with ``to_empty``).

    Raises:
        ValueError: ``i`` out of range.
    """
    n = next(iter(params.values())).shape[0]
    if not 0 <= i < n:
        raise ValueError(f"i must be in [0, {n}), got {i}")
    dev = next(iter(params.values())).device
    model = like if like is not None else copy.deepcopy(base).to_empty(device=dev)
    model.load_state_dict({k: v.detach().clone() for k, v in unstack(params, i).items()})
    return model


SAMPLING = ("shuffle", "replacement")


def batch_indices(
    n: int,
    batch_size: int,
    seeds: Sequence[int],
    epochs: int | None,
    *,
    sampling: str = "shuffle",
) -> Iterator[torch.Tensor]:
    """Per-model mini-batch indices, each model drawing with its own seed.

    With ``sampling="shuffle"`` model i's order in every epoch is
    ``torch.randperm(n, generator=g_i)`` with ``g_i`` seeded once with ``seeds[i]``: the order
    :func:`utils.core.train.fit` uses with ``seed=seeds[i]`` (``sampling="shuffle"``). The last
    batch of an epoch may be smaller (not dropped), as in ``fit``. With
    ``sampling="replacement"`` every step draws ``torch.randint(n, (batch_size,), generator=g_i)``
    and an epoch is ``ceil(n / batch_size)`` steps: the batches ``fit`` draws with
    ``sampling="replacement"``.

    Args:
        n: examples (>= 1). batch_size: >= 1. seeds: one int per model.
        epochs: passes over the data (>= 1), or None for an endless stream.
        sampling: ``"shuffle"`` or ``"replacement"`` (as in ``train.fit``).

    Yields:
        int64 tensors [M, b] (b = batch_size except possibly the last batch of an epoch).

    Raises:
        ValueError: bad batch_size, epochs or sampling.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if epochs is not None and (not isinstance(epochs, int) or epochs < 1):
        raise ValueError(f"epochs must be None or an int >= 1, got {epochs!r}")
    if sampling not in SAMPLING:
        raise ValueError(f"sampling must be one of {SAMPLING}, got {sampling!r}")
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    epoch = 0
    if sampling == "replacement":
        while epochs is None or epoch < epochs:
            for _ in range(math.ceil(n / batch_size)):
                yield torch.stack([torch.randint(n, (batch_size,), generator=g) for g in gens])
            epoch += 1
        return
    while epochs is None or epoch < epochs:
        orders = torch.stack([torch.randperm(n, generator=g) for g in gens])
        for i in range(0, n, batch_size):
            yield orders[:, i : i + batch_size]
        epoch += 1


class StackedTrainer:
    """M models trained in lock-step by one vmapped gradient call and a from-scratch update.

    Args:
        base: architecture (from :func:`stack_models`).
        params: stacked parameters {name: [M, ...]}; updated in place (``self.params``).
        optimizer: one of :data:`OPTIMIZERS` (``"sgd"``, ``"adagrad"``, ``"adadelta"``,
            ``"rmsprop"``, ``"adam"``, ``"adamw"``, ``"radam"``).
        lr: learning rate per model: float or tensor/sequence [M] (>= 0). May be changed
            between steps (``trainer.lr = ...``), e.g. for schedules or to freeze a model (lr 0
            leaves its weights unchanged; its optimizer state still updates).
        loss_fn: mean-reduced ``loss_fn(output, target)``.
        grad_mode: how the per-model gradients are taken, one of :data:`GRAD_MODES`.
            ``"vmap"`` (default): ``vmap(grad_and_value(loss))``, a gradient transform per
            model. ``"sum"``: ordinary autograd (``torch.autograd.grad``) of the sum of the M
            losses of one vmapped forward pass. Model i's loss depends only on model i's
            parameters, so the gradient of the sum with respect to them is model i's own
            gradient: the same values (tested), without the per-model transform's overhead
            (faster for small models on a CPU; measure for yours).
        **hyper: the optimizer's hyperparameters, named and defaulted as in the from-scratch
            class (e.g. ``momentum``, ``nesterov`` for SGD; ``betas``, ``eps``,
            ``weight_decay`` for Adam; AdamW's default ``weight_decay`` is 1e-2). They are
            validated by constructing that class, so errors read like torch.optim's.

    Attributes:
        hyper: the full hyperparameters passed to the update function every step.
        state: per parameter name, the update function's state dict (stacked tensors).
        t: steps taken.

    Raises:
        ValueError: unknown optimizer or grad_mode, a bad hyperparameter value, a bad lr.
        TypeError: a hyperparameter the optimizer does not have.

    Source: the update functions of :mod:`utils.scratch.optim` (torch.optim's single-tensor
    path, proven equal in ``tests/test_optim.py``).
    """

    def __init__(
        self,
        base: nn.Module,
        params: dict[str, torch.Tensor],
        *,
        optimizer: str = "sgd",
        lr: float | Sequence[float] | torch.Tensor = 0.01,
        loss_fn: LossFn = F.cross_entropy,
        grad_mode: str = "vmap",
        **hyper,
    ):
        if grad_mode not in GRAD_MODES:
            raise ValueError(f"grad_mode must be one of {GRAD_MODES}, got {grad_mode!r}")
        if optimizer not in UPDATES:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
        if not params:
            raise ValueError("params must be a non-empty dict of stacked tensors")
        cls, update, keys = UPDATES[optimizer]
        unknown = sorted(set(hyper) - set(keys))
        if unknown:
            raise TypeError(f"{optimizer} has no hyperparameter {unknown}; it takes {keys}")
        group = cls([torch.zeros(1)], lr=0.0, **hyper).param_groups[0]  # validates, fills defaults
        self.hyper = {k: group[k] for k in keys}
        self.base, self.params = base, params
        self.n_models = next(iter(params.values())).shape[0]
        self.optimizer, self._update = optimizer, update
        self.loss_fn = loss_fn
        self.grad_mode = grad_mode
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

    def grads(
        self, x: torch.Tensor, y: torch.Tensor, *, per_model: bool = False
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Gradients {name: [M, ...]} and losses [M] on a batch (shared, or [M, B, ...] per
        model with ``per_model=True``), taken as ``grad_mode`` says."""
        if self.grad_mode == "sum":
            in_dims = (0, 0, 0) if per_model else (0, None, None)
            with torch.enable_grad():
                p = {k: v.detach().requires_grad_() for k, v in self.params.items()}
                loss = vmap(self._loss_one, in_dims=in_dims)(p, x, y)
                g = torch.autograd.grad(loss.sum(), list(p.values()), allow_unused=True)
            grads = {
                k: torch.zeros_like(v) if gk is None else gk
                for (k, v), gk in zip(p.items(), g, strict=True)
            }
            return grads, loss.detach()
        fn = self._grad_per_model if per_model else self._grad_shared
        g, loss = fn(self.params, x, y)
        return g, loss.detach()

    @torch.no_grad()
    def apply(self, grads: dict[str, torch.Tensor]) -> None:
        """One optimizer update of every model from the stacked gradients: the from-scratch
        update function on each stacked tensor, with lr broadcast as ``[M, 1, ...]``."""
        self.t += 1
        for name, w in self.params.items():
            lr = self._lr.view(-1, *([1] * (w.dim() - 1)))
            self._update(w, grads[name], self.state[name], lr=lr, **self.hyper)

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


def _as_numpy(value) -> np.ndarray:
    return torch.as_tensor(value).detach().cpu().numpy()


def fit_stacked(
    trainer: StackedTrainer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int | None = None,
    steps: int | None = None,
    batch_size: int,
    seeds: Sequence[int],
    per_model_data: bool = False,
    sampling: str = "shuffle",
    lr_schedule: Callable[[int], torch.Tensor | float] | None = None,
    evals: Mapping[str, Callable[[StackedTrainer], torch.Tensor | float]] | None = None,
    eval_every: int | None = None,
    on_step: Callable[[int, StackedTrainer], bool | None] | None = None,
) -> dict[str, np.ndarray]:
    """Mini-batch training of all stacked models, model i shuffling with ``seeds[i]``.

    The stacked twin of :func:`utils.core.train.fit`: the same data order per seed, the same
    budgets, ``evals``/``eval_every`` and ``on_step`` semantics. Unlike ``fit`` it does not stop
    when a loss becomes non-finite: in a sweep a diverged model is a result. With
    ``batch_size >= N`` (full batch) every step uses all examples in their stored order: the mean
    loss does not depend on the order, so results equal ``fit``'s up to rounding.

    Args:
        trainer: the :class:`StackedTrainer`.
        x, y: the training set, shared by all models ([N, ...], [N, ...]); or, with
            ``per_model_data``, one training set per model ([M, N, ...], [M, N, ...]; e.g.
            ``x.expand(M, *x.shape)`` with per-model noisy labels). ``batch_size=N`` is
            full-batch gradient descent.
        epochs / steps: the budget in passes over the data or in steps; give one (``epochs``
            defaults to 1 when neither is given); with both, whichever ends first.
        batch_size: examples per step and model (>= 1).
        seeds: one data-order seed per model (length M).
        per_model_data: see ``x, y``.
        sampling: ``"shuffle"`` (default) or ``"replacement"``: model i draws the batches
            ``train.fit`` draws with ``sampling=...`` and ``seed=seeds[i]`` (see
            :func:`batch_indices`). With ``"replacement"`` there is no full-batch shortcut: every
            step draws ``batch_size`` indices, as in ``fit``.
        lr_schedule: optional ``step -> lr`` (float or [M]) set before every step (step counts
            the steps already taken, from 0).
        evals: name -> ``f(trainer)`` returning a tensor [M] (or a float), recorded after the
            last step and, with ``eval_every``, also at step 0 and every ``eval_every`` steps.
        eval_every: period of ``evals`` in steps (>= 1), or None.
        on_step: ``on_step(step, trainer)`` after every step (``step`` = steps taken);
            returning True stops training (e.g. every model reached a target).

    Returns:
        dict of numpy arrays: ``step_loss`` [steps, M] (mini-batch loss before each step), and
        with ``evals`` ``eval_step`` [K] and one array [K, M] (or [K]) per name.

    Raises:
        ValueError: seeds of the wrong length, bad budgets or sampling, or data of the wrong
            shape.
    """
    m = trainer.n_models
    if sampling not in SAMPLING:
        raise ValueError(f"sampling must be one of {SAMPLING}, got {sampling!r}")
    if len(seeds) != m:
        raise ValueError(f"seeds must have one entry per model ({m}), got {len(seeds)}")
    for name, value in (("epochs", epochs), ("steps", steps), ("eval_every", eval_every)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be None or an int >= 1, got {value!r}")
    if epochs is None and steps is None:
        epochs = 1
    evals = dict(evals or {})
    dev = next(iter(trainer.params.values())).device
    x, y = x.to(dev), y.to(dev)
    if per_model_data:
        if x.shape[0] != m or y.shape[0] != m or x.shape[1] != y.shape[1]:
            raise ValueError(
                f"per_model_data needs x [M={m}, N, ...] and y [M, N, ...], got "
                f"{tuple(x.shape)} and {tuple(y.shape)}"
            )
        n = x.shape[1]
    else:
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x and y must have the same length, got {x.shape[0]}, {y.shape[0]}")
        n = x.shape[0]
    rows = torch.arange(m, device=dev)[:, None]
    full_batch = batch_size >= n and sampling == "shuffle"
    per_model_batches = per_model_data or m > 1
    hist: dict[str, list] = {"step_loss": []}
    if evals:
        hist["eval_step"] = []
        hist.update({name: [] for name in evals})

    def record(step: int) -> None:
        hist["eval_step"].append(step)
        for name, f in evals.items():
            hist[name].append(_as_numpy(f(trainer)))

    if evals and eval_every is not None:
        record(0)
    step, budget = 0, steps if steps is not None else math.inf
    # full batch: every step uses all examples in their stored order (a mean over all of them
    # does not depend on the order, up to rounding), so no permutations are drawn
    batches = (
        itertools.repeat(None, epochs if epochs is not None else 2**62)
        if full_batch
        else batch_indices(n, batch_size, seeds, epochs, sampling=sampling)
    )
    for idx in batches:
        if step >= budget:
            break
        if lr_schedule is not None:
            trainer.lr = lr_schedule(step)
        if full_batch:
            loss = trainer.step(x, y, per_model=per_model_data)
        elif per_model_data:
            idx = idx.to(dev)
            loss = trainer.step(x[rows, idx], y[rows, idx], per_model=True)
        elif per_model_batches:  # one batch per model, from the shared data
            idx = idx.to(dev)
            loss = trainer.step(x[idx], y[idx], per_model=True)
        else:  # one model
            idx = idx.to(dev)
            loss = trainer.step(x[idx[0]], y[idx[0]])
        step += 1
        hist["step_loss"].append(loss)
        stop = on_step is not None and on_step(step, trainer) is True
        if evals and eval_every is not None and step % eval_every == 0:
            record(step)
        if stop:
            break
    if evals and (eval_every is None or step % eval_every != 0):
        record(step)
    out = {"step_loss": torch.stack(hist.pop("step_loss")).cpu().numpy()}
    out.update({k: np.asarray(v) if k == "eval_step" else np.stack(v) for k, v in hist.items()})
    return out
