"""utils.optim: every from-scratch optimizer against its reference (torch.optim / adamp).

Trajectories are compared in float64 after EVERY step of >= 100 steps (rtol 1e-6), on a small
MLP whose first weight is followed by BatchNorm (so it is scale-invariant and AdamP's projection
branch runs) and, for AdamP, also on a small CNN (4-D conv weights, per-channel view).
"""

from __future__ import annotations

import io
import math
import re

import adamp
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from utils.scratch import optim

STEPS = 100
RTOL, ATOL = 1e-6, 1e-12

# (our class, reference class) by name
PAIRS = {
    "SGD": (optim.SGD, torch.optim.SGD),
    "Adagrad": (optim.Adagrad, torch.optim.Adagrad),
    "Adadelta": (optim.Adadelta, torch.optim.Adadelta),
    "RMSprop": (optim.RMSprop, torch.optim.RMSprop),
    "Adam": (optim.Adam, torch.optim.Adam),
    "AdamW": (optim.AdamW, torch.optim.AdamW),
    "RAdam": (optim.RAdam, torch.optim.RAdam),
    "AdamP": (optim.AdamP, adamp.AdamP),
}

# the grid of settings per optimizer (every option the reference has, alone and combined)
GRID = {
    "SGD": [
        dict(lr=0.05),
        dict(lr=0.05, momentum=0.9),
        dict(lr=0.05, momentum=0.9, dampening=0.5),
        dict(lr=0.05, momentum=0.9, nesterov=True),
        dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2),
        dict(lr=0.05, weight_decay=1e-2),
        dict(lr=0.05, momentum=0.5, dampening=0.1, weight_decay=1e-3, maximize=True),
    ],
    "Adagrad": [
        dict(lr=0.1),
        dict(lr=0.1, lr_decay=0.05),
        dict(lr=0.1, initial_accumulator_value=0.5, weight_decay=1e-2),
        dict(lr=0.1, eps=1e-3, lr_decay=0.01, maximize=True),
    ],
    "Adadelta": [
        dict(),
        dict(lr=0.5, rho=0.5, weight_decay=1e-2),
        dict(eps=1e-3, maximize=True),
    ],
    "RMSprop": [
        dict(lr=1e-2),
        dict(lr=1e-2, centered=True),
        dict(lr=1e-3, momentum=0.9),
        dict(lr=1e-3, momentum=0.9, centered=True, weight_decay=1e-2),
        dict(lr=1e-2, alpha=0.9, eps=1e-3, maximize=True),
    ],
    "Adam": [
        dict(lr=1e-2),
        dict(lr=1e-2, amsgrad=True),
        dict(lr=1e-2, weight_decay=1e-2),
        dict(lr=1e-2, weight_decay=1e-1, decoupled_weight_decay=True),
        dict(lr=1e-2, betas=(0.5, 0.9), eps=1e-3, maximize=True),
        dict(lr=1e-2, amsgrad=True, weight_decay=1e-2, maximize=True),
    ],
    "AdamW": [
        dict(lr=1e-2),
        dict(lr=1e-2, amsgrad=True, weight_decay=0.1),
        dict(lr=1e-2, betas=(0.8, 0.99), maximize=True),
    ],
    "RAdam": [
        dict(lr=1e-2),
        dict(lr=1e-2, weight_decay=1e-2),
        dict(lr=1e-2, weight_decay=1e-1, decoupled_weight_decay=True),
        dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6, maximize=True),
    ],
    "AdamP": [
        dict(lr=1e-2),
        dict(lr=1e-2, nesterov=True),
        dict(lr=1e-2, weight_decay=1e-2),
        dict(lr=1e-2, weight_decay=0.1, wd_ratio=0.5, delta=0.2, nesterov=True),
    ],
}
CASES = [(name, kw) for name, grid in GRID.items() for kw in grid]


def _ids(case):
    name, kw = case
    return name + "-" + ("-".join(f"{k}={v}" for k, v in kw.items()) or "defaults")


# ---------------------------------------------------------------------------------------------
# fixtures: model, data, a side-by-side runner
# ---------------------------------------------------------------------------------------------
def make_mlp() -> nn.Module:
    """Linear(no bias) -> BatchNorm -> tanh -> Linear, float64; the first weight is
    scale-invariant (per output channel), the last one is not."""
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Linear(6, 16, bias=False), nn.BatchNorm1d(16), nn.Tanh(), nn.Linear(16, 3)
    ).double()


def make_cnn() -> nn.Module:
    torch.manual_seed(2)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 3),
    ).double()


_GEN = torch.Generator().manual_seed(0)
X_FLAT = torch.randn(64, 6, generator=_GEN, dtype=torch.float64)
X_IMG = torch.randn(32, 1, 6, 6, generator=_GEN, dtype=torch.float64)
Y64 = torch.randint(0, 3, (64,), generator=_GEN)
Y32 = Y64[:32]


def _data(model):
    return (X_IMG, Y32) if isinstance(model[0], nn.Conv2d) else (X_FLAT, Y64)


def _objective(model, maximize: bool) -> torch.Tensor:
    # with maximize=True the optimizer ascends, so we hand it -loss: the run still trains
    # (bounded trajectories) and the flag is exercised
    x, y = _data(model)
    loss = F.cross_entropy(model(x), y)
    return -loss if maximize else loss


def _one_step(model, opt, maximize):
    opt.zero_grad()
    _objective(model, maximize).backward()
    opt.step()


def _ref_kwargs(name, kw):
    return dict(kw) if name == "AdamP" else dict(kw, foreach=False)


def _groups(model, kw, split_lr):
    if not split_lr:
        return model.parameters()
    first, *rest = list(model.parameters())
    return [{"params": [first], "lr": kw.get("lr", 1e-2) * 3}, {"params": rest}]


def _assert_params_close(m_ours, m_ref, step, rtol=RTOL, atol=ATOL):
    for (n, a), b in zip(m_ours.named_parameters(), m_ref.parameters(), strict=True):
        torch.testing.assert_close(
            a, b, rtol=rtol, atol=atol, msg=lambda s, n=n: f"param {n} at step {step}: {s}"
        )


def run_side_by_side(name, kw, make_model=make_mlp, steps=STEPS, split_lr=False):
    ours_cls, ref_cls = PAIRS[name]
    m_ours, m_ref = make_model(), make_model()
    o_ours = ours_cls(_groups(m_ours, kw, split_lr), **kw)
    o_ref = ref_cls(_groups(m_ref, kw, split_lr), **_ref_kwargs(name, kw))
    maximize = kw.get("maximize", False)
    start = [p.detach().clone() for p in m_ours.parameters()]
    for t in range(1, steps + 1):
        _one_step(m_ours, o_ours, maximize)
        _one_step(m_ref, o_ref, maximize)
        _assert_params_close(m_ours, m_ref, t)
    moved = max((p - s).abs().max().item() for p, s in zip(m_ours.parameters(), start, strict=True))
    assert moved > 1e-3, f"{name} {kw}: parameters barely moved ({moved:.2e}), test is vacuous"
    return m_ours, o_ours, m_ref, o_ref


# ---------------------------------------------------------------------------------------------
# 1. trajectories equal the reference for every setting of the grid
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_trajectory_matches_reference(case):
    name, kw = case
    m_ours, o_ours, m_ref, o_ref = run_side_by_side(name, kw)
    # same state keys and values (so state_dicts are interchangeable)
    for p, q in zip(m_ours.parameters(), m_ref.parameters(), strict=True):
        s, r = o_ours.state[p], o_ref.state[q]
        assert sorted(s) == sorted(r)
        for key in s:
            if torch.is_tensor(r[key]):
                assert s[key].dtype == r[key].dtype, key
                torch.testing.assert_close(s[key], r[key], rtol=RTOL, atol=ATOL)
            else:
                assert s[key] == r[key], key


@pytest.mark.parametrize("kw", GRID["AdamP"], ids=lambda kw: "-".join(map(str, kw.items())))
def test_adamp_matches_reference_on_conv_weights(kw):
    run_side_by_side("AdamP", kw, make_model=make_cnn)


@pytest.mark.parametrize("name", list(PAIRS))
def test_param_groups_with_different_lrs(name):
    run_side_by_side(name, GRID[name][-1], split_lr=True)


def test_lr_scheduler_drives_ours_like_the_reference():
    kw = dict(lr=0.05, momentum=0.9, nesterov=True)
    m_ours, m_ref = make_mlp(), make_mlp()
    o_ours, o_ref = optim.SGD(m_ours.parameters(), **kw), torch.optim.SGD(m_ref.parameters(), **kw)
    s_ours = torch.optim.lr_scheduler.CosineAnnealingLR(o_ours, T_max=STEPS)
    s_ref = torch.optim.lr_scheduler.CosineAnnealingLR(o_ref, T_max=STEPS)
    for t in range(1, STEPS + 1):
        for m, o, s in ((m_ours, o_ours, s_ours), (m_ref, o_ref, s_ref)):
            _one_step(m, o, False)
            s.step()
        _assert_params_close(m_ours, m_ref, t)
    assert o_ours.param_groups[0]["lr"] == pytest.approx(o_ref.param_groups[0]["lr"], abs=1e-15)


def test_closure_is_called_with_grad_and_its_loss_returned():
    model = make_mlp()
    opt = optim.Adam(model.parameters(), lr=1e-2)

    def closure():
        opt.zero_grad()
        loss = _objective(model, False)
        loss.backward()
        return loss

    with torch.no_grad():
        loss0 = opt.step(closure)
    assert torch.is_tensor(loss0) and loss0.item() > 0
    assert opt.step() is None


def test_adamp_projection_branch_runs_on_scale_invariant_weights():
    model = make_mlp()
    _objective(model, False).backward()
    w_in, w_out = model[0].weight, model[3].weight
    for w in (w_in, w_out):
        update = torch.randn_like(w)
        projected, ratio = optim.adamp_projection(w.detach(), w.grad, update, 0.1, 0.1, 1e-8)
        if w is w_in:  # BatchNorm after it: gradient is orthogonal to every output row
            assert ratio == 0.1
            w_unit = w.detach() / w.detach().norm(dim=1, keepdim=True)
            before, after = (update * w_unit).sum(dim=1), (projected * w_unit).sum(dim=1)
            # the radial part is gone (up to the eps guard in w / (||w|| + eps))
            assert after.abs().max() < 1e-6 * before.abs().max()
            assert (projected - update).abs().max() > 1e-3
        else:
            assert ratio == 1.0 and projected is update
    with pytest.raises(ValueError, match="weight must have >= 2 dimensions"):
        optim.adamp_projection(torch.ones(3), torch.ones(3), torch.ones(3), 0.1, 0.1, 1e-8)


# ---------------------------------------------------------------------------------------------
# 2. state_dict round trips (ours -> ours bitwise; torch <-> ours interchangeable)
# ---------------------------------------------------------------------------------------------
ROUND_TRIP = {
    "SGD": dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2),
    "Adagrad": dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1),
    "Adadelta": dict(weight_decay=1e-2),
    "RMSprop": dict(lr=1e-3, momentum=0.9, centered=True),
    "Adam": dict(lr=1e-2, amsgrad=True, weight_decay=1e-2),
    "AdamW": dict(lr=1e-2, amsgrad=True),
    "RAdam": dict(lr=1e-2, weight_decay=1e-2, decoupled_weight_decay=True),
    "AdamP": dict(lr=1e-2, nesterov=True, weight_decay=1e-2),
}
K = 30


def _serialise(sd):
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("name", list(ROUND_TRIP))
def test_state_dict_round_trip_equals_uninterrupted_run(name):
    ours_cls, _ = PAIRS[name]
    kw = ROUND_TRIP[name]
    full = make_mlp()
    o_full = ours_cls(full.parameters(), **kw)
    for _ in range(2 * K):
        _one_step(full, o_full, False)

    first = make_mlp()
    o_first = ours_cls(first.parameters(), **kw)
    for _ in range(K):
        _one_step(first, o_first, False)
    model_sd, opt_sd = _serialise(first.state_dict()), _serialise(o_first.state_dict())
    del first, o_first

    resumed = make_mlp()
    resumed.load_state_dict(model_sd)
    o_resumed = ours_cls(resumed.parameters(), **kw)
    o_resumed.load_state_dict(opt_sd)
    for _ in range(K):
        _one_step(resumed, o_resumed, False)
    _assert_params_close(resumed, full, 2 * K, rtol=0, atol=0)


@pytest.mark.parametrize("direction", ["ref_to_ours", "ours_to_ref"])
@pytest.mark.parametrize("name", list(ROUND_TRIP))
def test_state_dict_interchangeable_with_reference(name, direction):
    ours_cls, ref_cls = PAIRS[name]
    kw = ROUND_TRIP[name]
    make_ours = lambda ps: ours_cls(ps, **kw)  # noqa: E731
    make_ref = lambda ps: ref_cls(ps, **_ref_kwargs(name, kw))  # noqa: E731
    make_src, make_dst = (
        (make_ref, make_ours) if direction == "ref_to_ours" else (make_ours, make_ref)
    )
    src = make_mlp()
    o_src = make_src(src.parameters())
    for _ in range(K):
        _one_step(src, o_src, False)
    dst = make_mlp()
    dst.load_state_dict(src.state_dict())
    o_dst = make_dst(dst.parameters())
    o_dst.load_state_dict(_serialise(o_src.state_dict()))
    for t in range(K):
        _one_step(src, o_src, False)
        _one_step(dst, o_dst, False)
        _assert_params_close(dst, src, K + t + 1)


# ---------------------------------------------------------------------------------------------
# 3. argument validation: same ValueError (and message) as the reference
# ---------------------------------------------------------------------------------------------
INVALID = [
    ("SGD", dict(lr=-1)),
    ("SGD", dict(lr=0.1, momentum=-0.5)),
    ("SGD", dict(lr=0.1, weight_decay=-1e-4)),
    ("SGD", dict(lr=0.1, nesterov=True)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True)),
    ("Adagrad", dict(lr=-1)),
    ("Adagrad", dict(lr_decay=-0.1)),
    ("Adagrad", dict(eps=-1e-10)),
    ("Adagrad", dict(initial_accumulator_value=-1)),
    ("Adagrad", dict(weight_decay=-1)),
    ("Adadelta", dict(lr=-1)),
    ("Adadelta", dict(rho=1.5)),
    ("Adadelta", dict(eps=-1e-6)),
    ("RMSprop", dict(lr=-1)),
    ("RMSprop", dict(alpha=-0.1)),
    ("RMSprop", dict(eps=-1)),
    ("RMSprop", dict(momentum=-0.9)),
    ("Adam", dict(lr=-1)),
    ("Adam", dict(betas=(1.0, 0.999))),
    ("Adam", dict(betas=(0.9, -0.1))),
    ("Adam", dict(eps=-1e-8)),
    ("Adam", dict(weight_decay=-1)),
    ("Adam", dict(betas=(0, 0.999))),  # ints: torch requires floats or tensors
    ("AdamW", dict(betas=(0.9, 1.0))),
    ("AdamW", dict(lr=-0.001)),
    ("RAdam", dict(betas=(-0.1, 0.999))),
    ("RAdam", dict(eps=-1)),
]


@pytest.mark.parametrize("name,kw", INVALID, ids=[f"{n}-{kw}" for n, kw in INVALID])
def test_invalid_arguments_raise_like_reference(name, kw):
    ours_cls, ref_cls = PAIRS[name]
    params = [nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError) as ref_err:
        ref_cls(params, **kw)
    with pytest.raises(ValueError, match="^" + re.escape(str(ref_err.value)) + "$"):
        ours_cls(params, **kw)


@pytest.mark.parametrize(
    "cls,kw,match",
    [
        # adamp.AdamP validates nothing; ours does, with torch's wording
        (optim.AdamP, dict(lr=-1), "Invalid learning rate: -1"),
        (optim.AdamP, dict(betas=(0.9, 1.0)), "Invalid beta parameter at index 1: 1.0"),
        (optim.AdamP, dict(eps=-1e-8), "Invalid epsilon value: -1e-08"),
        (optim.AdamP, dict(delta=-0.1), "Invalid delta value: -0.1"),
        (optim.AdamP, dict(wd_ratio=-1), "Invalid wd_ratio value: -1"),
        # options that only ours has / does not implement
        (optim.Adam, dict(form="keras"), "Invalid form value: 'keras'"),
        (optim.AdamW, dict(form=None), "Invalid form value: None"),
        (optim.Adam, dict(foreach=True), "Invalid foreach value: True"),
        (optim.SGD, dict(fused=True), "Invalid fused value: True"),
        (optim.RMSprop, dict(capturable=True), "Invalid capturable value: True"),
    ],
)
def test_invalid_arguments_ours_only(cls, kw, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        cls([nn.Parameter(torch.zeros(2))], **kw)


def test_unsupported_gradients_and_parameters_raise():
    p = nn.Parameter(torch.zeros(3, dtype=torch.complex64))
    p.grad = torch.ones_like(p)
    with pytest.raises(TypeError, match="complex"):
        optim.Adam([p]).step()
    emb = nn.Embedding(5, 2, sparse=True)
    emb(torch.tensor([1])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse"):
        optim.SGD(emb.parameters(), lr=0.1).step()


# ---------------------------------------------------------------------------------------------
# 4. the notes' own formulas
# ---------------------------------------------------------------------------------------------
def _quadratic_grad(w, scale):
    # f(w) = scale * (0.5 * sum(h w^2) + b.w) with fixed curvatures h and offsets b
    h = torch.tensor([1.0, 10.0, 100.0, 0.1], dtype=torch.float64)
    b = torch.tensor([0.5, -1.0, 0.2, 1.0], dtype=torch.float64)
    return scale * (h * w + b)


W0 = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)


def _run_ours(opt_factory, scale, steps=STEPS):
    w = nn.Parameter(W0.clone())
    opt = opt_factory([w])
    traj = []
    for _ in range(steps):
        w.grad = _quadratic_grad(w.detach(), scale)
        opt.step()
        traj.append(w.detach().clone())
    return torch.stack(traj)


@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_notes_form_equals_hand_written_notes_formula(amsgrad):
    lr, (b1, b2), eps, scale = 1e-2, (0.9, 0.999), 1e-6, 1e-3
    ours = _run_ours(
        lambda ps: optim.Adam(ps, lr=lr, eps=eps, amsgrad=amsgrad, form="notes"), scale
    )
    w, m, v, vmax = W0.clone(), torch.zeros(4, dtype=torch.float64), 0 * W0, 0 * W0
    for t in range(1, STEPS + 1):
        g = _quadratic_grad(w, scale)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        vmax = torch.maximum(vmax, v)
        w = (
            w
            - lr
            / torch.sqrt((vmax if amsgrad else v) + eps)
            * math.sqrt(1 - b2**t)
            / (1 - b1**t)
            * m
        )
        torch.testing.assert_close(ours[t - 1], w, rtol=RTOL, atol=ATOL)


def test_adam_forms_differ_only_when_eps_is_large_relative_to_sqrt_v():
    def both(scale, eps):
        return [
            _run_ours(lambda ps, f=f: optim.Adam(ps, lr=1e-2, eps=eps, form=f), scale)
            for f in optim.ADAM_FORMS
        ]

    def rel_gap(a, b):
        return ((a - b).norm(dim=1) / (b - W0).norm(dim=1)).max().item()

    # gradients ~1e-4..1e-2 and eps = 1e-6: sqrt(eps) = 1e-3 is comparable to sqrt(v), so the
    # notes form (eps inside the root) takes clearly smaller steps than the pytorch form
    pt, notes = both(scale=1e-4, eps=1e-6)
    assert rel_gap(notes, pt) > 0.1
    assert (notes - W0).norm(dim=1)[-1] < (pt - W0).norm(dim=1)[-1]
    # gradients ~0.1..10 and eps = 1e-12: eps is negligible in both places -> same trajectory
    pt, notes = both(scale=1.0, eps=1e-12)
    assert rel_gap(notes, pt) < 1e-4


@pytest.mark.parametrize("form", optim.ADAM_FORMS)
def test_adam_update_helper_equals_one_optimizer_step(form):
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(5, 3, dtype=torch.float64))
    opt = optim.Adam([w], lr=0.1, eps=1e-3, form=form)
    for _ in range(3):
        before = w.detach().clone()
        w.grad = torch.randn_like(w) * 1e-2
        opt.step()
        st = opt.state[w]
        expected = optim.adam_update(
            st["exp_avg"], st["exp_avg_sq"], int(st["step"].item()), lr=0.1, eps=1e-3, form=form
        )
        torch.testing.assert_close(before - w.detach(), expected, rtol=1e-12, atol=1e-15)
    assert optim.adam_step_size(0.1, (0.9, 0.999), 1, "pytorch") == pytest.approx(1.0)
    assert optim.adam_step_size(0.1, (0.9, 0.999), 1, "notes") == pytest.approx(
        1.0 * math.sqrt(0.001)
    )
    with pytest.raises(ValueError, match="Invalid step value"):
        optim.adam_step_size(0.1, (0.9, 0.999), 0)
    with pytest.raises(ValueError, match="Invalid form value"):
        optim.adam_update(st["exp_avg"], st["exp_avg_sq"], 1, form="tf")


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_equals_the_notes_formulas(nesterov):
    """Heavy ball: a <- beta a + g(W); W <- W - eta a.  Nesterov (notes): a <- beta a +
    g(W - eta beta a); W <- W - eta a. Torch's (and our) Nesterov stores the look-ahead point
    W' = W - eta beta a, so compare against that."""
    eta, beta, scale = 0.01, 0.9, 1.0
    ours = _run_ours(lambda ps: optim.SGD(ps, lr=eta, momentum=beta, nesterov=nesterov), scale)
    w, a = W0.clone(), torch.zeros(4, dtype=torch.float64)
    for t in range(STEPS):
        g = _quadratic_grad(w - eta * beta * a if nesterov else w, scale)
        a = beta * a + g
        w = w - eta * a
        stored = w - eta * beta * a if nesterov else w
        torch.testing.assert_close(ours[t], stored, rtol=RTOL, atol=ATOL)


def test_adagrad_effective_step_shrinks_like_the_notes_say():
    """Adagrad per-coordinate step eta / (sqrt(G) + eps): a rarely-updated coordinate keeps a
    larger step than a frequently-updated one."""
    w = nn.Parameter(torch.zeros(2, dtype=torch.float64))
    opt = optim.Adagrad([w], lr=0.1)
    for t in range(20):
        w.grad = torch.tensor([1.0, 1.0 if t % 10 == 0 else 0.0], dtype=torch.float64)
        opt.step()
    eff = 0.1 / (opt.state[w]["sum"].sqrt() + 1e-10)
    assert eff[1] > 3 * eff[0]
    torch.testing.assert_close(opt.state[w]["sum"], torch.tensor([20.0, 2.0], dtype=torch.float64))


# ---------------------------------------------------------------------------------------------
# 5. the per-tensor update functions (shared with utils.instruments.stacked)
# ---------------------------------------------------------------------------------------------
UPDATE_CASES = [
    (optim.sgd_update_, dict(momentum=0.9, weight_decay=1e-2)),
    (optim.sgd_update_, dict(momentum=0.9, nesterov=True)),
    (optim.adagrad_update_, dict(lr_decay=0.1, initial_accumulator_value=0.1)),
    (optim.adadelta_update_, dict(rho=0.8, weight_decay=1e-2)),
    (optim.rmsprop_update_, dict(momentum=0.5, centered=True)),
    (optim.adam_update_, dict(weight_decay=1e-2, amsgrad=True)),
    (optim.adam_update_, dict(weight_decay=0.1, decoupled_weight_decay=True)),
    (optim.adam_update_, dict(eps=1e-3, form="notes")),
    (optim.radam_update_, dict(weight_decay=1e-2, decoupled_weight_decay=True)),
]


@pytest.mark.parametrize(
    "update,kw", UPDATE_CASES, ids=lambda c: c.__name__ if callable(c) else str(c)
)
def test_tensor_lr_updates_rows_like_separate_float_lr_calls(update, kw):
    """A stacked tensor [M, ...] with lr [M, 1, 1] = M separate tensors, each with its float lr
    (close, not bit-equal: the tensor path rounds lr * d once more; see the module doc)."""
    g = torch.Generator().manual_seed(0)
    lrs = [0.05, 0.5, 0.0]
    w = torch.randn(3, 4, 2, generator=g, dtype=torch.float64)
    start = w.clone()
    rows = [w[i].clone() for i in range(3)]
    state, row_states = {}, [{} for _ in range(3)]
    for _ in range(12):  # > 5 steps, so RAdam's rectified branch runs too
        grad = torch.randn(3, 4, 2, generator=g, dtype=torch.float64)
        update(w, grad, state, lr=torch.tensor(lrs, dtype=torch.float64).view(3, 1, 1), **kw)
        for i in range(3):
            update(rows[i], grad[i], row_states[i], lr=lrs[i], **kw)
    for i in range(3):
        torch.testing.assert_close(w[i], rows[i], rtol=1e-12, atol=1e-14)
    assert (w[1] - start[1]).abs().max() > 1e-4, "the rows barely moved: vacuous"
    assert torch.equal(w[2], start[2])  # lr 0 leaves a stacked model's weights unchanged


def test_update_functions_are_what_the_classes_run():
    """The class's step is exactly its function (bit for bit) with the group's hyperparameters."""
    torch.manual_seed(0)
    p = nn.Parameter(torch.randn(5, 3, dtype=torch.float64))
    w, state = p.detach().clone(), {}
    opt = optim.Adam([p], lr=0.05, weight_decay=0.1, decoupled_weight_decay=True)
    for _ in range(5):
        grad = torch.randn(5, 3, dtype=torch.float64)
        p.grad = grad.clone()
        opt.step()
        optim.adam_update_(w, grad, state, lr=0.05, weight_decay=0.1, decoupled_weight_decay=True)
    assert torch.equal(p.detach(), w)
    assert torch.equal(opt.state[p]["exp_avg_sq"], state["exp_avg_sq"])


def test_update_functions_validate_their_arguments():
    w, g = torch.zeros(3, 2), torch.ones(3, 2)
    with pytest.raises(ValueError, match="shape of w"):
        optim.sgd_update_(w, torch.ones(2, 3), {}, lr=0.1)
    with pytest.raises(TypeError, match="state"):
        optim.sgd_update_(w, g, None, lr=0.1)
    with pytest.raises(ValueError, match="Invalid learning rate"):
        optim.adam_update_(w, g, {}, lr=-1.0)
    with pytest.raises(ValueError, match="broadcast"):
        optim.rmsprop_update_(w, g, {}, lr=torch.ones(2, 1))
    with pytest.raises(ValueError, match="momentum"):
        optim.sgd_update_(w, g, {}, lr=0.1, momentum=-0.1)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.sgd_update_(w, g, {}, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="beta parameter at index 1"):
        optim.adam_update_(w, g, {}, lr=0.1, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="form"):
        optim.adam_update_(w, g, {}, lr=0.1, form="tf")
    with pytest.raises(ValueError, match="rho"):
        optim.adadelta_update_(w, g, {}, lr=0.1, rho=1.5)
    with pytest.raises(TypeError, match="tensors"):
        optim.radam_update_([0.0], g, {}, lr=0.1)
