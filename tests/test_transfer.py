"""Tests of utils.transfer (freezing, per-part lrs, frozen BN, arms, forgetting) and
utils.transfer_tasks (domain distance, target sets, the cached source model)."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from utils.core.models import MLP, ResNet
from utils.instruments import finetune as T
from utils.tasks import transfer as TT

TINY = TT.SourceConfig(widths=(4, 8), blocks=1, steps=3, batch_size=16, lr=1e-3)


def tiny_resnet(seed=0, classes=5):
    torch.manual_seed(seed)
    return ResNet(1, classes, (4, 8), 1)


def fake_task(n=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(3 * n, 1, 14, 14, generator=g)
    y = torch.arange(3 * n) % 5
    return TT.TargetTask(x[:n], y[:n], x[n : 2 * n], y[n : 2 * n], x[2 * n :], y[2 * n :], 0.0, 4)


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


def test_frozen_part_is_a_fixed_function_during_training():
    m = tiny_resnet()
    T.freeze(m, T.backbone_parts(m))
    before = copy.deepcopy(m.state_dict())
    x, y = torch.rand(32, 1, 14, 14), torch.arange(32) % 5
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.5)
    T.train_steps(m, x, y, optimizer=opt, steps=3, batch_size=8)
    after = m.state_dict()
    for k, v in before.items():  # weights AND BN running statistics unchanged
        if not k.startswith("head"):
            assert torch.equal(v, after[k]), k
    assert not torch.equal(before["head.weight"], after["head.weight"])


def test_linear_probe_equals_training_head_on_precomputed_features():
    """Frozen BN in eval mode makes the probe exactly logistic regression on cached features."""
    m = tiny_resnet(1)
    T.freeze(m, T.backbone_parts(m))
    head = copy.deepcopy(m.head)
    x, y = torch.rand(24, 1, 14, 14), torch.arange(24) % 5
    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=0.05)
    T.train_steps(m, x, y, optimizer=opt, steps=4, batch_size=24)
    with torch.no_grad():
        feats = m.eval().features(x)
    opt2 = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(4):
        opt2.zero_grad()
        F.cross_entropy(head(feats), y).backward()
        opt2.step()
    torch.testing.assert_close(m.head.weight, head.weight)
    torch.testing.assert_close(m.head.bias, head.bias)


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
    T.replace_head(m2, 3, seed=7)
    assert old.out_features == 5 and m1.head.out_features == 3
    assert torch.equal(m1.head.weight, m2.head.weight)
    with pytest.raises(ValueError, match="num_classes"):
        T.replace_head(m1, 0, seed=0)


# ----------------------------------------------------------------------------- training loop


def test_train_steps_counts_and_evals():
    m = tiny_resnet()
    x, y = torch.rand(10, 1, 14, 14), torch.arange(10) % 5
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    h = T.train_steps(
        m,
        x,
        y,
        optimizer=opt,
        steps=7,
        batch_size=4,
        eval_every=3,
        evals={"acc": lambda mm: T.accuracy(mm, x, y)},
    )
    assert len(h["loss"]) == 7 and h["step"] == [0, 3, 6, 7] and len(h["acc"]) == 4
    h = T.train_steps(
        m,
        x,
        y,
        optimizer=opt,
        steps=2,
        batch_size=4,
        evals={"acc": lambda mm: T.accuracy(mm, x, y)},
    )
    assert h["step"] == [2]
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    T.train_steps(m, x, y, optimizer=opt, steps=4, batch_size=4, cosine=True)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)  # annealed to zero
    with pytest.raises(TypeError, match="cosine"):
        T.train_steps(m, x, y, optimizer=opt, steps=1, batch_size=4, cosine=1)


@pytest.mark.parametrize(
    "kw, err",
    [
        ({"steps": 0}, ValueError),
        ({"batch_size": 0}, ValueError),
        ({"eval_every": 0}, ValueError),
        ({"y": torch.zeros(3, dtype=torch.long)}, ValueError),
        ({"x": [1.0]}, TypeError),
    ],
)
def test_train_steps_validation(kw, err):
    m = tiny_resnet()
    args = {
        "x": torch.rand(4, 1, 14, 14),
        "y": torch.zeros(4, dtype=torch.long),
        "steps": 1,
        "batch_size": 2,
    }
    args.update(kw)
    with pytest.raises(err):
        T.train_steps(
            m,
            args.pop("x"),
            args.pop("y"),
            optimizer=torch.optim.SGD(m.parameters(), lr=0.1),
            **args,
        )


def test_steps_to_reach():
    assert T.steps_to_reach([0, 5, 10], [0.1, 0.6, 0.9], 0.6) == 5.0
    assert T.steps_to_reach([0, 5], [0.1, 0.2], 0.9) == math.inf
    with pytest.raises(ValueError):
        T.steps_to_reach([0, 5], [0.1], 0.5)
    with pytest.raises(ValueError):
        T.steps_to_reach([], [], 0.5)


# ----------------------------------------------------------------------------- arms


def test_make_arm_and_run_arm_choose_lr_on_validation():
    src = TINY.build().eval()
    task = fake_task()
    scratch = T.make_arm("scratch", src, TINY, 5, seed=3)
    assert not torch.equal(scratch.stem[0].weight, src.stem[0].weight)
    ft = T.make_arm("finetune", src, TINY, 5, seed=3)
    assert torch.equal(ft.stem[0].weight, src.stem[0].weight) and T.frozen_parts(ft) == []
    probe = T.make_arm("probe", src, TINY, 5, seed=3)
    assert T.frozen_parts(probe) == T.backbone_parts(probe)
    res = T.run_arm("finetune", src, TINY, task, lrs=[1e-4, 1e-2], steps=3, batch_size=8, seed=1)
    assert res["val_acc"] == max(res["val_by_lr"].values())
    assert res["lr"] in (1e-4, 1e-2) and 0 <= res["test_acc"] <= 1
    pr = T.run_arm("probe", src, TINY, task, lrs=[1e-2, 1e-1], steps=5, batch_size=8, seed=1)
    assert pr["val_acc"] == max(pr["val_by_lr"].values())
    for bad in (dict(arm="finetuned"), dict(lrs=[]), dict(lrs=[0.0])):
        kw = {"arm": "scratch", "lrs": [1e-3], **bad}
        with pytest.raises(ValueError):
            T.run_arm(kw.pop("arm"), src, TINY, task, steps=1, batch_size=4, seed=0, **kw)


def test_transfer_grid_shapes_and_validation():
    srcs = [TINY.build().eval(), TINY.build().eval()]
    lrs = {"scratch": [1e-3], "finetune": [1e-3, 1e-2], "probe": [1e-2]}
    g = T.transfer_grid(
        srcs,
        TINY,
        [0.0, 1.0],
        [5],
        [1, 2],
        lrs=lrs,
        steps=2,
        batch_size=16,
        probe_steps=3,
        curve_cells=[(0.0, 5)],
        eval_every=1,
    )
    assert g["acc"]["finetune"].shape == (2, 1, 2) and g["lr"]["finetune"].shape == (2, 1)
    assert len(g["curves"][(0.0, 5)]["scratch"]) == 2
    assert g["curves"][(0.0, 5)]["finetune"][0]["step"] == [0, 1, 2]
    with pytest.raises(ValueError, match="one source model per seed"):
        T.transfer_grid(srcs, TINY, [0.0], [5], [1], lrs=lrs, steps=1, batch_size=4)
    with pytest.raises(ValueError, match="lrs must map"):
        T.transfer_grid(
            srcs, TINY, [0.0], [5], [1, 2], lrs={"scratch": [1e-3]}, steps=1, batch_size=4
        )


def test_forgetting_run_frozen_keeps_source_and_validation():
    src = TINY.build().eval()
    task = fake_task()
    xs, ys = torch.rand(30, 1, 14, 14), torch.arange(30) % 5
    h = T.forgetting_run(
        src, task, (xs, ys), arm="frozen", lr=1e-2, steps=4, batch_size=8, seed=0, eval_every=2
    )
    assert h["step"] == [0, 2, 4] and len(set(h["source_acc"])) == 1
    full = T.forgetting_run(
        src, task, (xs, ys), arm="full", lr=1e-2, steps=4, batch_size=8, seed=0, eval_every=2
    )
    assert full["source_acc"][0] == h["source_acc"][0]
    with pytest.raises(ValueError, match="arm must be one of"):
        T.forgetting_run(
            src, task, (xs, ys), arm="lwf", lr=1e-2, steps=1, batch_size=8, seed=0, eval_every=1
        )
    with pytest.raises(ValueError, match="unknown part"):
        T.forgetting_run(
            src,
            task,
            (xs, ys),
            arm="partial",
            lr=1e-2,
            steps=1,
            batch_size=8,
            seed=0,
            eval_every=1,
            partial_frozen=("stage3",),
        )
    with pytest.raises(ValueError, match="backbone_lr_scale"):
        T.forgetting_run(
            src,
            task,
            (xs, ys),
            arm="full_small_backbone_lr",
            lr=1e-2,
            steps=1,
            batch_size=8,
            seed=0,
            eval_every=1,
            backbone_lr_scale=0.0,
        )


# ----------------------------------------------------------------------------- tasks


def test_scramble_distance():
    x = torch.rand(3, 1, 14, 14)
    assert torch.equal(TT.scramble(x, 0.0), x)
    full = TT.scramble(x, 1.0)
    assert not torch.equal(full, x)
    # a permutation of the pixels, the same for every image
    assert torch.equal(full.flatten(1).sort(1).values, x.flatten(1).sort(1).values)
    idx = torch.arange(196, dtype=torch.float32).reshape(1, 1, 14, 14)
    perm = TT.scramble(idx, 1.0).flatten().long()
    assert torch.equal(full.flatten(2), x.flatten(2)[:, :, perm])
    moved_half = (TT.scramble(idx, 0.5) != idx).sum()
    moved_full = (TT.scramble(idx, 1.0) != idx).sum()
    assert 80 <= moved_half <= 98 < moved_full
    assert torch.equal(TT.scramble(x, 0.5), TT.scramble(x, 0.5))


@pytest.mark.parametrize(
    "x, d, err",
    [
        (torch.rand(2, 14, 14), 0.5, ValueError),
        (torch.rand(1, 1, 4, 4), 1.5, ValueError),
        (torch.rand(1, 1, 4, 4), -0.1, ValueError),
        (torch.rand(1, 1, 4, 4), "far", TypeError),
        ([[0.0]], 0.5, TypeError),
    ],
)
def test_scramble_validation(x, d, err):
    with pytest.raises(err):
        TT.scramble(x, d)


def test_target_task_and_source_data():
    xs, ys, xst, yst = TT.source_data()
    assert xs.shape == (2000, 1, 14, 14) and xst.shape == (500, 1, 14, 14)
    assert set(ys.tolist()) == set(range(5)) and 0 <= xs.min() and xs.max() <= 1
    t = TT.target_task(0.0, 20, seed=3)
    assert t.x_train.shape == (100, 1, 14, 14) and torch.bincount(t.y_train).tolist() == [20] * 5
    assert torch.bincount(t.y_val).tolist() == [80] * 5 and t.x_test.shape[0] == 500
    assert not torch.equal(t.x_test[:5], xst[:5])  # other digits than the source
    far = TT.target_task(1.0, 20, seed=3)
    assert torch.equal(far.x_train, TT.scramble(t.x_train, 1.0))
    assert torch.equal(TT.target_task(0.0, 20, seed=3).x_train, t.x_train)
    assert not torch.equal(TT.target_task(0.0, 20, seed=4).x_train, t.x_train)


@pytest.mark.parametrize(
    "kw, err",
    [
        ({"k": 0}, ValueError),
        ({"k": 321}, ValueError),
        ({"k": 5.0}, TypeError),
        ({"seed": -1}, ValueError),
        ({"seed": "0"}, TypeError),
        ({"val_per_class": 1}, ValueError),
        ({"distance": 2.0}, ValueError),
    ],
)
def test_target_task_validation(kw, err):
    args = {"distance": 0.0, "k": 5, "seed": 0, **kw}
    with pytest.raises(err):
        TT.target_task(args.pop("distance"), args.pop("k"), **args)


@pytest.mark.parametrize(
    "kw", [{"widths": ()}, {"widths": (0,)}, {"steps": 0}, {"batch_size": 1.5}, {"lr": 0.0}]
)
def test_source_config_validation(kw):
    with pytest.raises(ValueError):
        TT.SourceConfig(**kw)


# ----------------------------------------------------------------------------- cache


def test_cache_roundtrip_corrupt_and_stale(tmp_path):
    m1, info1 = TT.load_or_pretrain(TINY, 5, directory=tmp_path)
    path = TT.cache_path(TINY, 5, tmp_path)
    assert not info1["cached"] and path.exists()
    blob = torch.load(path, weights_only=True)  # plain tensors and types only
    assert blob["seed"] == 5 and blob["config"] == TINY.key()
    m2, info2 = TT.load_or_pretrain(TINY, 5, directory=tmp_path)
    assert info2["cached"] and info2["source_test_acc"] == info1["source_test_acc"]
    for k, v in m1.state_dict().items():
        assert torch.equal(v, m2.state_dict()[k])

    for garbage in (b"not a torch file", path.read_bytes()[:100]):  # corrupt, truncated
        path.write_bytes(garbage)
        m3, info3 = TT.load_or_pretrain(TINY, 5, directory=tmp_path)
        assert not info3["cached"]  # recomputed, no crash
        assert torch.equal(m3.head.weight, m1.head.weight)  # same seed, same model
        assert TT.load_or_pretrain(TINY, 5, directory=tmp_path)[1]["cached"]  # rewritten

    stale = dict(blob, config={**blob["config"], "steps": 999})  # other config at this path
    torch.save(stale, path)
    assert not TT.load_or_pretrain(TINY, 5, directory=tmp_path)[1]["cached"]
    wrong_shapes = dict(blob, state_dict={"stem.0.weight": torch.zeros(1)})
    torch.save(wrong_shapes, path)
    assert not TT.load_or_pretrain(TINY, 5, directory=tmp_path)[1]["cached"]
    assert not list(tmp_path.glob("*.tmp"))


def test_cache_keys_and_validation(tmp_path, monkeypatch):
    assert TT.cache_path(TINY, 1, tmp_path) != TT.cache_path(TINY, 2, tmp_path)
    other = TT.SourceConfig(widths=(4, 8), steps=4, batch_size=16, lr=1e-3)
    assert TT.cache_path(TINY, 1, tmp_path) != TT.cache_path(other, 1, tmp_path)
    monkeypatch.setenv("LAB_CACHE_DIR", str(tmp_path / "c"))
    assert TT.cache_path(TINY, 1).parent == tmp_path / "c"
    monkeypatch.delenv("LAB_CACHE_DIR")
    assert TT.cache_dir().parts[-2:] == ("build", "cache")
    with pytest.raises(TypeError, match="SourceConfig"):
        TT.load_or_pretrain({"widths": (4, 8)}, 0, directory=tmp_path)
    with pytest.raises(ValueError, match="seed"):
        TT.load_or_pretrain(TINY, -1, directory=tmp_path)
