"""Tests of utils.tasks.transfer: domain distance, target sets, and the cached source models
(pretraining through train.fit pinned to one thread, an exact cache round trip, recomputation
of corrupt, truncated or stale files)."""

import json

import pytest
import torch

from utils.core import repro, train
from utils.tasks import transfer as TT

TINY = TT.SourceConfig(widths=(4, 8), blocks=1, steps=3, batch_size=16, lr=1e-3)


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
    # the positions moved at a smaller distance are a subset of those at a larger one
    moved_small = TT.scramble(idx, 0.25) != idx
    assert torch.all((TT.scramble(idx, 0.75) != idx) | ~moved_small)


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
    # training and validation images are disjoint
    train_rows = {tuple(r) for r in t.x_train.flatten(1).tolist()}
    assert not train_rows & {tuple(r) for r in t.x_val.flatten(1).tolist()}
    far = TT.target_task(1.0, 20, seed=3)
    assert torch.equal(far.x_train, TT.scramble(t.x_train, 1.0))
    assert torch.equal(TT.target_task(0.0, 20, seed=3).x_train, t.x_train)
    assert not torch.equal(TT.target_task(0.0, 20, seed=4).x_train, t.x_train)
    moved = t.to("cpu")
    assert isinstance(moved, TT.TargetTask) and moved.k == 20 and moved.distance == 0.0
    assert torch.equal(moved.y_test, t.y_test)


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


# ----------------------------------------------------------------------------- pretraining


def test_pretrain_is_train_fit_on_the_source_data_pinned_to_one_thread(monkeypatch):
    """The loader does what its docstring says: init_model + Adam + train.fit, one thread."""
    x, y, xt, yt = TT.source_data()
    ref = TT.init_model(TINY, 2)
    opt = torch.optim.Adam(ref.parameters(), lr=TINY.lr)
    with repro.num_threads(1):
        train.fit(
            ref,
            x,
            y,
            optimizer=opt,
            steps=TINY.steps,
            batch_size=TINY.batch_size,
            seed=2,
            epoch_evals=False,
            progress=False,
        )

    threads_seen = []
    real_fit = train.fit

    def spy(*args, **kwargs):
        threads_seen.append(torch.get_num_threads())
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(TT.train, "fit", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model, info = TT.pretrain(TINY, 2)
        assert torch.get_num_threads() == 2  # restored afterwards
    finally:
        torch.set_num_threads(before)
    assert threads_seen == [TT.PRETRAIN_THREADS] == [1]
    for k, v in ref.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k
    assert not model.training and info == {
        "source_test_acc": train.evaluate(ref.eval(), xt, yt)["acc"],
        "cached": False,
    }


# ----------------------------------------------------------------------------- cache


def test_cache_roundtrip_is_exact_and_bad_files_are_recomputed(tmp_path):
    m1, info1 = TT.load_or_pretrain(TINY, 5, directory=tmp_path)
    path = TT.cache_path(TINY, 5, tmp_path)
    assert not info1["cached"] and path.exists() and oct(path.stat().st_mode)[-3:] == "644"
    blob = torch.load(path, weights_only=True)  # plain tensors and types only
    assert blob["key"] == TT.cache_key(TINY, 5)
    m2, info2 = TT.load_or_pretrain(TINY, 5, directory=tmp_path)
    assert info2["cached"] and info2["source_test_acc"] == info1["source_test_acc"]
    assert not m2.training
    assert m1.state_dict().keys() == m2.state_dict().keys()
    for k, v in m1.state_dict().items():  # weights and BN buffers, bit for bit
        assert torch.equal(v, m2.state_dict()[k]), k

    for garbage in (b"not a torch file", path.read_bytes()[:100]):  # corrupt, truncated
        path.write_bytes(garbage)
        m3, info3 = TT.load_or_pretrain(TINY, 5, directory=tmp_path)
        assert not info3["cached"]  # recomputed, no crash
        for k, v in m1.state_dict().items():  # same seed, same model
            assert torch.equal(v, m3.state_dict()[k]), k
        assert TT.load_or_pretrain(TINY, 5, directory=tmp_path)[1]["cached"]  # rewritten

    # a file at this path whose key differs in anything the weights depend on is stale
    for field, value in (
        ("torch", "0.0.1"),
        ("threads", 2),
        ("format", -1),
        ("steps", 999),
        ("seed", 6),
        ("data", "0" * 16),
    ):
        torch.save(dict(blob, key={**blob["key"], field: value}), path)
        assert not TT.load_or_pretrain(TINY, 5, directory=tmp_path)[1]["cached"], field
    wrong_shapes = dict(blob, state_dict={"stem.0.weight": torch.zeros(1)})
    torch.save(wrong_shapes, path)
    assert not TT.load_or_pretrain(TINY, 5, directory=tmp_path)[1]["cached"]
    assert not list(tmp_path.glob("*.tmp"))


def test_cache_key_holds_versions_threads_and_format(tmp_path, monkeypatch):
    key = TT.cache_key(TINY, 1)
    assert key["torch"] == torch.__version__ and key["threads"] == TT.PRETRAIN_THREADS
    assert key["format"] == TT.CACHE_FORMAT and key["device"] == "cpu" and key["seed"] == 1
    json.dumps(key)  # plain types only
    assert TT.cache_path(TINY, 1, tmp_path) != TT.cache_path(TINY, 2, tmp_path)
    other = TT.SourceConfig(widths=(4, 8), steps=4, batch_size=16, lr=1e-3)
    assert TT.cache_path(TINY, 1, tmp_path) != TT.cache_path(other, 1, tmp_path)
    monkeypatch.setattr(TT, "CACHE_FORMAT", TT.CACHE_FORMAT + 1)
    assert TT.cache_key(TINY, 1) != key  # a format bump invalidates old files
    monkeypatch.setenv("LAB_CACHE_DIR", str(tmp_path / "c"))
    assert TT.cache_path(TINY, 1).parent == tmp_path / "c"
    monkeypatch.delenv("LAB_CACHE_DIR")
    assert TT.cache_dir().parts[-2:] == ("build", "cache")
    with pytest.raises(TypeError, match="SourceConfig"):
        TT.load_or_pretrain({"widths": (4, 8)}, 0, directory=tmp_path)
    with pytest.raises(ValueError, match="seed"):
        TT.load_or_pretrain(TINY, -1, directory=tmp_path)


def test_load_sources_notes_a_cold_run_once(tmp_path, capsys):
    models, infos = TT.load_sources(TINY, [1, 2], directory=tmp_path)
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "once" in out and str(tmp_path) in out
    assert [i["cached"] for i in infos] == [False, False] and len(models) == 2
    models2, infos2 = TT.load_sources(TINY, [1, 2], directory=tmp_path)
    assert capsys.readouterr().out == "" and all(i["cached"] for i in infos2)
    assert torch.equal(models[1].head.weight, models2[1].head.weight)
    with pytest.raises(ValueError, match="seeds"):
        TT.load_sources(TINY, [], directory=tmp_path)


# ----------------------------------------------------------------------------- grouped models


@pytest.mark.parametrize("residual", [True, False])
def test_grouped_resnet_equals_its_members_forward_backward_and_running_stats(residual):
    cfg = TT.SourceConfig(widths=(4, 8), residual=residual)
    models = [TT.init_model(cfg, s) for s in (0, 1, 2)]
    g = TT.GroupedResNet(models)
    x = torch.randn(6, 3, 14, 14)
    y = torch.randint(0, 5, (6, 3))
    g.train()
    for m in models:
        m.train()
    loss = TT.grouped_loss(g(x), y)
    loss.backward()
    ref = sum(
        torch.nn.functional.cross_entropy(m(x[:, i : i + 1]), y[:, i]) for i, m in enumerate(models)
    )
    ref.backward()
    assert torch.allclose(loss, ref, atol=1e-5)
    # gradients of member 1's first conv and head, running statistics of the stem's BatchNorm
    c = models[0].stem[0].out_channels
    assert torch.allclose(
        g.stem[0].weight.grad[c : 2 * c], models[1].stem[0].weight.grad, atol=1e-5
    )
    assert torch.allclose(g.head.weight.grad[1], models[1].head.weight.grad, atol=1e-5)
    assert torch.allclose(g.stem[1].running_mean[c : 2 * c], models[1].stem[1].running_mean)
    g.eval()
    for m in models:
        m.eval()
    out = torch.stack([m(x[:, i : i + 1]) for i, m in enumerate(models)], 1)
    assert torch.allclose(g(x), out, atol=1e-5)
    acc = TT.grouped_accuracy(g, x, y)
    assert acc.shape == (3,) and torch.allclose(acc, (out.argmax(-1) == y).float().mean(0))
    assert g.training is False  # modes restored


def test_grouped_resnet_freezes_like_a_resnet_and_validates():
    from utils.instruments import finetune

    g = TT.GroupedResNet([TT.init_model(TINY, s) for s in (0, 1)])
    assert finetune.backbone_parts(g) == ["stem", "stage1", "stage2"]
    finetune.freeze(g, ["stem"])
    finetune.train_mode(g)
    assert not g.stem[1].training and g.stage1[0].norm1.training
    with pytest.raises(ValueError):
        TT.GroupedResNet([])
    with pytest.raises(ValueError):
        TT.GroupedResNet([TT.init_model(TINY, 0), TT.init_model(TT.SourceConfig(), 0)])
    with pytest.raises(ValueError):
        g(torch.randn(2, 3, 14, 14))
    t = [TT.target_task(d, 2, seed=0) for d in (0.0, 1.0)]
    assert TT.stack_tasks(t, "x_train").shape == (10, 2, 14, 14)
    assert TT.stack_tasks(t, "y_train").shape == (10, 2)


def test_plain_twin_config_keeps_the_residual_cache_key():
    assert "residual" not in TT.SourceConfig().key()
    assert TT.SourceConfig(residual=False).key()["residual"] is False
    assert not TT.SourceConfig(residual=False).build().stage1[0].residual
    with pytest.raises(ValueError):
        TT.SourceConfig(residual=1)


def test_grouped_accuracy_is_the_same_in_chunks():
    g = TT.GroupedResNet([TT.init_model(TINY, s) for s in (0, 1)]).eval()
    x = torch.randn(2 * TT.EVAL_CHUNK + 7, 2, 14, 14)
    y = torch.randint(0, 5, (len(x), 2))
    with torch.no_grad():
        whole = (g(x).argmax(-1) == y).float().mean(0)
    assert torch.allclose(TT.grouped_accuracy(g, x, y), whole)


def test_pick_members_assembles_each_members_chosen_run():
    runs = [TT.GroupedResNet([TT.init_model(TINY, 10 * r + s) for s in range(3)]) for r in range(2)]
    x = torch.randn(5, 3, 14, 14)
    for g in runs:  # different running statistics per run
        g.train()
        g(x)
    choice = [1, 0, 1]
    picked = TT.pick_members(runs, choice).eval()
    with torch.no_grad():
        out = picked(x)
        for m, r in enumerate(choice):
            assert torch.equal(out[:, m], runs[r].eval()(x)[:, m])
    assert (
        TT.pick_members(runs, [0, 0, 0])
        .state_dict()["stem.1.running_mean"]
        .equal(runs[0].state_dict()["stem.1.running_mean"])
    )
    with pytest.raises(ValueError):
        TT.pick_members(runs, [0, 2, 0])
    with pytest.raises(ValueError):
        TT.pick_members(runs, [0, 1])


def test_load_sources_pretrains_in_parallel_with_the_weights_of_one_by_one(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_WORKERS", "2")
    models, infos = TT.load_sources(TINY, [1, 2, 3], directory=tmp_path / "parallel")
    assert [i["cached"] for i in infos] == [False, False, False]
    for seed, model in zip([1, 2, 3], models, strict=True):
        alone, _ = TT.load_or_pretrain(TINY, seed, directory=tmp_path / "alone")
        a, b = model.state_dict(), alone.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert len(list((tmp_path / "parallel").iterdir())) == 3  # every model's cache file was written
