"""Tests of utils.instruments.finetune: freezing by part with frozen BatchNorm, per-part lrs,
head replacement, the linear probe (checked against a hand-written logistic-regression fit on
precomputed features), the forgetting measure and steps-to-reach."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from utils.core import train
from utils.core.models import MLP, ResNet
from utils.instruments import finetune as T


def tiny_resnet(seed=0, classes=5):
    torch.manual_seed(seed)
    return ResNet(1, classes, (4, 8), 1)


def toy(n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 14, 14, generator=g), torch.arange(n) % 5


def warm_bn(model, x):
    """Give the BN layers non-trivial running statistics (as a pretrained model has)."""
    model.train()
    with torch.no_grad():
        model(x * 3 + 1)
    return model.eval()


def fit(model, x, y, opt, steps, batch_size, **kw):
    return train.fit(
        model,
        x,
        y,
        optimizer=opt,
        steps=steps,
        batch_size=batch_size,
        epoch_evals=False,
        progress=False,
        **kw,
    )


# ----------------------------------------------------------------------------- freezing


def test_part_names_and_errors():
    m = tiny_resnet()
    assert T.part_names(m) == ["stem", "stage1", "stage2", "head"]
    assert T.backbone_parts(m) == ["stem", "stage1", "stage2"]
    with pytest.raises(TypeError, match="ResNet"):
        T.part_names(MLP(4, [3], 2))
    with pytest.raises(ValueError, match=r"unknown part.*'stage9'.*\['stem', 'stage1'"):
        T.freeze(m, ["stem", "stage9"])
    with pytest.raises(TypeError, match="part names"):
        T.freeze(m, [1])


def test_freeze_unfreeze_sets_grad_and_bn_mode():
    m = tiny_resnet().train()
    T.freeze(m, ["stem", "stage1"])
    assert T.frozen_parts(m) == ["stem", "stage1"]
    assert all(not p.requires_grad for p in m.stem.parameters())
    assert all(p.requires_grad for p in m.stage2.parameters())
    bns = [x for x in m.stage1.modules() if isinstance(x, torch.nn.BatchNorm2d)]
    assert bns and all(not b.training for b in bns)
    assert all(b.training for b in m.stage2.modules() if isinstance(b, torch.nn.BatchNorm2d))
    m.train()  # plain train() flips everything; train_mode restores frozen BN to eval
    T.train_mode(m)
    assert all(not b.training for b in bns) and m.training
    T.unfreeze(m, "stage1")
    assert T.frozen_parts(m) == ["stem"] and all(b.training for b in bns)
    assert T.freeze(m, []) is m and T.frozen_parts(m) == ["stem"]


@pytest.mark.parametrize("set_mode, frozen_stays", [(T.train_mode, True), (None, False)])
def test_frozen_part_is_a_fixed_function_under_fit(set_mode, frozen_stays):
    """With set_mode=train_mode, fit leaves a frozen backbone bit for bit unchanged (weights
    and BN running statistics); with fit's plain model.train() the BN statistics move, which
    is the bug train_mode exists for (the control shows the check can fail)."""
    x, y = toy()
    m = warm_bn(tiny_resnet(), x)
    T.freeze(m, T.backbone_parts(m))
    before = copy.deepcopy(m.state_dict())
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.5)
    fit(m, x, y, opt, steps=3, batch_size=8, set_mode=set_mode)
    after = m.state_dict()
    backbone_same = all(torch.equal(v, after[k]) for k, v in before.items() if k[:4] != "head")
    assert backbone_same is frozen_stays
    assert all(
        torch.equal(before[k], after[k])
        for k in before
        if k.endswith("weight") and not k.startswith("head")
    )  # frozen weights never move, in both cases
    assert not torch.equal(before["head.weight"], after["head.weight"])


# ----------------------------------------------------------------------------- linear probe


def reference_probe(model, x, y, *, num_classes, lr, steps, seed):
    """Hand-written logistic regression: eval-mode features once, full-batch Adam on a head
    initialised like replace_head (nn.Linear under manual_seed(seed))."""
    model = copy.deepcopy(model).eval()
    with torch.no_grad():
        feats = model.features(x)
    torch.manual_seed(seed)
    head = torch.nn.Linear(feats.shape[1], num_classes)
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(head(feats), y).backward()
        opt.step()
    return head


def test_linear_probe_is_logistic_regression_on_frozen_features():
    x, y = toy(40)
    src = warm_bn(tiny_resnet(1), x)
    snapshot = copy.deepcopy(src.state_dict())
    probe, hist = T.linear_probe(src, x, y, num_classes=5, lr=0.05, steps=6, seed=3)
    ref = reference_probe(src, x, y, num_classes=5, lr=0.05, steps=6, seed=3)
    torch.testing.assert_close(probe.head.weight, ref.weight)
    torch.testing.assert_close(probe.head.bias, ref.bias)
    assert len(hist["step_loss"]) == 6 and hist["step_loss"][-1] < hist["step_loss"][0]
    assert T.frozen_parts(probe) == T.backbone_parts(probe) and not probe.training
    for k, v in src.state_dict().items():  # the source model is not touched
        assert torch.equal(v, snapshot[k]), k
        if not k.startswith("head"):  # and the probe's backbone is the source's
            assert torch.equal(v, probe.state_dict()[k]), k


def test_linear_probe_equals_training_the_frozen_model_end_to_end():
    """Frozen BN in eval mode makes the cached-feature probe exact: training the frozen copy
    through fit(set_mode=train_mode) on images gives the same head."""
    x, y = toy(24)
    src = warm_bn(tiny_resnet(2), x)
    probe, _ = T.linear_probe(src, x, y, num_classes=5, lr=0.05, steps=4, seed=1)
    m = copy.deepcopy(src)
    T.replace_head(m, 5, seed=1)
    T.freeze(m, T.backbone_parts(m))
    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=0.05)
    fit(m, x, y, opt, steps=4, batch_size=len(x), seed=1, set_mode=T.train_mode)
    torch.testing.assert_close(m.head.weight, probe.head.weight)
    torch.testing.assert_close(m.head.bias, probe.head.bias)


@pytest.mark.parametrize(
    "kw, err",
    [
        ({"lr": 0.0}, ValueError),
        ({"lr": math.inf}, ValueError),
        ({"steps": 0}, ValueError),
        ({"num_classes": 0}, ValueError),
    ],
)
def test_linear_probe_validation(kw, err):
    x, y = toy(10)
    args = {"num_classes": 5, "lr": 0.1, "steps": 1, "seed": 0, **kw}
    with pytest.raises(err):
        T.linear_probe(tiny_resnet(), x, y, **args)
    with pytest.raises(TypeError, match="ResNet"):
        T.linear_probe(MLP(196, [4], 5), x, y, num_classes=5, lr=0.1, steps=1, seed=0)


# ----------------------------------------------------------------------------- lrs, head


def test_param_groups_per_part_lr():
    m = tiny_resnet()
    groups = T.param_groups(m, {"head": 1e-2}, default_lr=1e-3)
    assert [g["name"] for g in groups] == ["stem", "stage1", "stage2", "head"]
    assert [g["lr"] for g in groups] == [1e-3, 1e-3, 1e-3, 1e-2]
    opt = torch.optim.Adam(groups)
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 1e-3, 1e-3, 1e-2]
    n_all = sum(p.numel() for g in groups for p in g["params"])
    assert n_all == sum(p.numel() for p in m.parameters())
    only_head = T.param_groups(m, {"head": 0.1})
    assert [g["name"] for g in only_head] == ["head"]
    T.freeze(m, "stem")
    assert "stem" not in [g["name"] for g in T.param_groups(m, {}, default_lr=1e-3)]


def test_param_groups_lrs_act_per_part():
    """One SGD step moves each part by lr * grad of its own group (a zero lr would not)."""
    x, y = toy(8)
    m = tiny_resnet()
    ref = copy.deepcopy(m)
    opt = torch.optim.SGD(T.param_groups(m, {"head": 0.1}, default_lr=1e-3))
    fit(m, x, y, opt, steps=1, batch_size=8)
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(0))  # fit's batch, seed 0
    F.cross_entropy(ref.train()(x[perm]), y[perm]).backward()
    for (name, p), q in zip(ref.named_parameters(), m.parameters(), strict=True):
        lr = 0.1 if name.startswith("head") else 1e-3
        torch.testing.assert_close(q, p.detach() - lr * p.grad)


@pytest.mark.parametrize(
    "lrs, default, err",
    [
        ({"neck": 1e-3}, None, ValueError),
        ({"head": 0.0}, None, ValueError),
        ({"head": -1.0}, None, ValueError),
        ({"head": math.nan}, None, ValueError),
        ({"head": 1e-3}, 0.0, ValueError),
        ([("head", 1e-3)], None, TypeError),
    ],
)
def test_param_groups_validation(lrs, default, err):
    with pytest.raises(err):
        T.param_groups(tiny_resnet(), lrs, default_lr=default)


def test_replace_head_is_seeded_and_returns_old():
    m1, m2 = tiny_resnet(), tiny_resnet()
    old = T.replace_head(m1, 3, seed=7)
    state = torch.random.get_rng_state()
    T.replace_head(m2, 3, seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)  # global RNG untouched
    assert old.out_features == 5 and m1.head.out_features == 3
    assert torch.equal(m1.head.weight, m2.head.weight)
    T.replace_head(m2, 3, seed=8)
    assert not torch.equal(m1.head.weight, m2.head.weight)
    with pytest.raises(ValueError, match="num_classes"):
        T.replace_head(m1, 0, seed=0)


# ----------------------------------------------------------------------------- measures


def test_features_and_head_accuracy_match_eval_mode_and_restore_modes():
    x, y = toy(30)
    m = warm_bn(tiny_resnet(3), x)
    head = copy.deepcopy(m.head)
    T.freeze(m.train(), ["stem"])
    modes = [mod.training for mod in m.modules()]
    ref = copy.deepcopy(m).eval()
    with torch.no_grad():
        expected_feats = ref.features(x)
        expected_acc = float((ref(x).argmax(1) == y).float().mean())
    torch.testing.assert_close(T.features(m, x, batch_size=7), expected_feats)
    assert T.head_accuracy(m, head, x, y) == expected_acc
    assert [mod.training for mod in m.modules()] == modes  # frozen BN eval, the rest train
    with pytest.raises(ValueError, match="same non-zero length"):
        T.head_accuracy(m, head, x, y[:3])
    with pytest.raises(TypeError, match="features"):
        T.features(MLP(4, [3], 2), x)


def test_head_accuracy_measures_forgetting_only_when_the_backbone_moves():
    xs, ys = toy(50, seed=9)  # the "source" task: memorised below
    src = tiny_resnet(4)
    fit(src, xs, ys, torch.optim.Adam(src.parameters(), lr=0.02), steps=40, batch_size=50)
    src.eval()
    x, y = toy(40)
    y = (y + 1) % 5  # a target that conflicts with the source labels
    results = {}
    for arm, frozen in (("full", []), ("frozen", T.backbone_parts(src))):
        m = copy.deepcopy(src)
        source_head = T.replace_head(m, 5, seed=0)
        T.freeze(m, frozen)
        opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=0.05)
        h = fit(
            m,
            x,
            y,
            opt,
            steps=20,
            batch_size=8,
            set_mode=T.train_mode,
            eval_every=10,
            evals={"src": lambda mm, hd=source_head: T.head_accuracy(mm, hd, xs, ys)},
        )
        results[arm] = h["src"]
    assert results["full"][0] == results["frozen"][0] > 0.6  # the source was learned
    assert len(set(results["frozen"])) == 1  # a frozen backbone cannot forget
    assert results["full"][-1] < results["full"][0] - 0.2  # a moving backbone does


def test_steps_to_reach_held_counts_only_a_level_kept_to_the_end():
    # touches 0.6 at step 5, drops, then stays from step 15: held gives 15, the first crossing 5
    steps, curve = [0, 5, 10, 15, 20], [0.1, 0.6, 0.5, 0.7, 0.65]
    assert T.steps_to_reach(steps, curve, 0.6) == 5.0
    assert T.steps_to_reach(steps, curve, 0.6, held=True) == 15.0
    assert T.steps_to_reach([0, 5], [0.7, 0.8], 0.6, held=True) == 0.0
    assert T.steps_to_reach([0, 5, 10], [0.7, 0.8, 0.5], 0.6, held=True) == math.inf
    with pytest.raises(ValueError):
        T.steps_to_reach([0, 5], [0.1], 0.5, held=True)


def test_steps_to_reach():
    assert T.steps_to_reach([0, 5, 10], [0.1, 0.6, 0.9], 0.6) == 5.0
    assert T.steps_to_reach([0, 5, 10], [0.7, 0.6, 0.9], 0.6) == 0.0
    assert T.steps_to_reach([0, 5], [0.1, 0.2], 0.9) == math.inf
    with pytest.raises(ValueError):
        T.steps_to_reach([0, 5], [0.1], 0.5)
    with pytest.raises(ValueError):
        T.steps_to_reach([], [], 0.5)
